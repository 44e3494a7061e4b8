"""Watching a build on a Dask cluster from the launcher: progress records, worker CPU, and a stalled cluster.

Dask workers are started by the user, not by `bertbeam build`, so they neither inherit the progress folder nor
count as the launcher's child processes. Their build DoFns send their progress records as Dask events on a
topic of this run (`progress.Recorder(topic=...)`), which the launcher subscribes to; worker CPU is read from
every worker process at the start and the end. A cluster whose workers are all paused (Dask pauses a worker
over its memory limit's pause fraction) or gone makes no progress and would wait forever: after
`stall_after_s` of that the watch cancels the job (or interrupts the launcher before it is submitted), which
then fails with the message `stalled`.
"""
import _thread
import logging
import os
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional

ENV_STALL_S = "BERTBEAM_DASK_STALL_S"
DEFAULT_STALL_S = 120.0
CHECK_INTERVAL_S = 5.0


def new_topic() -> str:
    """A Dask event topic for one build's progress records."""
    return f"bertbeam-progress-{uuid.uuid4().hex[:12]}"


def process_cpu_seconds() -> float:
    """CPU-seconds of the calling process and its waited-for children (run on each Dask worker by Client.run)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def stall_problem(workers: Dict[str, Dict[str, Any]]) -> Optional[str]:
    """Why a cluster cannot make progress (no worker, or every worker paused), from the scheduler's worker
    table (`Client.scheduler_info()["workers"]`); None while some worker can run tasks."""
    if not workers:
        return "the cluster has no workers"
    statuses = {addr: str(info.get("status", "")) for addr, info in workers.items()}
    if all(status == "paused" for status in statuses.values()):
        memory = []
        for addr, info in sorted(workers.items()):
            used = (info.get("metrics") or {}).get("memory")
            limit = info.get("memory_limit")
            if used and limit:
                memory.append(f"{addr} at {100.0 * used / limit:.0f}% of {limit / 2 ** 30:.1f} GiB")
        detail = f" ({'; '.join(memory)})" if memory else ""
        return f"all {len(workers)} Dask workers are paused for lack of memory{detail}"
    return None


class DaskWatch:
    """Context manager around a Dask build: `on_records` receives the workers' progress records; `stalled` holds
    the reason once the watch stopped the job; `worker_cpu_s` the workers' CPU-seconds over the run."""

    def __init__(self, address: str, topic: str, on_records: Optional[Callable[[List[Dict]], None]] = None,
                 stall_after_s: float = DEFAULT_STALL_S, check_interval_s: float = CHECK_INTERVAL_S):
        self.address, self.topic = address, topic
        self._on_records = on_records
        self._stall_after_s = stall_after_s
        self._check_interval_s = check_interval_s
        self._client = None
        self._received = 0  # events delivered by the subscription
        self._cpu_start: Dict[str, float] = {}
        self.worker_cpu_s = 0.0
        self.stalled: Optional[str] = None
        # What stops the job once it has stalled: the launcher sets it to the Beam result's cancel() once the job
        # is submitted (its wait then raises); before that, the main thread is interrupted.
        self.on_stall: Optional[Callable[[], Any]] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._monitor, name="bertbeam-dask-watch", daemon=True)

    def __enter__(self) -> "DaskWatch":
        from distributed import Client  # pylint: disable=import-outside-toplevel
        self._client = Client(self.address, set_as_default=False)
        if self._on_records is not None:
            self._client.subscribe_topic(self.topic, self._receive)
        self._cpu_start = self._workers_cpu()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        try:
            if self._on_records is not None:
                self._client.unsubscribe_topic(self.topic)
                self._receive_stragglers()
            end = self._workers_cpu()
            # Workers that joined during the run count from zero; workers that left are not counted.
            self.worker_cpu_s = sum(cpu - self._cpu_start.get(addr, 0.0) for addr, cpu in end.items())
        except Exception as e:  # the figures are optional: never turn a finished build into a failure
            logging.info("Dask worker CPU unavailable: %s", e)
        finally:
            self._client.close()

    def _receive(self, event) -> None:
        self._received += 1
        self._on_records([event[1]])

    def _receive_stragglers(self, settle_s: float = 0.2, max_wait_s: float = 2.0) -> None:
        """Events the workers sent before the job ended but the subscription has not delivered yet: the
        scheduler keeps a topic's events in arrival order, the order the subscription delivers them in. A
        worker's last events may still be in its batched stream to the scheduler, so the topic is read until
        it holds no new event for `settle_s` (at most `max_wait_s`)."""
        deadline = time.monotonic() + max_wait_s
        quiet_reads = 0  # reads in a row that brought nothing new
        while quiet_reads < 2 and time.monotonic() < deadline:
            events = self._client.get_events(self.topic)
            if len(events) > self._received:
                self._on_records([msg for _, msg in events[self._received:]])
                self._received, quiet_reads = len(events), 0
            else:
                quiet_reads += 1
            if quiet_reads < 2:
                time.sleep(settle_s)

    def _workers_cpu(self) -> Dict[str, float]:
        return self._client.run(process_cpu_seconds)

    def _monitor(self) -> None:
        since: Optional[float] = None
        interrupted = False
        while not self._stop.wait(self._check_interval_s):
            try:
                problem = stall_problem(self._client.scheduler_info(n_workers=-1).get("workers", {}))
            except Exception as e:  # a scheduler that cannot answer is reported by Beam's own wait
                logging.info("Dask scheduler unavailable to the watch: %s", e)
                continue
            if problem is None and self.stalled is None:
                since = None
                continue
            since = since or time.monotonic()
            if time.monotonic() - since < self._stall_after_s:
                continue
            if self.stalled is None:
                self.stalled = (f"{problem} for {self._stall_after_s:.0f} s: the build cannot go on. Give the "
                                f"workers more memory (dask worker --memory-limit), use --shuffle=local_files "
                                f"(worker memory flat in corpus size), or more workers; "
                                f"{ENV_STALL_S} sets this wait")
            if self.on_stall is not None:
                self.on_stall()
                return
            if not interrupted:  # not submitted yet: interrupt the launcher, and cancel once it is submitted
                _thread.interrupt_main()
                interrupted = True
