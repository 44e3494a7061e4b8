"""`bertbeam build` shows progress on stderr (in_memory and multi_processing) without changing an output byte."""
from pathlib import Path

from pipeline import build, progress
from pipeline.runtime_env import THREAD_POOL_ENV, WorkerLogFilter, limit_thread_pools


def _argv(corpus, vocab, out, *extra):
    return [f"--input_file={corpus}", f"--vocab_file={vocab}", f"--output_dir={out}", "--dupe_factor=2",
            "--max_seq_length=64", "--max_predictions_per_seq=10", "--num_shards=2", *extra]


def _shards(out: Path):
    return {p.name: p.read_bytes() for p in sorted(out.glob("train-*"))}


def test_progress_in_multi_processing_and_quiet_give_the_same_bytes(tmp_path, demo_corpus, demo_vocab, capsys,
                                                                    monkeypatch):
    monkeypatch.setenv(progress.ENV_INTERVAL, "0.2")
    loud = build.run(_argv(demo_corpus, demo_vocab, tmp_path / "loud", "--direct_running_mode=multi_processing",
                           "--direct_num_workers=2"))
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("[build ")]
    assert lines, err
    # The last line sums the worker subprocesses' records: every document, every instance, all input.
    assert f"documents {loud['documents']['read']:,} " in lines[-1]
    assert f"instances {loud['counts']['train']['num_instances']:,} " in lines[-1]
    assert "(100%)" in lines[-1] and lines[-1].endswith("shards written 2/2")
    for stage in ("start-up (launcher)", "tokenize", "build_instances", "write_shards", "runner and other",
                  "worker start-up (CPU-seconds before the first document)"):
        assert stage in err, stage
    parts = [x for x in err.splitlines() if x.startswith("start-up (launcher): ")]
    assert len(parts) == 1 and all(f"{step} " in parts[0] for step in (
        "before run_all", "imports", "flags, vocabulary and inputs", "tokenizer", "job graph")), err
    assert "semi_persistent_directory" not in err  # known Beam worker noise is filtered
    build.run(_argv(demo_corpus, demo_vocab, tmp_path / "quiet", "--quiet"))
    err = capsys.readouterr().err
    assert "[build " not in err and "build_instances" not in err
    assert _shards(tmp_path / "loud") == _shards(tmp_path / "quiet")


def test_thread_pool_env_keeps_user_settings():
    env = {"OMP_NUM_THREADS": "4"}
    applied = limit_thread_pools(env)
    assert env["OMP_NUM_THREADS"] == "4" and "OMP_NUM_THREADS" not in applied
    assert all(env[k] == v for k, v in THREAD_POOL_ENV.items() if k != "OMP_NUM_THREADS")


def test_worker_log_lines_are_shortened_and_noise_dropped():
    import logging
    f = WorkerLogFilter()
    noise = logging.LogRecord("x", logging.WARNING, "", 0, "Worker: %s",
                              ('severity: WARN message: "No semi_persistent_directory found: ..."',), None)
    assert not f.filter(noise)
    real = logging.LogRecord("x", logging.WARNING, "", 0, "Worker: %s",
                             ('severity: WARN timestamp { seconds: 1 } message: "a.txt: dropped: \\"bad\\" '
                              'caf\\303\\251" log_location: "x.py:1"',), None)
    assert f.filter(real) and real.getMessage() == 'worker: a.txt: dropped: "bad" café'


def test_a_build_never_imports_tensorflow(tmp_path, demo_corpus, demo_vocab):
    """TensorFlow cost 2-4 CPU-seconds and ~600 MB per worker process: the build path stays free of it."""
    import subprocess
    import sys
    code = ("import sys; from pipeline import build; "
            f"build.run({_argv(demo_corpus, demo_vocab, tmp_path / 'out', '--quiet')!r}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_text', 'jax')))")
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
