"""Work on a timer: a round every interval, at once when woken, none after stop."""

from __future__ import annotations

import threading
import time

from tokensmith.housekeeping import Periodic


class Counting(Periodic):
    def __init__(self, interval: float) -> None:
        super().__init__("counting", interval)
        self.rounds = 0
        self.ran = threading.Event()

    def run_once(self) -> None:
        self.rounds += 1
        self.ran.set()
        if self.rounds == 1:
            raise RuntimeError("a failing round is logged, and the next one comes")


def test_a_job_woken_runs_at_once_and_a_stopped_one_ends_without_waiting_its_interval():
    job = Counting(interval=3600).start()
    try:
        job.wake()
        assert job.ran.wait(5) and job.rounds == 1
        job.ran.clear()
        job.wake()
        assert job.ran.wait(5) and job.rounds == 2  # the first round's failure stopped nothing
    finally:
        started = time.monotonic()
        job.stop()
    assert time.monotonic() - started < 2 and not job._thread.is_alive()
    assert job.rounds == 2


def test_a_job_runs_every_interval_unwoken():
    job = Counting(interval=0.05).start()
    try:
        deadline = time.monotonic() + 5
        while job.rounds < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        job.stop()
    assert job.rounds >= 3
