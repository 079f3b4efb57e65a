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

from tokensmith import accounts, personal_tokens, tokens
from tokensmith.clock import utcnow
from tokensmith.config import Settings
from tokensmith.db import create_store_engine, migrate, session_factory, unit_of_work
from tokensmith.models import PersonalToken, User
from tokensmith.server_keys import load_server_keys

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


def time_calls(fn: Callable[[], object], calls: int, batches: int) -> tuple[float, float, float]:
    """(median, min, max) microseconds per call over ``batches`` batches of ``calls``."""
    for _ in range(min(calls, 200)):  # warm caches: statement cache, pool, identity map
        fn()
    per_call = []
    for _ in range(batches):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        per_call.append((time.perf_counter_ns() - start) / calls / 1000)
    return statistics.median(per_call), min(per_call), max(per_call)


def _fill(session: Session, user_id: int, count: int) -> None:
    """Other users' worth of tokens, so that the digest index is not a one-row table."""
    now = utcnow()
    session.add_all(
        PersonalToken(
            user_id=user_id, name=f"filler-{i}", digest=secrets.token_bytes(32), key_version=1,
            hint="tks_…fill", scopes=["api"], created_at=now,
        )
        for i in range(count)
    )


def measure_token_check(data_dir: Path, *, calls: int, batches: int, filler: int = 10_000,
                        log: Callable[[str], None] = print) -> list[Timing]:
    settings = Settings(data_dir=data_dir, token_prefix=PREFIX)
    engine = create_store_engine(settings)
    try:
        migrate(engine)
        keys = load_server_keys(settings)
        factory = session_factory(engine)
        with unit_of_work(factory) as session:
            user = accounts.create_user(session, "bench", "bench@example.test", actor="bench")
            secret, _row = personal_tokens.create_token(
                session, keys, user, "bench", prefix=PREFIX, actor="bench"
            )
            _fill(session, user.id, filler)
        return _measure(engine, factory, keys, secret, calls=calls, batches=batches, log=log)
    finally:
        engine.dispose()


def _measure(engine, factory, keys, secret: str, *, calls: int, batches: int,
             log: Callable[[str], None]) -> list[Timing]:
    results: list[Timing] = []

    def record(key: str, label: str, fn: Callable[[], object], n: int = calls, note: str = "") -> None:
        median, low, high = time_calls(fn, n, batches)
        results.append(Timing(label, key, median, low, high, n, batches, note))
        log(f"  {label:<52} {median:8.2f} µs  (min {low:.2f}, max {high:.2f})")

    digest = keys.digest(personal_tokens.PURPOSE, secret)
    tokens_table, users_table = PersonalToken.__table__, User.__table__
    # Built once, with a bound parameter: what each call builds (and hashes for the statement
    # cache) anew in find_by_secret.
    orm_lookup = select(PersonalToken).where(PersonalToken.digest == bindparam("digest"))
    core_lookup = (
        select(tokens_table, users_table)
        .join_from(tokens_table, users_table, tokens_table.c.user_id == users_table.c.id)
        .where(tokens_table.c.digest == bindparam("digest"))
    )
    # The very SQL the ORM sends (token row joined with its owner), for the driver alone.
    raw_sql = str(orm_lookup.compile(dialect=engine.dialect))
    params = {"digest": digest}

    session = factory()
    try:
        record("verify", "verify_token (one session)",
               lambda: personal_tokens.verify_token(session, keys, secret, prefix=PREFIX),
               note="parse + digest + one indexed SELECT (owner joined); the target")
        record("parse", "  tokens.parse (shape + CRC32 checksum)", lambda: tokens.parse(secret, PREFIX))
        record("digest", "  keys.all_digests (HMAC-SHA256, one key)",
               lambda: keys.all_digests(personal_tokens.PURPOSE, secret))
        record("find_by_secret", "  find_by_secret (digest + SELECT built per call + ORM)",
               lambda: personal_tokens.find_by_secret(session, keys, secret))
        record("lookup_orm", "  lookup, ORM, SELECT built once",
               lambda: session.scalars(orm_lookup, params).one_or_none())
        connection = session.connection()
        record("lookup_core", "  lookup, Core, same join built once (tuples)",
               lambda: connection.execute(core_lookup, params).one_or_none())
        cursor = connection.connection.dbapi_connection.cursor()
        record("lookup_driver", "  lookup, sqlite3 driver alone (same SQL)",
               lambda: cursor.execute(raw_sql, (digest,)).fetchone())
    finally:
        session.close()

    def per_request() -> None:
        with unit_of_work(factory) as request_session:
            row = personal_tokens.verify_token(request_session, keys, secret, prefix=PREFIX)
            row.owner.username

    record("verify_fresh_session", "verify_token in a fresh session + commit",
           per_request, n=max(calls // 10, 100),
           note="what each HTTP request pays in the store: new session, row loaded, commit, close")
    return results

