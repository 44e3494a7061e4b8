"""Settings that work around defects of Beam's portable runtime (FnApiRunner, SDK harness) met by bertbeam builds.

Each is a module-level setting of Beam's, applied in the process it concerns before Beam uses it; each names
its evidence. None changes what a pipeline computes, only whether all of it arrives.
"""

# How long a local worker's gRPC channels to the launcher wait for a ping's answer. gRPC's default (60 s for
# the pings it sends to measure bandwidth) closed every stream of a 2-worker build whose launcher got no CPU
# for 90 s, as happens at a load average of ~100 ("Stream removed (ping timeout)", then "Channel closed
# prematurely" and a failed job; tests/test_local_workers.py). The launcher is the worker's parent on this
# machine: if it dies, its sockets close and the channels fail at once, so a long wait only ever covers a
# launcher that is alive but starved.
LOCAL_PING_TIMEOUT_MS = 3_600_000


def tolerate_starved_launcher() -> None:
    """In a local SDK worker process: the ping and keepalive timeouts of the channels Beam's harness opens
    (Beam's GRPCChannelFactory options) set to LOCAL_PING_TIMEOUT_MS."""
    from apache_beam.runners.worker.channel_factory import GRPCChannelFactory  # pylint: disable=import-outside-toplevel
    longer = {"grpc.http2.ping_timeout_ms": LOCAL_PING_TIMEOUT_MS, "grpc.keepalive_timeout_ms": LOCAL_PING_TIMEOUT_MS}
    kept = [(name, value) for name, value in GRPCChannelFactory.DEFAULT_OPTIONS if name not in longer]
    GRPCChannelFactory.DEFAULT_OPTIONS = kept + sorted(longer.items())


def flush_data_plane_by_size_only() -> None:
    """In a process that runs Beam's FnApiRunner (the DirectRunner, the PortableRunner's embedded job server):
    its data-plane streams flush by size only. With Beam's default, a 1 s timer, a flush that runs while the
    runner is still writing a stage's input wipes the writes made between its copy and its clear: whole ~10 MB
    chunks of records vanish without an error under CPU load (Beam 2.78; docs/portable_runner_record_loss.md,
    reproduced with bench/repro_portable_loss.py: 9,243-36,975 of 200,000 elements lost at load 8, none with
    this setting). The runner then sends each stage input as whole chunks; streams flush at close."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers  # pylint: disable=import-outside-toplevel
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0
