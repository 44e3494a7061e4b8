"""The worker command Beam runs per local worker: asks the fork server (pipeline/local_workers.py) for a worker.

Run as a script, `python -S pipeline/worker_client.py`, it imports nothing beyond the interpreter's C
modules: it starts in about 8 ms of CPU where `python -m pipeline.local_workers` (site-packages, logging,
json, socket, signal) took about 35, once per worker and per run. It sends its environment (Beam's control
address, pipeline options, worker id) to the server, which forks a loaded worker with it; it relays SIGTERM
to that worker and returns the worker's exit status, so Beam sees a worker process as before. Without a
reachable server it replaces itself with the cold worker (`python -m pipeline.local_workers`).

Protocol, on a Unix socket: the client sends a 4-byte big-endian length and the environment as
NUL-separated `name=value` bytes; the server answers with the worker's pid, then its exit status (4-byte
big-endian signed integers each; the connection closing early means the worker died without one).
"""
import _signal  # the C module: `signal` would import enum, a few ms more for every worker
import os
import sys

SOCKET_ENV = "BERTBEAM_WORKER_SERVER"  # the fork server's socket, for the worker command
INT_BYTES = 4


def encode_env(env) -> bytes:
    """An environment (str or bytes names and values) as NUL-separated `name=value` bytes."""
    return b"\0".join(os.fsencode(name) + b"=" + os.fsencode(value) for name, value in env.items())


def decode_env(payload: bytes) -> dict:
    """encode_env's inverse, with str names and values (as os.environ holds them)."""
    env = {}
    for item in payload.split(b"\0") if payload else ():
        name, _, value = item.partition(b"=")
        env[os.fsdecode(name)] = os.fsdecode(value)
    return env


def pack_int(value: int) -> bytes:
    return value.to_bytes(INT_BYTES, "big", signed=True)


def unpack_int(data: bytes) -> int:
    return int.from_bytes(data, "big", signed=True)


def receive_exactly(conn, size: int) -> bytes:
    """`size` bytes from a socket; EOFError when it closes first."""
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


def ask_server(path: str):
    """A worker forked by the server at `path`, this environment passed on; its exit status (1 if it ended
    without one, e.g. killed). None when the server cannot be reached."""
    import _signal  # pylint: disable=import-outside-toplevel  # the C modules: `signal` and `socket` import enum
    import _socket  # pylint: disable=import-outside-toplevel
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            conn.connect(path)
        except OSError:
            return None
        payload = encode_env(os.environb if hasattr(os, "environb") else os.environ)
        conn.sendall(pack_int(len(payload)) + payload)
        try:
            pid = unpack_int(receive_exactly(conn, INT_BYTES))
        except EOFError:
            return 1

        def forward(signum, _frame):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

        _signal.signal(_signal.SIGTERM, forward)
        try:
            return unpack_int(receive_exactly(conn, INT_BYTES))
        except EOFError:
            return 1
    finally:
        conn.close()


def cold_worker_argv() -> list:
    """The cold worker: Beam's SDK harness started from scratch in a new interpreter."""
    return [sys.executable, "-m", "pipeline.local_workers"]


def main() -> int:
    path = os.environ.get(SOCKET_ENV)
    if path:
        # The forked worker ignores Ctrl-C (the launcher ends the run and closes it); so does its relay, which
        # returns the worker's exit status once it has ended.
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
        code = ask_server(path)
        if code is not None:
            return code
    env = {name: value for name, value in os.environ.items() if name != SOCKET_ENV}
    argv = cold_worker_argv()
    os.execve(argv[0], argv, env)  # never returns
    return 1


if __name__ == "__main__":
    sys.exit(main())
