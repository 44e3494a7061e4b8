"""Local multi_processing workers forked from a loaded launcher (a fork server), and the command Beam runs for each.

Beam's FnApiRunner starts every multi_processing worker cold, as `python -m apache_beam.runners.worker.
sdk_worker_main`: an interpreter that imports Beam, numpy and bertbeam and loads the vocabulary again, about
0.6 CPU-s per worker, the main cost of two worker processes over one in_memory process. Here the launcher,
once it has loaded all of that and before it starts any thread, forks a small server; the worker command
(pipeline/worker_client.py, an interpreter without site-packages) asks the server for a worker, which it
forks already loaded. The worker runs Beam's SDK harness exactly as the cold command would, configured by
the same environment variables (control address, pipeline options, worker id), and its exit status returns
through the command, so Beam sees a worker process as before. Linux only; elsewhere, when the launcher
already runs threads (a fork would copy the locks they hold) or when the server cannot be reached, the
worker starts cold (`python -m pipeline.local_workers`).

Both ways the worker's root logger starts with a NullHandler: Beam's own import-time warnings (e.g.
"apitools not found" on an install without the Google Cloud libraries) would otherwise add a stderr handler
that then prints every INFO line of the harness; the harness's log records still reach the launcher.
"""
import contextlib
import logging
import os
import select
import shlex
import shutil
import signal
import socket
import sys
import tempfile
from typing import Callable, Dict, Iterator, Optional, Set

from pipeline import beam_fixes, worker_client
from pipeline.worker_client import SOCKET_ENV

_SHUTDOWN_GRACE_S = 10.0  # a worker still running when the launcher is done gets this long, then SIGKILL


def worker_command() -> str:
    """The shell command Beam runs for each local worker: on Linux the small client script, without site-packages
    (it needs none; PYTHONHOME and PYTHONPATH still apply, should the interpreter need them to start) and exec'd
    by the shell rather than forked; elsewhere, where no fork server runs, the cold worker itself."""
    if sys.platform != "linux":
        return " ".join(shlex.quote(arg) for arg in worker_client.cold_worker_argv())
    return f"exec {shlex.quote(sys.executable)} -S {shlex.quote(os.path.abspath(worker_client.__file__))}"


_FN_RUNNER_LOGGER = "apache_beam.runners.portability.fn_api_runner.fn_runner"


class _ModeWarningFilter(logging.Filter):
    """Drops Beam's "direct_num_workers is not equal to 1 ... in_memory" warning: see multi_processing_runner."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("If direct_num_workers is not equal to 1")


def multi_processing_runner(options):
    """Beam's FnApiRunner for `--direct_running_mode=multi_processing`, its workers started by worker_command().

    Beam's multi_processing mode only swaps the runner's worker environment for its cold command, so the same
    runner with this environment given is the same mode; the option is set back to in_memory so that Beam keeps
    the environment given (the warning it then logs about the worker count is dropped in worker_processes())."""
    from apache_beam.options.pipeline_options import DirectOptions  # pylint: disable=import-outside-toplevel
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # pylint: disable=import-outside-toplevel
    from apache_beam.transforms.environments import SubprocessSDKEnvironment  # pylint: disable=import-outside-toplevel
    options.view_as(DirectOptions).direct_running_mode = "in_memory"
    return FnApiRunner(default_environment=SubprocessSDKEnvironment.from_command_string(worker_command()))


@contextlib.contextmanager
def worker_processes() -> Iterator[Optional["ForkServer"]]:
    """Around a multi_processing_runner run: the fork server (None where it cannot start), closed afterwards."""
    folder = tempfile.mkdtemp(prefix="bertbeam-workers-")
    mode_warning = _ModeWarningFilter()
    logging.getLogger(_FN_RUNNER_LOGGER).addFilter(mode_warning)
    server = ForkServer.start(folder)
    try:
        yield server
    finally:
        try:
            if server is not None:
                server.stop()
        finally:
            logging.getLogger(_FN_RUNNER_LOGGER).removeFilter(mode_warning)
            shutil.rmtree(folder, ignore_errors=True)


def run_sdk_worker() -> None:
    """Beam's SDK harness in this process, configured from the environment as by Beam's own worker command,
    its channels patient with a launcher starved of CPU (beam_fixes.tolerate_starved_launcher)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(logging.NullHandler())
    from pipeline import runtime_env  # pylint: disable=import-outside-toplevel
    runtime_env.limit_thread_pools()
    runtime_env.tune_malloc()
    beam_fixes.tolerate_starved_launcher()
    from apache_beam.runners.worker import sdk_worker_main  # pylint: disable=import-outside-toplevel
    sdk_worker_main.main(sys.argv)


def thread_count() -> int:
    """Threads of this process (native ones included), from /proc; 0 where that cannot be read."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


class ForkServer:
    """A forked copy of the launcher that forks loaded SDK workers on request (see the module docstring)."""

    def __init__(self, path: str, pid: int, lifeline: int):
        self.path, self.pid, self._lifeline = path, pid, lifeline

    @classmethod
    def start(cls, folder: str, target: Callable[[], None] = run_sdk_worker) -> Optional["ForkServer"]:
        """Forks the server (its socket in `folder`) and points the worker command at it; None where a fork
        is not safe here (not Linux, or threads already running). Each forked worker runs `target`."""
        if sys.platform != "linux" or thread_count() != 1:
            return None
        path = os.path.join(folder, "workers.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(64)
        life_r, life_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the server: never returns
            code = 1
            try:
                # Ctrl-C reaches the whole process group: the launcher handles it (and closes the lifeline),
                # the workers stop as cold ones would; the server itself only waits for them.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                os.close(life_w)
                _serve(listener, life_r, target)
                code = 0
            except BaseException:  # pylint: disable=broad-except
                import traceback  # pylint: disable=import-outside-toplevel
                traceback.print_exc()
            finally:
                os._exit(code)  # never the launcher's atexit handlers (temp folders, logging) in a copy
        os.close(life_r)
        listener.close()
        os.environ[SOCKET_ENV] = path
        return cls(path, pid, life_w)

    def stop(self) -> int:
        """Closes the server (it waits for its workers, then exits); returns its exit status."""
        if os.environ.get(SOCKET_ENV) == self.path:
            del os.environ[SOCKET_ENV]
        os.close(self._lifeline)
        _, status = os.waitpid(self.pid, 0)
        try:
            os.unlink(self.path)
        except OSError:
            pass
        return os.waitstatus_to_exitcode(status)


def _serve(listener: socket.socket, lifeline: int, target: Callable[[], None]) -> None:
    """The server's loop: one forked worker per connection, until the launcher closes the lifeline."""
    children: Set[int] = set()
    while True:
        ready, _, _ = select.select([listener, lifeline], [], [], 0.5)
        _reap(children, block=False)
        if lifeline in ready:
            break
        if listener in ready:
            conn, _ = listener.accept()
            env = _receive_env(conn)
            pid = os.fork()
            if pid == 0:
                listener.close()
                os.close(lifeline)
                _run_forked_worker(conn, env, target)  # never returns
            conn.close()
            children.add(pid)
    _reap(children, block=True)


def _reap(children: Set[int], block: bool) -> None:
    """Waits for finished workers (so their CPU time counts in this process's children, as a cold worker's
    counts in the launcher's); with block, for all of them, killing those still running after the grace."""
    import time  # pylint: disable=import-outside-toplevel
    deadline = time.monotonic() + _SHUTDOWN_GRACE_S
    while children:
        pid, _ = os.waitpid(-1, os.WNOHANG)
        if pid:
            children.discard(pid)
            continue
        if not block:
            return
        if time.monotonic() > deadline:
            for child in children:
                _send_signal(child, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.05)


def _send_signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _run_forked_worker(conn: socket.socket, env: Dict[str, str], target: Callable[[], None]) -> None:
    """In the forked worker: the command's environment, the target (Beam's harness), then the exit status to
    the command."""
    code = 1
    try:
        # Ctrl-C reaches the whole process group: the launcher handles it and closes its workers, which then
        # end as at a normal run's end (a KeyboardInterrupt here would print the harness's tracebacks).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = [__file__]  # not the launcher's flags: a cold worker's argv holds none either
        conn.sendall(worker_client.pack_int(os.getpid()))
        target()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # pylint: disable=broad-except
        import traceback  # pylint: disable=import-outside-toplevel
        traceback.print_exc()
    finally:
        try:
            conn.sendall(worker_client.pack_int(code))
        except OSError:
            pass
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _receive_env(conn: socket.socket) -> Dict[str, str]:
    size = worker_client.unpack_int(worker_client.receive_exactly(conn, worker_client.INT_BYTES))
    return worker_client.decode_env(worker_client.receive_exactly(conn, size))


def main() -> int:
    """The cold worker (no fork server: not Linux, or none reachable from the worker command)."""
    run_sdk_worker()
    return 0


if __name__ == "__main__":
    sys.exit(main())
