"""Password guessing slows to a stop, counted in the store; tokens are never throttled."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import event, func, select

from tokensmith.accounts.throttle import SignInThrottle, ThrottlePruner
from tokensmith.errors import TooManyAttempts
from tokensmith.store.database import session_factory, unit_of_work
from tokensmith.store.models import SignInFailure


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0  # on a minute: failures counted from their minute's start

    def __call__(self) -> float:
        return self.now


def statements(db):
    """The SQL statements run on the test's connection while the block runs."""
    seen: list[str] = []
    connection = db.connection()

    def note(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)

    event.listen(connection, "before_cursor_execute", note)
    return seen, lambda: event.remove(connection, "before_cursor_execute", note)


def test_an_account_is_refused_after_its_limit_from_that_address_only(db, keys):
    clock = Clock()
    throttle = SignInThrottle(keys, per_account=3, per_address=100, window_seconds=600, clock=clock)
    for _ in range(3):
        throttle.check(db, "alice", "192.0.2.1")
        throttle.failed(db, "Alice", "192.0.2.1")
    with pytest.raises(TooManyAttempts) as refused:
        throttle.check(db, "ALICE", "192.0.2.1")
    assert refused.value.retry_after == 600 and "10 minute(s)" in refused.value.message
    throttle.check(db, "alice", "198.51.100.7")  # the owner, elsewhere, is not locked out
    throttle.check(db, "bob", "192.0.2.1")


def test_failures_age_out_of_the_window(db, keys):
    clock = Clock()
    throttle = SignInThrottle(keys, per_account=2, window_seconds=60, clock=clock)
    throttle.failed(db, "alice", "192.0.2.1")
    clock.now += 30
    throttle.failed(db, "alice", "192.0.2.1")
    with pytest.raises(TooManyAttempts) as refused:
        throttle.check(db, "alice", "192.0.2.1")
    assert refused.value.retry_after == 30
    clock.now += 31
    throttle.check(db, "alice", "192.0.2.1")


def test_one_address_cannot_spray_many_accounts(db, keys):
    throttle = SignInThrottle(keys, per_account=100, per_address=5, clock=Clock())
    for n in range(5):
        throttle.failed(db, f"user{n}", "192.0.2.9")
    with pytest.raises(TooManyAttempts):
        throttle.check(db, "someone-else", "192.0.2.9")


def test_success_clears_the_account_count(db, keys):
    throttle = SignInThrottle(keys, per_account=2, clock=Clock())
    throttle.failed(db, "alice", "192.0.2.1")
    throttle.succeeded(db, "alice", "192.0.2.1")
    throttle.failed(db, "alice", "192.0.2.1")
    throttle.check(db, "alice", "192.0.2.1")


def test_every_instance_counts_into_the_same_store(db, keys):
    """Two throttles, as two instances (or workers) hold them, see each other's failures: a
    guesser spreading attempts across them gains nothing."""
    clock = Clock()
    first, second = (SignInThrottle(keys, per_account=4, clock=clock) for _ in range(2))
    for attempt in range(4):
        (first if attempt % 2 else second).failed(db, "alice", "192.0.2.1")
    for throttle in (first, second):
        with pytest.raises(TooManyAttempts):
            throttle.check(db, "alice", "192.0.2.1")


def test_a_failure_is_one_upsert_and_a_check_one_read(db, keys):
    throttle = SignInThrottle(keys, per_account=50, clock=Clock())
    seen, stop = statements(db)
    try:
        throttle.failed(db, "alice", "192.0.2.1")
        throttle.failed(db, "alice", "192.0.2.1")  # the same minute: the same rows, one more each
        throttle.check(db, "alice", "192.0.2.1")
    finally:
        stop()
    assert [s.split()[0].upper() for s in seen] == ["INSERT", "INSERT", "SELECT"]
    assert "ON CONFLICT" in seen[0].upper()
    rows = db.execute(select(SignInFailure.failures)).scalars().all()
    assert sorted(rows)[-2:] == [2, 2]  # the account's and the address's, each counted twice


def test_the_store_holds_digests_not_what_was_typed(db, keys):
    typed = "a-password-typed-into-the-username-field"
    SignInThrottle(keys, clock=Clock()).failed(db, typed, "203.0.113.77")
    for (digest,) in db.execute(select(SignInFailure.digest)):
        assert len(digest) == 32 and typed.encode() not in digest and b"203.0.113.77" not in digest


def test_old_counts_are_pruned_by_a_thread_not_by_requests(store_engine, keys):
    clock = Clock()
    throttle = SignInThrottle(keys, per_account=5, window_seconds=60, clock=clock)
    sessions = session_factory(store_engine)
    with unit_of_work(sessions) as session:
        session.execute(SignInFailure.__table__.delete())
        throttle.failed(session, "old", "192.0.2.1")
    clock.now += 45
    with unit_of_work(sessions) as session:
        throttle.failed(session, "recent", "192.0.2.1")
    clock.now += 30  # the first minute has left the window, the second has not
    pruner = ThrottlePruner(throttle, store_engine, interval=0.05).start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with unit_of_work(sessions) as session:
                left = session.scalar(select(func.count()).select_from(SignInFailure))
            if left == 2:
                break
            time.sleep(0.05)
    finally:
        pruner.stop()
    assert left == 2  # the recent failure's two keys
    with unit_of_work(sessions) as session:
        with pytest.raises(TooManyAttempts):
            SignInThrottle(keys, per_account=5, per_address=1, window_seconds=60, clock=clock).check(
                session, "anyone", "192.0.2.1"
            )
        session.execute(SignInFailure.__table__.delete())
