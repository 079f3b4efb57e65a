"""Work a server process does on a timer, in a thread of its own, never on a request's path:
SQLite's checkpoints (sqlite_store.py), removing the sign-in throttle's old counts
(throttle.py), sending mail (mail.py), the sweep: unused tokens, expiry reminders (tokens/sweep.py)."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("tokensmith.housekeeping")


class Periodic:
    """A daemon thread that calls ``run_once`` every ``interval`` seconds until ``stop``.

    Subclasses override ``run_once``, and ``delay`` to wait longer after some rounds (a retry's
    back-off); ``wake`` starts the next round at once (mail just queued). A round that fails is
    logged by the kind of its error (never its words, which could quote a value) and the next
    round tries again: what it failed on (an outage, say) shows elsewhere.
    """

    def __init__(self, name: str, interval: float) -> None:
        self.name = name
        self.interval = interval
        self._stopping = threading.Event()
        self._woken = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def run_once(self) -> None:
        raise NotImplementedError

    def delay(self) -> float:
        """Seconds until the next round."""
        return self.interval

    def wake(self) -> None:
        self._woken.set()

    def start(self) -> Periodic:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._woken.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def round(self) -> None:
        """One round, its failure logged rather than raised."""
        try:
            self.run_once()
        except Exception as error:  # noqa: BLE001 a timer thread must outlive any one round
            log.info("%s: this round was skipped (%s)", self.name, type(error).__name__)

    def _run(self) -> None:
        while True:
            self._woken.wait(self.delay())
            self._woken.clear()
            if self._stopping.is_set():
                return
            self.round()
