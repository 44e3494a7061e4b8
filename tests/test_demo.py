"""`./run_local.sh` with no arguments: the main job on the embedded corpus must run end to end as shipped."""
import json

from pipeline import demo


def test_demo_job_runs_end_to_end_with_its_defaults(tmp_path, capsys):
    assert demo.main(["--output_dir", str(tmp_path)]) == 0
    vocab = (tmp_path / "vocab" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab) >= 0.99 * 3000  # what the default asks for (bertbeam vocab refuses more than 1% less)
    manifest = json.loads((tmp_path / "dataset" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["train"]["num_instances"] > 0
    assert manifest["documents"]["read"] == manifest["documents"]["used"] > 0
    assert len(list((tmp_path / "dataset").glob("train-*"))) == 4
    out = capsys.readouterr().out
    assert "[3/3] dataset:" in out and "first instance:" in out


def test_inspect_reads_the_demo_dataset_without_tensorflow(tmp_path):
    """`bertbeam inspect` decodes records itself: no TensorFlow import (seconds, and its oneDNN/absl lines)."""
    import subprocess
    import sys
    from pathlib import Path
    assert demo.main(["--output_dir", str(tmp_path)]) == 0
    code = ("import sys; from pipeline import main; rc = main.main(['inspect', sys.argv[1], '--num_instances', '1']); "
            "print('tensorflow imported' if 'tensorflow' in sys.modules else 'no tensorflow'); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "dataset")], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "--- instance 0" in proc.stdout and "no tensorflow" in proc.stdout
    assert "oneDNN" not in proc.stderr and "absl" not in proc.stderr
