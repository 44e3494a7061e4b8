"""Process environment of a build: native thread pools sized to one thread, a cheaper garbage collector and
allocator, and one-line, noise-free logs."""
import codecs
import ctypes
import ctypes.util
import functools
import gc
import logging
import os
import re
from typing import Dict, MutableMapping, Optional

# A build process is one worker of a pool of one process per vCPU (Dataflow, --direct_num_workers): its
# work is single-threaded Python. Native pools sized to every core only spin while waiting and, with
# several worker processes per machine, multiply CPU time under load. These are read when the libraries
# load, so they are set before the first import of numpy/Beam; worker subprocesses inherit them.
THREAD_POOL_ENV: Dict[str, str] = {
    "OMP_NUM_THREADS": "1",  # OpenMP (oneDNN, MKL, OpenBLAS built with OpenMP)
    "OPENBLAS_NUM_THREADS": "1",  # numpy's OpenBLAS
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "RAYON_NUM_THREADS": "1",  # Rust rayon (HF tokenizers)
    "TOKENIZERS_PARALLELISM": "false",
    "TF_NUM_INTRAOP_THREADS": "1",  # TensorFlow, should anything load it
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",  # and without its start-up chatter
    # pyarrow (imported by Beam) starts a jemalloc purging thread at import; the build never allocates through
    # Arrow, and a single-threaded launcher can fork its loaded workers (pipeline/local_workers.py).
    "JE_ARROW_MALLOC_CONF": "background_thread:false",
}


def limit_thread_pools(env: Optional[MutableMapping[str, str]] = None) -> Dict[str, str]:
    """Sets every THREAD_POOL_ENV variable the user has not set; returns the ones it set."""
    env = os.environ if env is None else env
    applied = {}
    for name, value in THREAD_POOL_ENV.items():
        if name not in env:
            env[name] = value
            applied[name] = value
    return applied


# Collect the youngest generation every 20,000 container allocations (Python's default: 700). Building
# instances allocates millions of short-lived lists that reference counting frees anyway; each full collection
# also walked every object of Beam's and numpy's ~100,000-object module graph. Measured on a 4.4 MB build:
# 0.42 CPU-s of 3.2 in the collector before, 0.15 after (with freeze_startup_objects).
GC_THRESHOLDS = (20_000, 20, 20)


def freeze_startup_objects() -> None:
    """Moves everything alive now (modules, classes, the vocabulary) out of the collector's reach and
    raises its thresholds. Called once per worker process after start-up (DoFn.setup); nothing is freed
    later than it would be by reference counting, only cyclic garbage waits a little longer."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


# glibc malloc: serve blocks up to 256 MB from the heap (not fresh mmap/munmap pairs) and give freed heap
# memory back to the system only when 256 MB sit free at its top. Building instances allocates and frees
# lists of a few hundred KB to a few MB per document batch; with glibc's defaults each such block is an
# mmap + munmap pair (page faults, zeroing) and each free at the heap's top a trim. Measured on en_books_dev
# x20: build_instances 3.19 -> 2.66 CPU-s, no peak-RSS growth (a build's live set is bounded; the heap is
# reused, not grown). Environment variables (MALLOC_*_) only act when a process starts, so mallopt is
# called at run time; the variables are also set for worker subprocesses started later.
# One arena: Beam's SDK harness runs bundles on pool threads, and glibc gives each thread its own arena (heaps
# grown and shrunk apart), so a worker faulted fresh pages in again and again; a build works on one thread at a
# time. Measured on x20, multi_processing with 2 workers: 5.12 -> 4.90 CPU-s (minor faults 137,000 -> 117,000,
# three runs each), in_memory unchanged.
M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MALLOC_THRESHOLD_BYTES = 256 * 1024 * 1024
MALLOC_ARENAS = 1


@functools.lru_cache(maxsize=1)
def _glibc() -> Optional[ctypes.CDLL]:
    """The C library if it is glibc (has mallopt and gnu_get_libc_version), else None. Tries glibc's soname
    first: ctypes.util.find_library runs `ldconfig -p` in a subprocess (tens of ms in every worker)."""
    for name in ("libc.so.6", None):
        try:
            libc = ctypes.CDLL(name or ctypes.util.find_library("c") or "libc.so.6")
            libc.gnu_get_libc_version  # pylint: disable=pointless-statement  # only glibc has it
            libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
            libc.mallopt.restype = ctypes.c_int
            return libc
        except (OSError, AttributeError, TypeError):
            continue
    return None


def tune_malloc(threshold: int = MALLOC_THRESHOLD_BYTES, env: Optional[MutableMapping[str, str]] = None) -> bool:
    """Sets glibc's mmap and trim thresholds and its arena count in this process (and, where the user has not
    set them, the MALLOC_* variables children inherit; a user's MALLOC_ARENA_MAX is also kept in this process).
    True when every mallopt call succeeded; False, doing nothing to this process, where the C library is not
    glibc or refuses -- never an error."""
    env = os.environ if env is None else env
    libc = _glibc()
    if libc is None:
        return False
    own_arenas = "MALLOC_ARENA_MAX" in env
    values = {"MALLOC_MMAP_THRESHOLD_": str(threshold), "MALLOC_TRIM_THRESHOLD_": str(threshold),
              "MALLOC_ARENA_MAX": str(MALLOC_ARENAS)}
    for name, value in values.items():
        env.setdefault(name, value)
    try:
        calls = [(M_MMAP_THRESHOLD, threshold), (M_TRIM_THRESHOLD, threshold)]
        calls += [] if own_arenas else [(M_ARENA_MAX, MALLOC_ARENAS)]
        return all([libc.mallopt(param, value) == 1 for param, value in calls])
    except (OSError, ctypes.ArgumentError):
        return False


def prepare_worker() -> None:
    """Called in each build worker's DoFn.setup: the thread-pool variables for anything loaded from now on
    (on Dataflow the SDK process starts without them; numpy is loaded by then, but the build makes no BLAS
    calls, so its pool stays idle), the allocator thresholds and the collector settings above."""
    limit_thread_pools()
    tune_malloc()
    freeze_startup_objects()


# Beam forwards each worker log entry to the launcher as "Worker: <the whole protobuf on one line>".
_WORKER_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
# Known harmless warnings: Beam's local multi_processing workers have no persistent directory; Beam's import
# on an install without the Google Cloud libraries (the default: setup.py's `dataflow` extra adds them); a job
# left on Beam's default runner (bertbeam vocab's sampling job without --runner).
_NOISE = ("No semi_persistent_directory found",
          "apitools not found, and bigquery client libraries are not available",
          "Missing pipeline option (runner). Executing pipeline using the default runner")


class WorkerLogFilter(logging.Filter):
    """Drops known noise and shortens forwarded worker log entries to `worker: <message>`."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(n in text for n in _NOISE):
            return False
        if record.msg == "Worker: %s" and record.args:
            found = _WORKER_MESSAGE.search(text)
            if found:
                message = codecs.escape_decode(found.group(1).encode("utf-8"))[0].decode("utf-8", "replace")
                record.msg, record.args = "worker: %s", (message,)
        return True


def install_log_filters() -> None:
    """Adds WorkerLogFilter to Beam's logger that forwards worker logs and to the root logger, which Beam's
    import-time warnings use (idempotent; before Beam is imported)."""
    for logger in (logging.getLogger("apache_beam.runners.portability.local_job_service"), logging.getLogger()):
        if not any(isinstance(f, WorkerLogFilter) for f in logger.filters):
            logger.addFilter(WorkerLogFilter())
