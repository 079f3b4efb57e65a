"""The machine under the benchmark: CPU pinning, and what else used the CPUs meanwhile.

On a shared machine another test run can take the CPUs the benchmark pins, and a shared host
can slow them down with no process here to show for it. Both are measured, so that a noisy
run says so instead of passing for a figure.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

SERVER_CPU = 0
CLIENT_CPU = 1  # wrk, PostgreSQL, and this harness while it waits


def can_pin() -> bool:
    return shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) >= 2


@contextlib.contextmanager
def cpu_affinity(cpu: int, pin: bool = True) -> Iterator[None]:
    """Run the block (and every process it starts) on one CPU; children inherit it."""
    if not pin:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# --- what else ran on the machine meanwhile -----------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """CPU seconds spent busy on all CPUs since boot (steal included: time the host took)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and of its children that have exited (PostgreSQL backends)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


class ForeignLoad:
    """How much CPU processes other than ours used during a block, in % of one CPU.

    Busy time of the whole machine minus that of our own processes (this one, the server,
    PostgreSQL and its backends, wrk). Another test run on the machine shows up here.
    """

    def __init__(self, own_pids: Callable[[], list[int]] = list) -> None:
        self.own_pids = own_pids
        self.percent = self.wall = 0.0

    def _own(self) -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        pids = {os.getpid(), *self.own_pids()}
        return children.ru_utime + children.ru_stime + sum(process_cpu_seconds(p) for p in pids)

    def __enter__(self) -> ForeignLoad:
        self.started, self.busy, self.own = time.monotonic(), system_busy_seconds(), self._own()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wall = wall = time.monotonic() - self.started
        foreign = (system_busy_seconds() - self.busy) - (self._own() - self.own)
        self.percent = max(0.0, foreign / wall * 100) if wall > 0 else 0.0


def cpu_speed_ms(cpu: int, pin: bool = True) -> float:
    """How long a fixed pure-Python loop takes on ``cpu`` (best of 3), in ms.

    A host that shares its CPUs with other machines slows ours down without any process
    here to show for it; this shows it.
    """
    with cpu_affinity(cpu, pin):
        best = float("inf")
        for _ in range(3):
            start, total = time.perf_counter(), 0
            for i in range(200_000):
                total += i
            best = min(best, time.perf_counter() - start)
    return best * 1000


def idle_check(seconds: float = 1.0) -> float:
    """% of one CPU used by others while we do nothing."""
    with ForeignLoad() as load:
        time.sleep(seconds)
    return load.percent
