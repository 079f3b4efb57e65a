"""Password guessing slows to a stop; tokens are never throttled."""

from __future__ import annotations

import pytest

from tokensmith.errors import TooManyAttempts
from tokensmith.throttle import SignInThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_account_is_refused_after_its_limit_from_that_address_only():
    clock = Clock()
    throttle = SignInThrottle(per_account=3, per_address=100, window_seconds=600, clock=clock)
    for _ in range(3):
        throttle.check("alice", "192.0.2.1")
        throttle.failed("Alice", "192.0.2.1")
    with pytest.raises(TooManyAttempts) as refused:
        throttle.check("ALICE", "192.0.2.1")
    assert refused.value.retry_after == 600 and "10 minute(s)" in refused.value.message
    throttle.check("alice", "198.51.100.7")  # the owner, elsewhere, is not locked out
    throttle.check("bob", "192.0.2.1")


def test_failures_age_out_of_the_window():
    clock = Clock()
    throttle = SignInThrottle(per_account=2, window_seconds=60, clock=clock)
    throttle.failed("alice", "192.0.2.1")
    clock.now += 30
    throttle.failed("alice", "192.0.2.1")
    with pytest.raises(TooManyAttempts) as refused:
        throttle.check("alice", "192.0.2.1")
    assert refused.value.retry_after == 30
    clock.now += 31
    throttle.check("alice", "192.0.2.1")


def test_one_address_cannot_spray_many_accounts():
    throttle = SignInThrottle(per_account=100, per_address=5, clock=Clock())
    for n in range(5):
        throttle.failed(f"user{n}", "192.0.2.9")
    with pytest.raises(TooManyAttempts):
        throttle.check("someone-else", "192.0.2.9")


def test_success_clears_the_account_count():
    throttle = SignInThrottle(per_account=2, clock=Clock())
    throttle.failed("alice", "192.0.2.1")
    throttle.succeeded("alice", "192.0.2.1")
    throttle.failed("alice", "192.0.2.1")
    throttle.check("alice", "192.0.2.1")
