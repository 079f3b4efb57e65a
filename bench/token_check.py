"""The in-process cost of one token check on SQLite, and of each of its pieces.

One Python process, one store (migrated, with one real token among ``filler`` others so the
lookup walks a real index), timed in batches; each figure is the median batch, in
microseconds per call.
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from tokensmith.accounts import users
from tokensmith.clock import utcnow
from tokensmith.config import Settings
from tokensmith.store.database import (
    connection_to,
    create_check_engine,
    create_store_engine,
    migrate,
    session_factory,
    unit_of_work,
)
from tokensmith.store.models import PersonalToken, User
from tokensmith.store.server_keys import load_server_keys
from tokensmith.tokens import check as token_check
from tokensmith.tokens import format as token_format
from tokensmith.tokens import lifecycle as token_lifecycle

PREFIX = "tks_"


@dataclass
class Timing:
    label: str
    key: str
    median_us: float
    min_us: float
    max_us: float
    calls_per_batch: int
    batches: int
    note: str = ""


def time_round_robin(
    cases: list[tuple[str, str, Callable[[], object], int, str]], batches: int, log: Callable[[str], None]
) -> list[Timing]:
    """Time every case in ``batches`` rounds, one batch of each case per round.

    Interleaved, so that the machine speeding up or slowing down (a shared host does) hits
    every case alike; each figure is the median batch, in microseconds per call.
    """
    for _key, _label, fn, calls, _note in cases:  # warm: statement cache, pool
        for _ in range(min(calls, 200)):
            fn()
    per_call: dict[str, list[float]] = {key: [] for key, *_ in cases}
    for _ in range(batches):
        for key, _label, fn, calls, _note in cases:
            start = time.perf_counter_ns()
            for _ in range(calls):
                fn()
            per_call[key].append((time.perf_counter_ns() - start) / calls / 1000)
    timings = []
    for key, label, _fn, calls, note in cases:
        values = per_call[key]
        timing = Timing(label, key, statistics.median(values), min(values), max(values), calls, batches, note)
        log(f"  {label:<52} {timing.median_us:8.2f} µs  (min {timing.min_us:.2f}, max {timing.max_us:.2f})")
        timings.append(timing)
    return timings


def _fill(session: Session, user_id: int, count: int) -> None:
    """Other users' worth of tokens, so that the digest index is not a one-row table."""
    now = utcnow()
    session.add_all(
        PersonalToken(
            user_id=user_id,
            name=f"filler-{i}",
            digest=secrets.token_bytes(32),
            key_version=1,
            hint="tks_…fill",
            scopes=["api"],
            created_at=now,
        )
        for i in range(count)
    )


def measure_token_check(
    data_dir: Path, *, calls: int, batches: int, filler: int = 10_000, log: Callable[[str], None] = print
) -> list[Timing]:
    settings = Settings(data_dir=data_dir, token_prefix=PREFIX)
    engine = create_store_engine(settings)
    try:
        migrate(engine)
        keys = load_server_keys(settings)
        factory = session_factory(engine)
        with unit_of_work(factory) as session:
            user = users.create_user(session, "bench", "bench@example.test", actor="bench")
            secret, _row = token_lifecycle.create_token(session, keys, user.id, "bench", prefix=PREFIX, actor="bench")
            _fill(session, user.id, filler)
        return _measure(
            engine, create_check_engine(settings), factory, keys, secret, calls=calls, batches=batches, log=log
        )
    finally:
        engine.dispose()


def _measure(
    engine, check_engine, factory, keys, secret: str, *, calls: int, batches: int, log: Callable[[str], None]
) -> list[Timing]:
    digest = keys.digest(token_check.PURPOSE, secret)
    tokens_table, users_table = PersonalToken.__table__, User.__table__
    # Built once, with a bound parameter, as opposed to a statement built (and hashed for the
    # statement cache) anew on every call.
    orm_lookup = select(PersonalToken).where(PersonalToken.digest == bindparam("digest"))
    core_lookup = (
        select(tokens_table, users_table)
        .join_from(tokens_table, users_table, tokens_table.c.user_id == users_table.c.id)
        .where(tokens_table.c.digest == bindparam("digest"))
    )
    # The very SQL the ORM sends (token row joined with its owner), for the driver alone.
    raw_sql = str(orm_lookup.compile(dialect=engine.dialect))
    params = {"digest": digest}

    def per_request() -> None:
        # What the server does for each request: a pooled connection of its own, committed.
        with connection_to(check_engine) as request_connection:
            token_check.verify_token(request_connection, keys, secret, prefix=PREFIX)

    session = factory()
    try:
        connection = session.connection()
        cursor = connection.connection.dbapi_connection.cursor()
        return time_round_robin(
            [
                (
                    "verify",
                    "verify_token (on a connection, as the server runs it)",
                    lambda: token_check.verify_token(connection, keys, secret, prefix=PREFIX),
                    calls,
                    "parse + checksum + digest + one indexed SELECT with the owner; the target",
                ),
                (
                    "parse",
                    "  token_format.parse (shape + CRC32 checksum)",
                    lambda: token_format.parse(secret, PREFIX),
                    calls,
                    "",
                ),
                (
                    "digest",
                    "  keys.all_digests (HMAC-SHA256, one key)",
                    lambda: keys.all_digests(token_check.PURPOSE, secret),
                    calls,
                    "",
                ),
                (
                    "lookup_orm_per_call",
                    "  lookup, ORM, SELECT built per call",
                    lambda: session.scalars(select(PersonalToken).where(PersonalToken.digest == digest)).one_or_none(),
                    calls,
                    "as the first version of the check did",
                ),
                (
                    "lookup_orm",
                    "  lookup, ORM, SELECT built once",
                    lambda: session.scalars(orm_lookup, params).one_or_none(),
                    calls,
                    "",
                ),
                (
                    "lookup_core",
                    "  lookup, Core, same join built once (tuples)",
                    lambda: connection.execute(core_lookup, params).one_or_none(),
                    calls,
                    "",
                ),
                (
                    "lookup_driver",
                    "  lookup, sqlite3 driver alone (same SQL)",
                    lambda: cursor.execute(raw_sql, (digest,)).fetchone(),
                    calls,
                    "",
                ),
                (
                    "verify_fresh_connection",
                    "verify_token on a fresh pooled connection + commit",
                    per_request,
                    max(calls // 10, 100),
                    "what each HTTP request pays in the store: checkout, lookup, commit, checkin",
                ),
            ],
            batches,
            log,
        )
    finally:
        session.close()
