"""Local multi_processing workers forked by a fork server: the protocol, the fallbacks, and a real build."""
import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline import local_workers, worker_client

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the fork server is Linux-only")

# A launcher stand-in: starts a fork server whose workers write what they see and exit with a chosen code,
# then runs the worker command (as Beam would) once per line of requests.
_LAUNCHER = textwrap.dedent('''
    import json, os, subprocess, sys
    from pipeline import local_workers
    out = sys.argv[1]
    def target():
        with open(os.path.join(out, "worker-%d.json" % os.getpid()), "w") as f:
            json.dump({"ppid": os.getppid(), "argv": sys.argv, "value": os.environ.get("TEST_VALUE")}, f)
        how = os.environ["TEST_HOW"]
        if how == "kill":
            os.kill(os.getpid(), 9)
        if how == "raise":
            raise RuntimeError("boom")
        sys.exit(int(how))
    server = local_workers.ForkServer.start(out, target)
    assert server is not None, "a fresh single-threaded process must get a fork server"
    codes = []
    for how in sys.argv[2:]:
        env = dict(os.environ, TEST_HOW=how, TEST_VALUE="v-" + how)
        codes.append(subprocess.run(local_workers.worker_command(), shell=True, env=env).returncode)
    print(json.dumps({"server": server.pid, "codes": codes, "server_exit": server.stop(),
                      "env_after": os.environ.get(local_workers.SOCKET_ENV)}))
''')


def _launch(tmp_path, *hows):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, str(tmp_path), *hows], capture_output=True, text=True,
                          env=env, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    import json
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_workers_are_forked_by_the_server_with_the_command_environment_and_exit_status(tmp_path):
    import json
    result, stderr = _launch(tmp_path, "0", "3", "raise", "kill")
    assert result["codes"] == [0, 3, 1, 1]  # a raised exception and a kill both read as failures
    assert "RuntimeError: boom" in stderr  # the forked worker's traceback is shown, not swallowed
    assert result["server_exit"] == 0 and result["env_after"] is None
    seen = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("worker-*.json"))]
    assert len(seen) == 4
    assert {s["ppid"] for s in seen} == {result["server"]}  # forked by the server, not started cold
    assert sorted(s["value"] for s in seen) == ["v-0", "v-3", "v-kill", "v-raise"]  # each command's own env
    assert all(s["argv"] == [local_workers.__file__] for s in seen)  # not the launcher's flags
    assert not (tmp_path / "workers.sock").exists()


def test_command_without_a_reachable_server_falls_back(tmp_path):
    assert worker_client.ask_server(str(tmp_path / "missing.sock")) is None


def test_client_runs_the_cold_worker_when_no_server_answers(tmp_path, monkeypatch):
    """The client replaces itself with the cold worker, without the dead socket's variable in its environment."""
    execs = []
    monkeypatch.setenv(worker_client.SOCKET_ENV, str(tmp_path / "missing.sock"))
    monkeypatch.setenv("TEST_VALUE", "kept")
    monkeypatch.setattr(worker_client.os, "execve", lambda path, argv, env: execs.append((path, argv, env)))
    worker_client.main()
    (path, argv, env), = execs
    assert path == sys.executable and argv[1:] == ["-m", "pipeline.local_workers"]
    assert env["TEST_VALUE"] == "kept" and worker_client.SOCKET_ENV not in env


def test_environment_round_trip():
    env = {"A": "1", "EMPTY": "", "WITH_EQUALS": "x=y=z", "UNICODE": "bokm\u00e5l \u0f40", "PIPELINE_OPTIONS": '{"a": [1]}'}
    assert worker_client.decode_env(worker_client.encode_env(env)) == env
    assert worker_client.decode_env(worker_client.encode_env({})) == {}


def test_client_script_imports_nothing_from_site_packages():
    """The client runs with -S: it must not need bertbeam, Beam or anything else outside the interpreter."""
    code = ("import runpy, sys; runpy.run_path(sys.argv[1], run_name='client'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pipeline', 'apache_beam', 'numpy', "
            "'json', 'socket', 'signal', 'logging')))")
    proc = subprocess.run([sys.executable, "-S", "-c", code, worker_client.__file__], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_no_fork_server_in_a_process_with_threads(tmp_path):
    import threading
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert local_workers.thread_count() > 1
        assert local_workers.ForkServer.start(str(tmp_path)) is None
    finally:
        stop.set()
        thread.join()


# A real multi_processing build from the command line: the workers must be forked (counted by a patched
# worker entry in the server) and the shards identical to an in_memory build's.
_BUILD = textwrap.dedent('''
    import os, sys
    from pipeline import build, local_workers
    folder = sys.argv[1]
    original = local_workers._run_forked_worker
    def counted(conn, env, target):
        open(os.path.join(folder, "forked-%d" % os.getpid()), "w").close()
        original(conn, env, target)
    local_workers._run_forked_worker = counted
    sys.exit(build.main(sys.argv[2:]))
''')


def _shard_digests(out: Path):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("train-*"))}


def test_multi_processing_build_forks_its_workers_and_writes_the_in_memory_bytes(tmp_path, demo_corpus,
                                                                                  demo_vocab):
    flags = [f"--input_file={demo_corpus}", f"--vocab_file={demo_vocab}", "--max_seq_length=64",
             "--max_predictions_per_seq=10", "--dupe_factor=2", "--num_shards=2", "--input_split_mb=0.002"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    marks = tmp_path / "marks"
    marks.mkdir()
    runs = {}
    for mode, extra in (("in_memory", []), ("multi_processing", ["--direct_running_mode=multi_processing",
                                                                 "--direct_num_workers=2"])):
        out = tmp_path / mode
        proc = subprocess.run([sys.executable, "-c", _BUILD, str(marks), *flags, f"--output_dir={out}", *extra],
                              capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        runs[mode] = (_shard_digests(out), proc.stderr)
    assert runs["in_memory"][0] == runs["multi_processing"][0] and len(runs["in_memory"][0]) == 2
    assert len(list(marks.iterdir())) == 2  # both workers forked by the server
    stderr = runs["multi_processing"][1]
    assert "over 2 process(es)" in stderr  # both workers read documents
    # One line per event: none of the SDK harness's INFO lines or Beam's import-time warnings.
    assert "INFO" not in stderr and "apitools" not in stderr and "semi_persistent" not in stderr


@pytest.mark.slow
def test_multi_processing_build_survives_a_launcher_starved_for_90_seconds(tmp_path, demo_corpus, demo_vocab):
    """At a load average of ~100 the launcher can go without CPU for a minute; its workers' gRPC channels used
    to close their streams after gRPC's 60 s ping timeout ("Channel closed prematurely", a failed job and
    180 MB left in _bertbeam_tmp). SIGSTOP stands in for the starvation."""
    import psutil
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):  # enough work that the build is still running when the launcher stops
        (corpus / f"part_{i}.txt").write_bytes(demo_corpus.read_bytes())
    flags = [f"--input_file={corpus}/*.txt", f"--vocab_file={demo_vocab}", "--max_seq_length=128",
             "--max_predictions_per_seq=20", "--dupe_factor=8", "--num_shards=2", "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = tmp_path / "mp"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.main", "build", *flags, f"--output_dir={out}",
                             "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    launcher = psutil.Process(proc.pid)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        # The workers are the fork server's children: the launcher's grandchildren.
        if any(child.children() for child in launcher.children()):
            break
        time.sleep(0.1)
    time.sleep(1.0)
    assert proc.poll() is None, "the build ended before the launcher could be stopped: the test proved nothing"
    launcher.suspend()
    time.sleep(90)
    launcher.resume()
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert (out / "_SUCCESS").exists() and not (out / "_bertbeam_tmp").exists()
    reference = tmp_path / "in_memory"
    subprocess.run([sys.executable, "-m", "pipeline.main", "build", *flags, f"--output_dir={reference}"],
                   check=True, env=env, cwd=REPO, timeout=600)
    assert _shard_digests(out) == _shard_digests(reference)


def test_ctrl_c_ends_a_multi_processing_build_with_one_line_and_no_temporary_files(tmp_path, demo_corpus,
                                                                                   demo_vocab):
    """Ctrl-C reaches the whole process group (launcher, Beam's worker commands, forked workers): one line,
    status 130, no _bertbeam_tmp, no process left. Before: 160-220 lines of tracebacks and the run files left."""
    import psutil
    import signal
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"part_{i}.txt").write_bytes(demo_corpus.read_bytes())
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.main", "build", f"--input_file={corpus}/*.txt",
                             f"--vocab_file={demo_vocab}", "--dupe_factor=8", "--num_shards=2", "--quiet",
                             f"--output_dir={out}", "--direct_running_mode=multi_processing",
                             "--direct_num_workers=2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    launcher = psutil.Process(proc.pid)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (out / "_bertbeam_tmp").exists():
        time.sleep(0.05)  # run files appear once the workers build
    assert proc.poll() is None, "the build ended before Ctrl-C: the test proved nothing"
    family = [launcher] + launcher.children(recursive=True)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert stderr.strip().splitlines() == [
        "bertbeam build: interrupted; temporary files removed, the output has no manifest (rerun with --overwrite)"]
    assert not (out / "_bertbeam_tmp").exists() and not (out / "manifest.json").exists()
    gone, alive = psutil.wait_procs(family, timeout=15)
    assert not alive, alive
