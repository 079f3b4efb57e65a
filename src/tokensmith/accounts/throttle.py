"""Slowing down password guessing: failures counted in the store, in a sliding window.

Counted per (username, address), so that a stranger cannot lock a person out from
elsewhere, and per address, so that one machine cannot spray passwords across accounts.
Tokens are not throttled: at ~190 bits they cannot be guessed, and their check is cheap.

The counts live in the store, so that every worker and every instance behind a proxy sees
the same ones (a guesser spreading attempts across them gains nothing) and a restart forgets
nothing. A count is a row per key and minute (``window / 15``): a failure is one upsert that
adds one to the row of its minute, a check one indexed read of the rows still in the window,
success one delete. Rows that left the window are removed by ``prune``, off the request path
(``ThrottlePruner``, a thread of each server process). The key is a digest under the server's
key, never the username typed: people type passwords into the username field.

Time is the hosts' wall clock: instances sharing a store must keep theirs in sync (NTP), as
they must for tokens' expiry.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, Executable, bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tokensmith.errors import TooManyAttempts
from tokensmith.housekeeping import Periodic
from tokensmith.store.database import connection_to
from tokensmith.store.models import SignInFailure
from tokensmith.store.server_keys import ServerKeys

PURPOSE = "sign-in-throttle"
WINDOW_SECONDS = 15 * 60
BUCKETS_PER_WINDOW = 15

_FAILURES = SignInFailure.__table__


class SignInThrottle:
    """The limits of one deployment; the counts are in the store each call is given."""

    def __init__(
        self,
        keys: ServerKeys,
        *,
        per_account: int = 10,
        per_address: int = 50,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
        namespace: str = "",
    ) -> None:
        """``namespace``: counts of their own per account for another kind of guess (the second
        step of a sign-in: "second-step"); the count per address is shared by every kind."""
        self.keys = keys
        self._kind = f"{namespace}\0" if namespace else ""
        self.limits = {"account": per_account, "address": per_address}
        self.window = window_seconds
        self.bucket = window_seconds / BUCKETS_PER_WINDOW
        self.clock = clock

    def _keys(self, username: str, address: str | None) -> dict[str, bytes]:
        address = address or "unknown"
        return {
            "account": self.keys.digest(PURPOSE, f"{self._kind}account\0{username.strip().lower()}\0{address}"),
            "address": self.keys.digest(PURPOSE, f"address\0{address}"),
        }

    def check(self, session: Session, username: str, address: str | None) -> None:
        """Raise TooManyAttempts while either count is at its limit: one indexed read."""
        now = self.clock()
        keys = self._keys(username, address)
        found = {
            digest: (failures, _seconds(oldest))
            for digest, failures, oldest in session.execute(
                select(_FAILURES.c.digest, func.sum(_FAILURES.c.failures), func.min(_FAILURES.c.window_start))
                .where(
                    _FAILURES.c.digest.in_(list(keys.values())), _FAILURES.c.window_start > _moment(now - self.window)
                )
                .group_by(_FAILURES.c.digest)
            )
        }
        for kind, digest in keys.items():
            failures, oldest = found.get(digest, (0, now))
            if failures >= self.limits[kind]:
                wait = max(1, math.ceil(oldest + self.window - now))
                raise TooManyAttempts(
                    f"Too many failed sign-ins. Wait {math.ceil(wait / 60)} minute(s) and try again.",
                    retry_after=wait,
                )

    def failed(self, session: Session, username: str, address: str | None) -> None:
        """Count a failure for both keys, in one upsert, in the caller's unit of work: the
        caller commits it although the sign-in failed (the page and the API do)."""
        start = _moment(math.floor(self.clock() / self.bucket) * self.bucket)
        rows = [
            {"digest": digest, "window_start": start, "failures": 1}
            for digest in self._keys(username, address).values()
        ]
        key, counted = [_FAILURES.c.digest, _FAILURES.c.window_start], {"failures": _FAILURES.c.failures + 1}
        # The same INSERT ... ON CONFLICT DO UPDATE in both stores, built by each dialect's own insert().
        statement: Executable
        if session.get_bind().dialect.name == "postgresql":
            statement = (
                postgresql.insert(_FAILURES).values(rows).on_conflict_do_update(index_elements=key, set_=counted)
            )
        else:
            statement = sqlite.insert(_FAILURES).values(rows).on_conflict_do_update(index_elements=key, set_=counted)
        session.execute(statement)

    def succeeded(self, session: Session, username: str, address: str | None) -> None:
        """The right password: this account's count at this address starts again."""
        session.execute(delete(_FAILURES).where(_FAILURES.c.digest == self._keys(username, address)["account"]))

    def prune(self, engine: Engine) -> int:
        """Remove the counts that left the window; how many rows went."""
        with connection_to(engine) as connection:
            return connection.execute(_PRUNE, {"before": _moment(self.clock() - self.window)}).rowcount


_PRUNE = delete(_FAILURES).where(_FAILURES.c.window_start <= bindparam("before"))


class ThrottlePruner(Periodic):
    """Old counts removed every minute by a thread of the server's, never by a request.

    Every process of every instance runs one: a ``DELETE`` of what left the window is cheap,
    and harmless when another did it first."""

    def __init__(self, throttle: SignInThrottle, engine: Engine, *, interval: float = 60.0) -> None:
        super().__init__("tokensmith-throttle-pruner", interval)
        self.throttle = throttle
        self.engine = engine

    def run_once(self) -> None:
        self.throttle.prune(self.engine)


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _seconds(moment: datetime) -> float:
    return moment.timestamp()
