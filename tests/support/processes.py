"""Stopping what we started, by its own process id."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Collection

import httpx


def stop_process(process: subprocess.Popen | None, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def wait_until_answering(
    process: subprocess.Popen,
    url: str,
    *,
    statuses: Collection[int],
    timeout: float,
    name: str,
    console: Callable[[], str],
    failure: type[Exception],
) -> None:
    """Wait until ``url`` answers one of ``statuses``; ``failure`` with the console if the
    process exits first or the time runs out (and then it is stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise failure(f"{name} exited with {process.returncode}:\n{console()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code in statuses:
                return
        time.sleep(0.1)
    stop_process(process)
    raise failure(f"{name} did not answer within {timeout}s:\n{console()}")
