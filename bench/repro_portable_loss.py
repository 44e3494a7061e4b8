"""Beam-only reproduction of issue 19 item 1: records silently missing after a PortableRunner build.

Cause (docs/portable_runner_record_loss.md): Beam's time-based data-plane flush
(data_plane.TimeBasedBufferingClosableOutputStream) lets writes land between the periodic flusher's
`get()` and `_clear()`, and `_clear()` wipes them. The embedded job server sends every stage input through such
a stream (worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 1000), so an input written as many chunks for longer than
a second (the materialized read of a multi-input Flatten, as in bertbeam's `(slices, every_shard) | Flatten |
GroupByKey`) loses whole chunks when the job server is starved of CPU.

Shape of the bertbeam build, without bertbeam: a few hundred integers go through a GroupByKey that puts them all
under ONE key, so one bundle of one DoFn yields a large output (by default 200,000 bytes elements of 1.5-3 KB,
~450 MB) that leaves the SDK harness through one gRPC data stream; it is flattened with 8 small marker elements
(`--no-flatten` leaves that out), a second GroupByKey spreads the elements over 8 keys and a last DoFn counts
and checks them. Every element carries its index, its length and a CRC32 of its body, so the checker tells
lost elements (which indices, as runs), damaged elements and duplicates apart. The producer writes how many
elements it yielded (its own "count at the bundle's end") next to the checkers' results, in a temporary folder.

    .venv/bin/python bench/repro_portable_loss.py --runner portable_external --load 8        # loses records
    .venv/bin/python bench/repro_portable_loss.py --runner portable_external --load 8 --runner_flush_ms 0
    .venv/bin/python bench/repro_portable_loss.py --runner direct --elements 20000

Runners: portable_external (PortableRunner, embedded job server, EXTERNAL environment served by a
worker pool this script starts and stops: `python -m apache_beam.runners.worker.worker_pool_main`),
portable_embedded (PortableRunner, embedded job server, LOOPBACK environment: the SDK harness runs in
this process but still talks to the job server over gRPC), direct (DirectRunner; in_memory unless
`--beam_arg=--direct_running_mode=multi_threading`) and dask (Beam's DaskRunner on a local 2-process cluster).
`--load N` starts N busy loops (`nice timeout S sh -c 'while :; do :; done'`, at most 8), killed at the end.
`--beam_arg=--experiments=...` passes extra pipeline options. `--log_data_plane` turns DEBUG logging on for
Beam's data plane and worker handlers (in this process: the embedded job server runs here). `--diagnose` logs
each silent drop path of the data plane as it happens, here and in the worker pool's SDK harnesses.
`--runner_flush_ms 0` sets worker_handlers.DATA_BUFFER_TIME_LIMIT_MS to 0 in this process (the workaround).
One run took 0.5-2 minutes on 2 shared cores; the launching process holds several copies of the big output
(about 2 GB resident seen at the default ~450 MB).
Exit status: 0 when every element arrived exactly once and intact, 1 when not, 3 on timeout/other failure.
"""
import argparse
import glob
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

HEADER_FMT = "<QII"  # index, total length, crc32 of the body (a format string: a Struct does not pickle)
HEADER_SIZE = struct.calcsize(HEADER_FMT)
NUM_KEYS = 8
MARKER = b"marker"  # the Flatten's second, small input (bertbeam's every_shard None per shard)


def element_size(index, size):
    """Deterministic length between size // 2 and size (at least the header)."""
    lo = max(HEADER_SIZE + 8, size // 2)
    return lo + (index * 2654435761) % (size - lo + 1)


def make_element(index, size):
    n = element_size(index, size)
    body_len = n - HEADER_SIZE
    unit = struct.pack("<Q", index ^ 0x9E3779B97F4A7C15)
    body = (unit * (body_len // 8 + 1))[:body_len]
    return struct.pack(HEADER_FMT, index, n, zlib.crc32(body)) + body


def check_element(data):
    """Returns the index if the element is intact, else -1."""
    if len(data) < HEADER_SIZE:
        return -1
    index, n, crc = struct.unpack_from(HEADER_FMT, data)
    if n != len(data) or zlib.crc32(memoryview(data)[HEADER_SIZE:]) != crc:
        return -1
    return index


class ProduceFn(beam.DoFn):
    """One input (key, [seeds]) -> `elements` large bytes elements keyed by index % 8."""

    def __init__(self, elements, size, out_dir):
        self._elements, self._size, self._out_dir = elements, size, out_dir

    def process(self, kv):
        _, seeds = kv
        n_seeds = len(list(seeds))
        sent = 0
        for index in range(self._elements):
            yield index % NUM_KEYS, make_element(index, self._size)
            sent += 1
        path = os.path.join(self._out_dir, f"producer-{os.getpid()}-{time.time_ns()}.json")
        with open(path, "w") as f:
            json.dump({"sent": sent, "seeds": n_seeds, "pid": os.getpid()}, f)


class CheckFn(beam.DoFn):
    """(key, [elements]) -> writes the key's count, damaged elements, duplicates and missing index runs."""

    def __init__(self, elements, out_dir):
        self._elements, self._out_dir = elements, out_dir

    def process(self, kv):
        key, values = kv
        seen = bytearray(self._elements)
        count = bad = dup = wrong_key = 0
        markers = 0
        for v in values:
            if v == MARKER:
                markers += 1
                continue
            count += 1
            index = check_element(v)
            if index < 0 or index >= self._elements:
                bad += 1
                continue
            if index % NUM_KEYS != key:
                wrong_key += 1
            if seen[index]:
                dup += 1
            seen[index] = 1
        expected = [i for i in range(key, self._elements, NUM_KEYS)]
        missing = [i for i in expected if not seen[i]]
        runs = []  # runs of consecutive missing indices of this key (step NUM_KEYS)
        for i in missing:
            if runs and runs[-1][1] + NUM_KEYS == i:
                runs[-1][1] = i
            else:
                runs.append([i, i])
        result = {"key": key, "count": count, "markers": markers, "expected": len(expected), "bad": bad, "dup": dup,
                  "wrong_key": wrong_key, "missing": len(missing), "missing_runs": runs[:50],
                  "n_missing_runs": len(runs)}
        path = os.path.join(self._out_dir, f"check-{key}-{os.getpid()}-{time.time_ns()}.json")
        with open(path, "w") as f:
            json.dump(result, f)
        yield result


# --- diagnostics (--diagnose): watch the data plane's drop paths without changing what it does -------------
_DIAG_LOG = logging.getLogger("repro_portable_loss.diag")
_TEMP_DIRS = []  # removed at the end of main()


def install_diagnostics(side):
    """Patches Beam's data plane in this process so that each silent drop path logs a WARNING:
    - a flush whose buffer grew while its callback ran (those bytes are then wiped by `_clear()`),
    - data for an instruction id the channel already cleaned up (`_receiving_queue` returns None),
    - a second BeamFnData stream for the same (worker id, data stream id),
    - on the runner side, how many chunks each bundle input is written as (`_send_input_to_worker`)."""
    from apache_beam.runners.worker import data_plane
    tag = f"[{side} pid {os.getpid()}]"
    sized = data_plane.SizeBasedBufferingClosableOutputStream
    orig_flush = sized.flush

    def flush(self):
        callback = self._flush_callback
        if callback is None:
            return orig_flush(self)
        seen = {}

        def watched(data):
            seen["got"] = len(data)
            callback(data)
            seen["after"] = self.size()
        self._flush_callback = watched
        try:
            orig_flush(self)
        finally:
            self._flush_callback = callback
        if seen and seen["after"] != seen["got"]:
            _DIAG_LOG.warning("%s RACE in %s.flush: flushed %d bytes, the buffer held %d when _clear() ran: "
                              "%d bytes written meanwhile are dropped", tag, type(self).__name__, seen["got"],
                              seen["after"], seen["after"] - seen["got"])
    sized.flush = flush

    chan = data_plane._GrpcDataChannel
    orig_rq = chan._receiving_queue
    counts = {}

    def receiving_queue(self, instruction_id):
        q = orig_rq(self, instruction_id)
        if q is None:
            n = counts[instruction_id] = counts.get(instruction_id, 0) + 1
            if n == 1 or n % 100 == 0:
                _DIAG_LOG.warning("%s DISCARD: data for cleaned-up instruction %s (%d so far)", tag,
                                  instruction_id, n)
        return q
    chan._receiving_queue = receiving_queue

    servicer = data_plane.BeamFnDataServicer
    orig_data = servicer.Data
    streams = {}

    def data(self, elements_iterator, context):
        md = dict(context.invocation_metadata())
        key = (md.get("worker_id"), md.get("data_stream_id", ""))
        streams[key] = streams.get(key, 0) + 1
        level = logging.WARNING if streams[key] > 1 else logging.INFO
        _DIAG_LOG.log(level, "%s Data stream #%d for %s from %s", tag, streams[key], key, context.peer())
        yield from orig_data(self, elements_iterator, context)
    servicer.Data = data

    if side == "runner":
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        orig_send = fn_runner.BundleManager._send_input_to_worker

        def send_input(self, process_bundle_id, read_transform_id, byte_streams):
            chunks = list(byte_streams or [])
            _DIAG_LOG.warning("%s input of %s for %s: %d chunk(s), %d bytes", tag, process_bundle_id,
                              read_transform_id, len(chunks), sum(len(c) for c in chunks))
            return orig_send(self, process_bundle_id, read_transform_id, chunks)
        fn_runner.BundleManager._send_input_to_worker = send_input


def diagnostics_env(env):
    """An environment whose Python processes (the worker pool and the SDK harnesses it starts) install the
    diagnostics at start-up, through a sitecustomize.py in a temporary folder on PYTHONPATH."""
    folder = tempfile.mkdtemp(prefix="repro_portable_loss-site-")
    _TEMP_DIRS.append(folder)
    with open(os.path.join(folder, "sitecustomize.py"), "w") as f:
        f.write("import logging, sys\n"
                f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
                "import repro_portable_loss\n"
                "repro_portable_loss.install_diagnostics('sdk')\n")
    env = dict(env)
    env["PYTHONPATH"] = folder + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_load(n, seconds):
    procs = []
    for _ in range(n):
        procs.append(subprocess.Popen(["nice", "-n", "10", "timeout", str(int(seconds)), "sh", "-c",
                                       "while :; do :; done"], start_new_session=True))
    return procs


def stop_procs(procs):
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)  # its own session: timeout and its sh child
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def start_worker_pool(port, diagnose=False):
    # worker_pool_main starts each SDK harness as `python -c ...` found on PATH, so put this interpreter first.
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    if diagnose:
        env = diagnostics_env(env)
    pool = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                             f"--service_port={port}"], env=env, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("localhost", port)) == 0:
                return pool
        if pool.poll() is not None:
            raise RuntimeError(f"worker pool exited with {pool.returncode}")
        time.sleep(0.2)
    raise RuntimeError("worker pool did not start")


def build(p, args, out_dir):
    seeds = p | "Seeds" >> beam.Create(list(range(args.seeds)))
    produced = (seeds
                | "OneKey" >> beam.Map(lambda i: (0, i))
                | "GroupAll" >> beam.GroupByKey()
                | "Produce" >> beam.ParDo(ProduceFn(args.elements, args.size, out_dir)))
    if not args.flatten:
        return (produced
                | "GroupByMod" >> beam.GroupByKey()
                | "Check" >> beam.ParDo(CheckFn(args.elements, out_dir)))
    # bertbeam's graph: (slices, every_shard) | Flatten | GroupByKey. The FnApiRunner always materializes a
    # multi-input Flatten (translations.sink_flattens), so the big output then reaches the GroupByKey's write
    # as a separate stage whose input is a ListBuffer of the chunks the SDK harness sent.
    markers = p | "Markers" >> beam.Create([(k, MARKER) for k in range(NUM_KEYS)])
    return ((produced, markers)
            | "AllKeys" >> beam.Flatten()
            | "GroupByMod" >> beam.GroupByKey()
            | "Check" >> beam.ParDo(CheckFn(args.elements, out_dir)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runner", default="portable_external",
                    choices=["portable_external", "portable_embedded", "direct", "dask"])
    ap.add_argument("--elements", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=3000, help="largest element in bytes (smallest: half)")
    ap.add_argument("--seeds", type=int, default=300)
    ap.add_argument("--flatten", action=argparse.BooleanOptionalAction, default=True,
                    help="Flatten the big output with a small PCollection before the GroupByKey, as bertbeam "
                         "does (default); --no-flatten feeds the GroupByKey directly")
    ap.add_argument("--load", type=int, default=0, help="busy loops to run alongside (at most 8)")
    ap.add_argument("--deadline", type=int, default=300, help="seconds before the run is abandoned")
    ap.add_argument("--log_data_plane", action="store_true")
    ap.add_argument("--diagnose", action="store_true",
                    help="log Beam's silent drop paths in this process and in the worker pool's SDK harnesses")
    ap.add_argument("--runner_flush_ms", type=int, default=None,
                    help="set Beam's worker_handlers.DATA_BUFFER_TIME_LIMIT_MS (1000) in this process before the run: "
                         "the period of the job server's time-based flush of the data it sends to SDK harnesses "
                         "(0: size-based flushing only, which has no flusher thread). Only reaches a job server "
                         "that runs in this process (--job_endpoint=embed, DirectRunner)")
    ap.add_argument("--beam_arg", action="append", default=[], help="extra pipeline option, repeatable")
    args = ap.parse_args(argv)
    if args.load > 8:
        ap.error("--load is at most 8")

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    if args.log_data_plane:
        for name in ("apache_beam.runners.worker.data_plane",
                     "apache_beam.runners.portability.fn_api_runner.worker_handlers",
                     "apache_beam.runners.portability.fn_api_runner.fn_runner"):
            logging.getLogger(name).setLevel(logging.DEBUG)
    if args.diagnose:
        install_diagnostics("runner")
    if args.runner_flush_ms is not None:
        from apache_beam.runners.portability.fn_api_runner import worker_handlers
        worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = args.runner_flush_ms

    out_dir = tempfile.mkdtemp(prefix="repro_portable_loss-")
    _TEMP_DIRS.append(out_dir)
    procs, pool, cluster, client = [], None, None, None
    expected_bytes = sum(element_size(i, args.size) for i in range(args.elements))
    print(f"runner={args.runner} elements={args.elements:,} size<={args.size} flatten={args.flatten} "
          f"(~{expected_bytes / 1e6:.0f} MB in one bundle) load={args.load} "
          f"runner_flush_ms={args.runner_flush_ms} beam_args={args.beam_arg}", flush=True)

    def watchdog():
        print(f"TIMEOUT after {args.deadline}s", flush=True)
        stop_procs(procs + ([pool] if pool else []))
        os._exit(3)

    load_start = os.getloadavg()
    timer = threading.Timer(args.deadline, watchdog)
    timer.daemon = True
    timer.start()
    t0 = time.time()
    try:
        opts = list(args.beam_arg)
        if args.runner == "portable_external":
            port = free_port()
            pool = start_worker_pool(port, args.diagnose)
            opts += ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=EXTERNAL",
                     f"--environment_config=localhost:{port}"]
        elif args.runner == "portable_embedded":
            opts += ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"]
        elif args.runner == "direct":
            opts += ["--runner=DirectRunner"]
        else:
            from dask.distributed import Client, LocalCluster
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
            opts += ["--runner=apache_beam.runners.dask.dask_runner.DaskRunner",
                     f"--dask_client_address={cluster.scheduler_address}"]
        procs = start_load(args.load, args.deadline + 30)
        p = beam.Pipeline(options=PipelineOptions(opts))
        build(p, args, out_dir)
        result = p.run()
        result.wait_until_finish()
        wall = time.time() - t0
    except Exception as e:  # noqa: BLE001 - report and exit 3
        print(f"FAILED: {type(e).__name__}: {str(e)[:2000]}", flush=True)
        stop_procs(procs + ([pool] if pool else []))
        return 3
    finally:
        timer.cancel()
        stop_procs(procs)
        if pool is not None:
            stop_procs([pool])
        if client is not None:
            client.close()
            cluster.close()
        producers = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(out_dir, "producer-*.json")))]
        checks = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(out_dir, "check-*.json")))]
        for folder in _TEMP_DIRS:
            shutil.rmtree(folder, ignore_errors=True)
    sent = sum(r["sent"] for r in producers)
    received = sum(c["count"] for c in checks)
    missing = sum(c["missing"] for c in checks)
    bad = sum(c["bad"] for c in checks)
    dup = sum(c["dup"] for c in checks)
    keys = sorted(c["key"] for c in checks)
    print(f"load average at start {load_start[0]:.1f}, at end {os.getloadavg()[0]:.1f} (1-minute, whole machine)")
    print(f"wall {wall:.1f}s  producer runs: {len(producers)} (sent {sent:,})  checker keys: {keys}")
    print(f"expected {args.elements:,}  received {received:,}  LOST {missing:,}  damaged {bad:,}  duplicated {dup:,}")
    for c in sorted(checks, key=lambda c: c["key"]):
        if c["missing"] or c["bad"] or c["dup"]:
            print(f"  key {c['key']}: {c['count']:,}/{c['expected']:,}, missing {c['missing']:,} in "
                  f"{c['n_missing_runs']} runs (first: {c['missing_runs'][:5]}), bad {c['bad']}, dup {c['dup']}")
    ok = (missing == 0 and bad == 0 and dup == 0 and received == args.elements and keys == list(range(NUM_KEYS))
          and sent == args.elements)
    print("RESULT", "OK" if ok else "LOSS/DAMAGE", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
