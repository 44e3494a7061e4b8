"""Progress you can see: per-process progress records, their aggregation, and the lines printed on stderr.

Local runs: each process doing build work (the launching process with `in_memory`, the worker
subprocesses with `multi_processing`) appends small JSON records to its own file under the folder named by
$BERTBEAM_PROGRESS_DIR; a thread in the launching process sums them every few seconds and prints one line
on stderr. Records are progress figures only (a retried bundle may count twice); the manifest's counts
come from the data. Nothing here touches the output. On Dataflow the same figures are Beam counters.
"""
import json
import os
import sys
import threading
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, TextIO, Tuple

ENV_DIR = "BERTBEAM_PROGRESS_DIR"
ENV_INTERVAL = "BERTBEAM_PROGRESS_INTERVAL_S"  # seconds between lines (default 5; a line at least every 10 s)
DEFAULT_INTERVAL_S = 5.0


def interval_from_env() -> float:
    try:
        return max(0.05, float(os.environ.get(ENV_INTERVAL, DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S

# Stage names in the order the time table lists them.
STAGES = ("read", "tokenize", "build_instances", "spill", "write_shards")


# --- pure formatting ------------------------------------------------------------------------------------

def format_duration(seconds: Optional[float]) -> str:
    """12s, 3m05s, 1h02m; '?' when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def eta_seconds(done: float, total: float, elapsed: float) -> Optional[float]:
    """Time left at the average rate so far; None before there is a rate or when the total is unknown."""
    if total <= 0 or done <= 0 or elapsed <= 0:
        return None
    return max(0.0, (total - done) * elapsed / done)


def build_line(totals: Dict[str, float], total_bytes: int, elapsed: float, eta: Optional[float] = None,
               num_shards: int = 0) -> str:
    """One progress line of a build: input MB done / total, documents, instances, instances/s, ETA (default:
    from the average input rate so far) and, once shards are being written, how many are done."""
    done = min(float(totals.get("bytes", 0)), float(total_bytes)) if total_bytes else float(totals.get("bytes", 0))
    inst = int(totals.get("instances", 0))
    pct = f" ({100.0 * done / total_bytes:.0f}%)" if total_bytes else ""
    rate = inst / elapsed if elapsed > 0 else 0.0
    eta = eta_seconds(done, total_bytes, elapsed) if eta is None else eta
    line = (f"[build {format_duration(elapsed)}] input {done / 1e6:.1f}/{total_bytes / 1e6:.1f} MB{pct}  "
            f"documents {int(totals.get('documents', 0)):,}  instances {inst:,}  {rate:,.0f} instances/s  ")
    if totals.get("shards") or (total_bytes and done >= total_bytes and num_shards):
        return line + f"shards written {int(totals.get('shards', 0))}/{num_shards}"
    return line + f"ETA {format_duration(eta)}"


def train_line(step: int, last_step: int, examples_per_s: float, eta: Optional[float], elapsed: float) -> str:
    """One progress line of training: step, examples/s, ETA to the last step."""
    return (f"[train {format_duration(elapsed)}] step {step:,}/{last_step:,}  {examples_per_s:,.1f} examples/s  "
            f"ETA {format_duration(eta)}")


def text_line(label: str, pass_index: int, passes: int, done_bytes: float, total_bytes: float, sentences: int,
              elapsed: float) -> str:
    """`[vocab 12s] pass 1/2: text 3.1/17.7 MB (18%)  120,000 sentences  10,000 sentences/s  ETA 1m50s`;
    the ETA covers every pass (bytes are approximate: characters of the sentences read)."""
    done = min(done_bytes, total_bytes) if total_bytes else done_bytes
    pct = f" ({100.0 * done / total_bytes:.0f}%)" if total_bytes else ""
    overall = (pass_index - 1) * total_bytes + done
    eta = eta_seconds(overall, passes * total_bytes, elapsed)
    tail = "reading done; training" if pass_index == passes and total_bytes and done >= total_bytes else \
        f"ETA {format_duration(eta)}"
    rate = sentences / elapsed if elapsed > 0 else 0.0
    return (f"[{label} {format_duration(elapsed)}] pass {pass_index}/{passes}: text {done / 1e6:.1f}/"
            f"{total_bytes / 1e6:.1f} MB{pct}  {sentences:,} sentences  {rate:,.0f} sentences/s  {tail}")


STARTUP, OTHER = "start-up (launcher)", "runner and other"


def stage_table(stages: Dict[str, float], wall: float) -> str:
    """The time table printed when a build ends: CPU-seconds per stage (summed over workers) and shares."""
    rows: List[Tuple[str, float]] = [(STARTUP, stages[STARTUP])] if STARTUP in stages else []
    rows += [(name, stages[name]) for name in STAGES if name in stages]
    rows += [(name, value) for name, value in sorted(stages.items()) if name not in STAGES + (STARTUP, OTHER)]
    rows += [(OTHER, stages[OTHER])] if OTHER in stages else []
    total = sum(v for _, v in rows)
    width = max([len(n) for n, _ in rows] + [len("stage")])
    out = [f"{'stage':<{width}}  {'cpu s':>8}  {'share':>6}"]
    for name, value in rows:
        out.append(f"{name:<{width}}  {value:>8.2f}  {100.0 * value / total if total else 0.0:>5.1f}%")
    out.append(f"{'total':<{width}}  {total:>8.2f}  (wall {wall:.1f} s, {total / wall if wall else 0:.2f} cores busy)")
    return "\n".join(out)


# --- aggregation (pure) ---------------------------------------------------------------------------------

def aggregate(records: Iterable[Dict]) -> Dict[str, float]:
    """Sums progress records: documents, instances and stage seconds add up; each input range's byte
    position is the furthest reported for it (records say where a range's reader is, not how far it moved)."""
    totals: Dict[str, float] = {"documents": 0, "instances": 0, "bytes": 0}
    position: Dict[str, int] = {}
    stages: Dict[str, float] = {}
    startup: Dict[int, float] = {}
    for r in records:
        if "c0" in r:
            startup[r.get("p", 0)] = min(startup.get(r.get("p", 0), float("inf")), float(r["c0"]))
        totals["documents"] += r.get("d", 0)
        totals["instances"] += r.get("i", 0)
        totals["shards"] = totals.get("shards", 0) + r.get("w", 0)
        if "r" in r:
            position[r["r"]] = max(position.get(r["r"], 0), int(r.get("b", 0)))
        for name, value in r.get("s", {}).items():
            stages[name] = stages.get(name, 0.0) + float(value)
    totals["bytes"] = sum(position.values())
    totals["stages"] = stages  # type: ignore[assignment]
    totals["startup"] = sorted(startup.values())  # type: ignore[assignment]
    return totals


def read_records(folder: str, offsets: Dict[str, int], into: List[Dict]) -> None:
    """Appends the complete new records of every file in `folder` to `into`; `offsets` remembers how far
    each file was read (a record still being written is left for the next call)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        try:
            with open(path, "rb") as f:
                f.seek(offsets.get(name, 0))
                data = f.read()
        except OSError:
            continue
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            try:
                into.append(json.loads(line))
            except ValueError:
                continue
        offsets[name] = offsets.get(name, 0) + end


# --- worker side ----------------------------------------------------------------------------------------

class Recorder:
    """Appends progress records for this process to $BERTBEAM_PROGRESS_DIR/<pid>.jsonl; with a `topic`, inside a
    Dask worker, sends them as Dask events on that topic instead (pipeline/dask_watch.py receives them); a
    no-op elsewhere.

    Cheap: one short record per bucket (a bucket is thousands of instances), written with one write call.
    """

    def __init__(self, folder: Optional[str] = None, topic: Optional[str] = None):
        self._folder = os.environ.get(ENV_DIR) if folder is None else folder
        self._file = None
        self._startup: Optional[float] = None
        self._dask_worker = None
        if topic:
            self._dask_worker = _current_dask_worker()
            self._topic = topic
            if self._dask_worker is not None:
                self._folder = None  # the worker's events reach the launcher; no local folder to write

    def first_document(self) -> Optional[float]:
        """Notes this process's CPU-seconds when it first starts reading (its start-up cost: interpreter,
        imports, unpickling, tokenizer) and returns them the first time, None afterwards."""
        if self._startup is not None:
            return None
        self._startup = time.process_time()
        if self._dask_worker is None:  # a Dask worker outlives builds: its process CPU is not this build's start-up
            self._write({"c0": round(self._startup, 4), "p": os.getpid()})
        return self._startup

    @property
    def enabled(self) -> bool:
        return bool(self._folder) or self._dask_worker is not None

    def record(self, range_key: Optional[str] = None, position: int = 0, documents: int = 0,
               instances: int = 0, stages: Optional[Dict[str, float]] = None, shards: int = 0) -> None:
        if not self.enabled:
            return
        rec: Dict = {"w": shards} if shards else {}
        if range_key is not None:
            rec["r"], rec["b"] = range_key, int(position)
        if documents:
            rec["d"] = int(documents)
        if instances:
            rec["i"] = int(instances)
        if stages:
            rec["s"] = {k: round(v, 4) for k, v in stages.items() if v}
        self._write(rec)

    def _write(self, rec: Dict) -> None:
        if self._dask_worker is not None:
            try:
                self._dask_worker.log_event(self._topic, rec)
            except Exception:  # progress is optional: never fail a build over it  # pylint: disable=broad-except
                self._dask_worker = None
            return
        if not self._folder:
            return
        try:
            if self._file is None:
                self._file = open(os.path.join(self._folder, f"{os.getpid()}-{id(self):x}.jsonl"), "a",
                                  encoding="utf-8")
            self._file.write(json.dumps(rec, separators=(",", ":")) + "\n")
            self._file.flush()
        except OSError:
            self._folder = None  # progress is optional: never fail a build over it


def _current_dask_worker():
    """The Dask worker running this code, or None (not in a Dask worker, or dask.distributed not installed)."""
    try:
        from distributed import get_worker  # pylint: disable=import-outside-toplevel
        return get_worker()
    except (ImportError, ValueError):
        return None


class StageClock:
    """CPU-seconds of the calling thread per stage: `with clock("tokenize"): ...`; `take()` returns and
    resets what was measured since the last take."""

    def __init__(self):
        self._spent: Dict[str, float] = {}

    def __call__(self, stage: str) -> "_Timing":
        return _Timing(self, stage)

    def add(self, stage: str, seconds: float) -> None:
        self._spent[stage] = self._spent.get(stage, 0.0) + seconds

    def take(self) -> Dict[str, float]:
        spent, self._spent = self._spent, {}
        return spent


class _Timing:
    __slots__ = ("_clock", "_stage", "_t")

    def __init__(self, clock: StageClock, stage: str):
        self._clock, self._stage = clock, stage

    def __enter__(self):
        self._t = time.thread_time()
        return self

    def __exit__(self, *exc):
        self._clock.add(self._stage, time.thread_time() - self._t)
        return False


# --- launcher side --------------------------------------------------------------------------------------

class Reporter:
    """Prints a line on `stream` every `interval` seconds from `line(elapsed)`, from a daemon thread.

    `line` returns the text, or None to skip this tick. `stop()` prints the last line once more.
    """

    def __init__(self, line: Callable[[float], Optional[str]], interval: float = DEFAULT_INTERVAL_S,
                 stream: Optional[TextIO] = None, started: Optional[float] = None):
        self._line = line
        self._interval = interval
        self._stream = stream if stream is not None else sys.stderr
        self._started = time.time() if started is None else started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bertbeam-progress", daemon=True)

    def start(self) -> "Reporter":
        self._thread.start()
        return self

    def _emit(self) -> None:
        try:
            text = self._line(time.time() - self._started)
        except Exception as e:  # progress must never break the run it reports on
            text = f"[progress] unavailable: {e}"
        if text:
            print(text, file=self._stream, flush=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._emit()

    def stop(self, final: bool = True) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if final:
            self._emit()


class BuildProgress:
    """The launching process's side of a build's progress: sets up the record folder (inherited by worker
    subprocesses through the environment), prints a line every interval and the time table at the end."""

    def __init__(self, total_bytes: int, folder: str, interval: Optional[float] = None,
                 stream: Optional[TextIO] = None, started: Optional[float] = None, num_shards: int = 0,
                 startup_parts: Optional[Sequence[Tuple[str, float]]] = None):
        interval = interval_from_env() if interval is None else interval
        self.startup_parts = list(startup_parts or [])  # (step, CPU-s) of the launcher's start-up, in order
        self.total_bytes = int(total_bytes)
        self.num_shards = num_shards
        self._first_progress: Optional[Tuple[float, float]] = None  # (elapsed, bytes) at the first input read
        self.folder = folder
        self._offsets: Dict[str, int] = {}
        self._records: List[Dict] = []
        self._lock = threading.Lock()
        self._stream = stream if stream is not None else sys.stderr
        self._started = time.time() if started is None else started
        self._reporter = Reporter(self._line, interval, self._stream, self._started)
        self._previous_env: Optional[str] = None
        self._cpu_at_start = (0.0, 0.0)

    def totals(self) -> Dict[str, float]:
        with self._lock:
            read_records(self.folder, self._offsets, self._records)
            return aggregate(self._records)

    def add_records(self, records: Iterable[Dict]) -> None:
        """Records that arrived another way than the folder (a Dask cluster's events); thread-safe."""
        with self._lock:
            self._records.extend(records)

    def _line(self, elapsed: float) -> str:
        totals = self.totals()
        done = float(totals["bytes"])
        eta = None
        if self._first_progress is None:
            if done > 0:
                self._first_progress = (elapsed, done)
        elif done > self._first_progress[1]:
            # The rate since input first moved: worker start-up would otherwise inflate the first ETAs.
            t0, b0 = self._first_progress
            eta = max(0.0, self.total_bytes - done) * (elapsed - t0) / (done - b0)
        return build_line(totals, self.total_bytes, elapsed, eta, self.num_shards)

    def __enter__(self) -> "BuildProgress":
        os.makedirs(self.folder, exist_ok=True)
        self._previous_env = os.environ.get(ENV_DIR)
        os.environ[ENV_DIR] = self.folder
        self._cpu_at_start = (time.process_time(), _children_cpu())
        self._reporter.start()
        return self

    def __exit__(self, *exc) -> None:
        self._reporter.stop(final=exc[0] is None)
        if self._previous_env is None:
            os.environ.pop(ENV_DIR, None)
        else:
            os.environ[ENV_DIR] = self._previous_env
        if exc[0] is not None:  # no finish() will follow
            import shutil  # pylint: disable=import-outside-toplevel
            shutil.rmtree(self.folder, ignore_errors=True)

    def finish(self, other_processes_cpu: float = 0.0) -> str:
        """The per-stage time table, and the record folder removed. Stages come from the workers' records;
        start-up is the launching process's CPU before the pipeline started (imports, flags, input checks,
        tokenizer); "runner and other" is the rest of all processes' CPU (Beam's runner, pickling, the
        shuffle, worker start-up) -- reaped worker subprocesses included, and `other_processes_cpu`: CPU of
        processes that are not the launcher's children (a Dask cluster's workers)."""
        totals = self.totals()
        stages = dict(totals["stages"])  # type: ignore[arg-type]
        startup_cpu, children_before = self._cpu_at_start
        total_cpu = time.process_time() + _children_cpu() - children_before + other_processes_cpu
        stages[STARTUP] = startup_cpu
        stages[OTHER] = max(0.0, total_cpu - sum(stages.values()))
        import shutil  # pylint: disable=import-outside-toplevel
        shutil.rmtree(self.folder, ignore_errors=True)
        return (stage_table(stages, time.time() - self._started) + startup_parts_line(self.startup_parts)
                + startup_line(totals["startup"]))  # type: ignore


def startup_parts_line(parts: Sequence[Tuple[str, float]]) -> str:
    """`\nstart-up (launcher): imports 0.42, ...` -- where the launching process's start-up went."""
    if not parts:
        return ""
    return "\nstart-up (launcher): " + ", ".join(f"{name} {seconds:.2f}" for name, seconds in parts)


def startup_line(per_process: List[float]) -> str:
    """`\nworker start-up: ...` -- CPU-seconds each build process spent before reading its first document."""
    if not per_process:
        return ""
    return (f"\nworker start-up (CPU-seconds before the first document): max {max(per_process):.2f}, "
            f"mean {sum(per_process) / len(per_process):.2f} over {len(per_process)} process(es)")


def _children_cpu() -> float:
    """CPU-seconds of this process's finished (waited-for) child processes."""
    try:
        import resource  # pylint: disable=import-outside-toplevel
    except ImportError:  # not POSIX
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def quiet_from_env() -> bool:
    """BERTBEAM_QUIET=1 turns every progress line off (what --quiet does)."""
    return os.environ.get("BERTBEAM_QUIET", "").strip().lower() in ("1", "true", "yes")


class TextProgress:
    """`bertbeam vocab`: progress through the training text. `wrap(sentences)` starts a pass and counts what
    the trainer reads; a line every interval on stderr until `stop()`."""

    def __init__(self, total_bytes: int, passes: int = 1, label: str = "vocab", interval: Optional[float] = None,
                 stream: Optional[TextIO] = None):
        self.total_bytes, self.passes, self.label = int(total_bytes), max(1, passes), label
        self.pass_index, self.bytes, self.sentences = 0, 0, 0
        self._reporter = Reporter(self._line, interval_from_env() if interval is None else interval, stream)

    def _line(self, elapsed: float) -> Optional[str]:
        if self.pass_index == 0:
            return None
        return text_line(self.label, self.pass_index, max(self.passes, self.pass_index), self.bytes,
                         self.total_bytes, self.sentences, elapsed)

    def wrap(self, sentences: Iterable[str]) -> Iterable[str]:
        self.pass_index += 1
        self.bytes = 0
        for sentence in sentences:
            self.bytes += len(sentence) + 1
            self.sentences += 1
            yield sentence

    def start(self) -> "TextProgress":
        self._reporter.start()
        return self

    def stop(self) -> None:
        self._reporter.stop(final=False)


class TrainProgress:
    """`bertbeam train`: a line every interval on stderr with the step, examples/s and the ETA to the last
    step. The training loop only sets `.step` (an int; read by the thread). The rate is measured from the
    first step seen done, so compilation does not count (steps are dispatched asynchronously, so a short
    window would jump)."""

    def __init__(self, last_step: int, start_step: int, batch_size: int, interval: Optional[float] = None,
                 stream: Optional[TextIO] = None):
        self.step = start_step
        self.start_step, self.last_step, self.batch_size = start_step, last_step, batch_size
        self._first: Optional[Tuple[float, int]] = None  # (time, step) when a step was first seen done
        self._reporter = Reporter(self._line, interval_from_env() if interval is None else interval, stream)

    def _line(self, elapsed: float, now: Optional[float] = None) -> str:
        now, step = time.time() if now is None else now, self.step
        if step == self.start_step:
            return (f"[train {format_duration(elapsed)}] step {step:,}/{self.last_step:,}  "
                    f"compiling / waiting for the first step")
        if self._first is None:
            self._first = (now, step)
        t1, s1 = self._first
        steps_per_s = (step - s1) / (now - t1) if now > t1 and step > s1 else 0.0
        eta = (self.last_step - step) / steps_per_s if steps_per_s > 0 else None
        return train_line(step, self.last_step, steps_per_s * self.batch_size, eta, elapsed)

    def start(self) -> "TrainProgress":
        self._reporter.start()
        return self

    def stop(self) -> None:
        self._reporter.stop(final=False)
