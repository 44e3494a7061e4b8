"""SIGTERM (preemption) and time-based save decisions for the train loop, agreed across hosts."""
import logging
import signal
import threading
import time
from typing import Optional, Tuple


class StopAndSaveSignals:
    """Context manager: SIGTERM (and SIGINT unless told not to) only sets a flag; the loop finishes its step,
    saves and exits cleanly. A second SIGINT falls back to the default (KeyboardInterrupt) for a stuck run.

    Preemptible TPU/GPU VMs get SIGTERM some seconds before they go; without this a run loses everything
    since its last checkpoint.
    """

    def __init__(self, catch_sigint: bool = True):
        self.requested: Optional[str] = None
        self._catch_sigint = catch_sigint
        self._previous = {}

    def _handle(self, signum, frame):  # pylint: disable=unused-argument
        name = signal.Signals(signum).name
        if signum == signal.SIGINT and self.requested is not None:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self.requested = name
        logging.warning("%s received: finishing this step, saving a checkpoint, then exiting", name)

    def __enter__(self) -> "StopAndSaveSignals":
        if threading.current_thread() is not threading.main_thread():
            logging.info("not in the main thread: SIGTERM is not caught (no save on preemption)")
            return self
        signals = [signal.SIGTERM] + ([signal.SIGINT] if self._catch_sigint else [])
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class SaveClock:
    """--checkpoint_every_secs: is a time-based save due? (0 disables it.)"""

    def __init__(self, every_secs: float, now: Optional[float] = None):
        self.every_secs = float(every_secs)
        self.last = time.monotonic() if now is None else now

    def due(self, now: Optional[float] = None) -> bool:
        now = time.monotonic() if now is None else now
        return self.every_secs > 0 and now - self.last >= self.every_secs

    def saved(self, now: Optional[float] = None) -> None:
        self.last = time.monotonic() if now is None else now


def agree(stop: bool, save_due: bool) -> Tuple[bool, bool]:
    """(stop, save) as every host sees them: any host's stop request stops all; host 0's clock decides saves.

    Hosts receive SIGTERM at different steps and their clocks differ; Orbax saves are collective, so a
    decision taken by one host alone would hang the others.
    """
    import jax  # pylint: disable=import-outside-toplevel
    if jax.process_count() == 1:
        return stop, save_due
    import numpy as np  # pylint: disable=import-outside-toplevel
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    flags = np.asarray(multihost_utils.process_allgather(np.array([stop, save_due], np.int32)))
    return bool(flags[:, 0].any()), bool(flags[0, 1])
