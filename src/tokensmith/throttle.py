"""Slowing down password guessing: failures counted in a sliding window, in memory.

Counted per (username, address), so that a stranger cannot lock a person out from
elsewhere, and per address, so that one machine cannot spray passwords across accounts.
Tokens are not throttled: at ~190 bits they cannot be guessed, and their check is cheap.
The counts live in the server process; a restart forgets them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from tokensmith.errors import TooManyAttempts

MAX_TRACKED = 100_000


class SignInThrottle:
    def __init__(
        self,
        *,
        per_account: int = 10,
        per_address: int = 50,
        window_seconds: float = 15 * 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = {"account": per_account, "address": per_address}
        self.window = window_seconds
        self.clock = clock
        self._failures: dict[tuple[str, ...], deque[float]] = {}
        self._lock = threading.Lock()

    def _keys(self, username: str, address: str | None) -> list[tuple[str, ...]]:
        address = address or "unknown"
        return [("account", username.strip().lower(), address), ("address", address)]

    def check(self, username: str, address: str | None) -> None:
        """Raise TooManyAttempts while either count is at its limit."""
        now = self.clock()
        with self._lock:
            for key in self._keys(username, address):
                failures = self._recent(key, now)
                if len(failures) >= self.limits[key[0]]:
                    wait = math.ceil(failures[0] + self.window - now)
                    raise TooManyAttempts(
                        "Too many failed sign-ins. Wait "
                        f"{max(1, math.ceil(wait / 60))} minute(s) and try again.",
                        retry_after=wait,
                    )

    def failed(self, username: str, address: str | None) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) >= MAX_TRACKED:
                self._forget_stale(now)
            for key in self._keys(username, address):
                self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, username: str, address: str | None) -> None:
        with self._lock:
            self._failures.pop(self._keys(username, address)[0], None)

    def _recent(self, key: tuple[str, ...], now: float) -> deque[float]:
        failures = self._failures.get(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def _forget_stale(self, now: float) -> None:
        for key in [key for key, times in self._failures.items() if not self._recent(key, now)]:
            del self._failures[key]
