"""Distributed Beam runners: Beam's DaskRunner on a local 2-process Dask cluster and Beam's PortableRunner with
an external SDK-harness worker pool build byte-identical data to the DirectRunner (single and multi-length, on
a multi-range, multi-bucket corpus), run the build stage once per bucket, and survive a killed worker."""
import collections
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline import build

distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed (pip install -e .[dev])")

AUDIT_PRELOAD = Path(__file__).with_name("_dask_build_audit.py")
COMMON = ["--input_split_mb=0.1", "--random_next_bucket_size=16", "--dupe_factor=2", "--num_shards=3",
          "--do_whole_word_mask"]
LENGTHS = {"single": ["--max_seq_length=128", "--max_predictions_per_seq=20"],
           "multi": ["--max_seq_length=128,512", "--max_predictions_per_seq=20,77"]}


def _argv(corpus, vocab, out, *extra):
    return [f"--input_file={corpus}", f"--vocab_file={vocab}", f"--output_dir={out}", *COMMON, *extra]


def _shards(out: Path):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("train-*"))}


def _counts(manifests):
    return [(m["counts"], m["documents"], m["tokens"], [s["num_instances"] for s in m["shards"]]) for m in manifests]


@pytest.fixture(scope="module", params=["demo", "en_books"])
def corpus(request, tmp_path_factory, demo_corpus, demo_vocab):
    """The embedded demo corpus (always), and a 300 KB slice of en_books_dev when ../shared is there."""
    if request.param == "demo":
        return demo_corpus, demo_vocab
    shared = Path(__file__).resolve().parents[2] / "shared"
    src = shared / "data/corpora/en_books_dev.txt"
    vocab = shared / "data/vocab/bert_base_uncased/vocab.txt"
    if not src.exists() or not vocab.exists():
        pytest.skip("../shared is not present")
    data = src.read_bytes()[:300_000]
    path = tmp_path_factory.mktemp("en_books") / "en_books_slice.txt"
    path.write_bytes(data[:data.rfind(b"\n\n") + 2])
    return path, vocab


@pytest.fixture(scope="module")
def references(corpus, tmp_path_factory):
    """DirectRunner in_memory builds (the local-files shuffle) of the corpus, per length setting."""
    path, vocab = corpus
    refs = {}
    for name, lengths in LENGTHS.items():
        out = tmp_path_factory.mktemp(f"ref_{name}")
        manifests = build.run_all(_argv(path, vocab, out, *lengths, "--direct_running_mode=in_memory"))
        refs[name] = (_counts(manifests), _shards(out))
        assert len(refs[name][1]) == 3 * (2 if name == "multi" else 1)
        assert manifests[0]["input"]["ranges"] > 1 and build.LAST_RUN_COUNTERS["buckets"] > 1
        refs[f"{name}_buckets"] = build.LAST_RUN_COUNTERS["buckets"]
    return refs


def _start_cluster(audit_file: Path):
    os.environ["BERTBEAM_TEST_AUDIT_FILE"] = str(audit_file)
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                    preload=[str(AUDIT_PRELOAD)])


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    audit = tmp_path_factory.mktemp("audit") / "builds.tsv"
    cluster = _start_cluster(audit)
    yield cluster, audit
    cluster.close()
    os.environ.pop("BERTBEAM_TEST_AUDIT_FILE", None)


def _audit_lines(audit: Path):
    if not audit.exists():
        return []
    return [line.split("\t") for line in audit.read_text().splitlines() if line]


@pytest.mark.parametrize("lengths,shuffle", [("single", "auto"), ("multi", "auto"), ("multi", "runner")])
def test_dask_runner_matches_direct_runner_and_builds_each_bucket_once(tmp_path, corpus, references, dask_cluster,
                                                                        lengths, shuffle):
    path, vocab = corpus
    cluster, audit = dask_cluster
    audit.write_text("")
    out = tmp_path / "dask"
    manifests = build.run_all(_argv(path, vocab, out, *LENGTHS[lengths], "--runner=DaskRunner",
                                    f"--dask_client_address={cluster.scheduler_address}", "--allow_local_paths",
                                    f"--shuffle={shuffle}"))
    ref_counts, ref_shards = references[lengths]
    assert _shards(out) == ref_shards
    assert _counts(manifests) == ref_counts
    # auto: run files under the output folder every worker sees (Dask holds grouped values in memory).
    assert all(m["shuffle"] == ("local_files" if shuffle == "auto" else "runner") for m in manifests)
    assert not list(out.rglob("_bertbeam_tmp")) and not list(out.rglob(".tmp-*"))
    # The build stage ran exactly once per (bucket, length), in more than one worker process:
    # no side input re-executed it and no output tag was lost.
    calls = collections.Counter((key, length) for key, length, _ in _audit_lines(audit))
    buckets = references[f"{lengths}_buckets"]
    assert len(calls) == buckets * len(manifests) and set(calls.values()) == {1}, calls


def test_killed_dask_worker_still_gives_identical_bytes(tmp_path, corpus, references):
    path, vocab = corpus
    audit = tmp_path / "builds.tsv"
    cluster = _start_cluster(audit)
    try:
        worker_pids = {w.process.process.pid for w in cluster.workers.values()}
        out = tmp_path / "dask"
        argv = _argv(path, vocab, out, *LENGTHS["multi"], "--runner=DaskRunner",
                     f"--dask_client_address={cluster.scheduler_address}", "--allow_local_paths")
        result = {}

        def run():
            try:
                result["manifests"] = build.run_all(argv)
            except BaseException as e:  # reported by the assertion below
                result["error"] = e

        thread = threading.Thread(target=run)
        thread.start()
        killed = None
        deadline = time.time() + 120
        while killed is None and thread.is_alive() and time.time() < deadline:
            building = [int(pid) for _, _, pid in _audit_lines(audit)]
            if building:
                killed = building[0]
                assert killed in worker_pids
                assert not (out / "seq128" / "manifest.json").exists()
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.01)
        thread.join(300)
        assert killed is not None, "the build finished before a worker could be killed: the test proved nothing"
        assert "error" not in result, result.get("error")
        ref_counts, ref_shards = references["multi"]
        assert _shards(out) == ref_shards
        assert _counts(result["manifests"]) == ref_counts
    finally:
        cluster.close()
        os.environ.pop("BERTBEAM_TEST_AUDIT_FILE", None)


@pytest.fixture(scope="module")
def worker_pool():
    """Beam's SDK-harness worker pool, as Flink/Spark deployments run Python workers (EXTERNAL environment)."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    # The pool starts each SDK harness as `python -c ...`: put this interpreter first on PATH.
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                             f"--service_port={port}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("localhost", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, "the worker pool exited"
            time.sleep(0.2)
    yield port
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("lengths,shuffle", [("single", "auto"), ("multi", "auto"), ("multi", "runner")])
def test_portable_runner_with_external_workers_matches_direct_runner(tmp_path, corpus, references, worker_pool,
                                                                     lengths, shuffle):
    path, vocab = corpus
    out = tmp_path / "portable"
    manifests = build.run_all(_argv(path, vocab, out, *LENGTHS[lengths], "--runner=PortableRunner",
                                    "--job_endpoint=embed", "--environment_type=EXTERNAL",
                                    f"--environment_config=localhost:{worker_pool}", "--allow_local_paths",
                                    f"--shuffle={shuffle}"))
    ref_counts, ref_shards = references[lengths]
    assert _shards(out) == ref_shards
    assert _counts(manifests) == ref_counts
    assert all(m["shuffle"] == ("local_files" if shuffle == "auto" else "runner") for m in manifests)
    # Counters come back from the external workers: documents were read once for all lengths.
    assert build.LAST_RUN_COUNTERS["documents_read"] == manifests[0]["documents"]["read"]


def test_multi_threading_direct_runner_matches_in_memory(tmp_path, corpus, references, monkeypatch):
    """Beam's multi_threading mode runs bundles on threads of one process, which share one tokenizer (and its
    chunk cache, filled here from cold by both threads at once): the bytes must be the in_memory ones."""
    from transforms import beam_build
    monkeypatch.setattr(beam_build, "_TOKENIZERS", {})  # a cold tokenizer, loaded by the run's own threads
    path, vocab = corpus
    out = tmp_path / "threads"
    manifests = build.run_all(_argv(path, vocab, out, *LENGTHS["single"], "--direct_running_mode=multi_threading",
                                    "--direct_num_workers=2"))
    assert _shards(out) == references["single"][1]
    assert _counts(manifests) == references["single"][0]


def test_dask_build_shows_the_workers_progress_and_cpu(tmp_path, corpus, references, dask_cluster, capsys,
                                                       monkeypatch):
    """The workers' progress records reach the launcher as Dask events: the last line covers all input, every
    document and instance; the time table's stages and total include the workers' CPU."""
    from pipeline import progress
    monkeypatch.setenv(progress.ENV_INTERVAL, "0.2")
    path, vocab = corpus
    cluster, _ = dask_cluster
    manifests = build.run_all(_argv(path, vocab, tmp_path / "dask", *LENGTHS["single"], "--runner=DaskRunner",
                                    f"--dask_client_address={cluster.scheduler_address}", "--allow_local_paths"))
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("[build ")]
    assert lines and "(100%)" in lines[-1], err
    assert f"documents {manifests[0]['documents']['read']:,} " in lines[-1]
    assert f"instances {manifests[0]['counts']['train']['num_instances']:,} " in lines[-1]
    assert lines[-1].endswith("shards written 3/3")
    rows = {line.split("  ")[0].strip(): line.split() for line in err.splitlines()}
    assert float(rows["build_instances"][1]) > 0 and float(rows["runner and other"][3]) > 0
    assert "Discarding unparseable args" not in err
    assert _shards(tmp_path / "dask") == references["single"][1]


def test_a_stalled_dask_cluster_fails_with_a_message_instead_of_hanging(tmp_path, demo_corpus, demo_vocab,
                                                                        monkeypatch):
    """Every worker paused (as Dask does over its memory limit): the build stops after BERTBEAM_DASK_STALL_S."""
    from distributed import Client
    from distributed.core import Status
    from pipeline import dask_watch

    def pause(dask_worker):
        dask_worker.status = Status.paused

    monkeypatch.setenv(dask_watch.ENV_STALL_S, "3")
    # Whatever SIGINT handler the process has (a trainer's preemption handler, an ignored signal), the stall
    # must still end the build: it may not rely on interrupting the main thread (the suite once hung here).
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    monkeypatch.setattr(dask_watch, "CHECK_INTERVAL_S", 0.5)
    # No memory limit: the worker's memory monitor would otherwise resume a worker paused by hand.
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       memory_limit=0)
    try:
        with Client(cluster.scheduler_address) as client:
            client.run(pause)
        outcome = {}

        def run():
            try:
                build.run_all(_argv(demo_corpus, demo_vocab, tmp_path / "out", "--runner=DaskRunner", "--quiet",
                                    f"--dask_client_address={cluster.scheduler_address}", "--allow_local_paths"))
            except BaseException as e:  # pylint: disable=broad-except
                outcome["error"] = e

        thread = threading.Thread(target=run, daemon=True)  # a hang fails this test, not the whole suite
        thread.start()
        thread.join(90)
        assert not thread.is_alive(), "the stalled build is still waiting after 90 s"
        assert isinstance(outcome.get("error"), build.BuildFailed), outcome
        assert re.search(r"all 1 Dask workers are paused .* for 3 s", str(outcome["error"]))
        assert not (tmp_path / "out" / "manifest.json").exists()
    finally:
        signal.signal(signal.SIGINT, previous)
        cluster.close()


def test_stall_problem_reads_the_scheduler_worker_table():
    from pipeline.dask_watch import stall_problem
    assert stall_problem({}) == "the cluster has no workers"
    running = {"tcp://a": {"status": "running"}, "tcp://b": {"status": "paused"}}
    assert stall_problem(running) is None
    paused = {"tcp://a": {"status": "paused", "memory_limit": 2 ** 30, "metrics": {"memory": 2 ** 29 * 1.7}}}
    assert stall_problem(paused) == "all 1 Dask workers are paused for lack of memory (tcp://a at 85% of 1.0 GiB)"


def test_embedded_job_server_flushes_its_data_plane_by_size_only(tmp_path, corpus, references, worker_pool,
                                                                 monkeypatch):
    """Beam's time-based data-plane flush wipes writes that race with it (records lost under load,
    docs/portable_runner_record_loss.md): a build's job server must open no such stream, on the runner path too."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers
    from apache_beam.runners.worker import data_plane
    monkeypatch.setattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS", 1000)  # Beam's default
    opened = []
    original = data_plane.TimeBasedBufferingClosableOutputStream.__init__

    def counted(self, *args, **kwargs):
        opened.append(args)
        original(self, *args, **kwargs)

    monkeypatch.setattr(data_plane.TimeBasedBufferingClosableOutputStream, "__init__", counted)
    path, vocab = corpus
    out = tmp_path / "portable"
    build.run_all(_argv(path, vocab, out, *LENGTHS["multi"], "--runner=PortableRunner", "--job_endpoint=embed",
                        "--environment_type=EXTERNAL", f"--environment_config=localhost:{worker_pool}",
                        "--allow_local_paths", "--shuffle=runner"))
    assert opened == []
    assert _shards(out) == references["multi"][1]
