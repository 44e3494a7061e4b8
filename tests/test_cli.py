"""The `bertbeam` dispatcher: subcommands, and flags without one meaning `build`."""
import subprocess
import sys
from pathlib import Path

from pipeline import main as cli


def test_usage_lists_every_subcommand(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert name in out


def test_unknown_subcommand_is_an_error(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown subcommand" in capsys.readouterr().err


def test_python_m_pipeline_main_with_flags_is_build(tmp_path, demo_corpus, demo_vocab):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "pipeline.main", f"--input_file={demo_corpus}",
                           f"--vocab_file={demo_vocab}", f"--output_dir={out}", "--dupe_factor=1",
                           "--max_seq_length=64", "--max_predictions_per_seq=10"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (out / "manifest.json").exists() and "wrote" in proc.stdout


def test_a_closed_pipe_ends_a_subcommand_quietly(tmp_path):
    """`bertbeam segment F | head`: no BrokenPipeError traceback, status 141 as for a filter killed by SIGPIPE."""
    text = tmp_path / "paragraphs.txt"
    text.write_text("One sentence here. Another one follows. And a third.\n" * 20000)
    script = (f"{sys.executable} -m pipeline.main segment --lang en --input_file {text} | head -n 1; "
              f"echo status ${{PIPESTATUS[0]}} >&2")
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.stdout == "One sentence here.\n"
    assert proc.stderr.strip().splitlines()[-1] == "status 141" and "Traceback" not in proc.stderr, proc.stderr
