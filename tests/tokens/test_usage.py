"""The writer behind the requests: uses noted in memory, written in one transaction, kept and
tried again while the store cannot take them, bounded, and only ever moving a moment forward."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from tests.support.ledger import remember
from tokensmith import metrics
from tokensmith.accounts import sessions, users
from tokensmith.clock import utcnow
from tokensmith.config import Settings
from tokensmith.store.database import (
    Pool,
    create_check_engine,
    create_store_engine,
    migrate,
    session_factory,
    unit_of_work,
)
from tokensmith.store.models import BrowserSession, PersonalToken
from tokensmith.store.server_keys import parse_keys
from tokensmith.tokens import check as token_check
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens.usage import SessionSeen, TokenUse, UsageWriter

KEYS = parse_keys("1:" + "u" * 40)


@pytest.fixture
def store(tmp_path) -> Iterator[tuple[Settings, Engine]]:
    settings = Settings(data_dir=tmp_path / "var")
    engine = create_store_engine(settings)
    migrate(engine)
    yield settings, engine
    engine.dispose()


def three_tokens_and_a_session(engine: Engine) -> tuple[list[int], int]:
    with unit_of_work(session_factory(engine)) as session:
        user = users.create_user(session, "ada", "ada@example.test", actor="tests")
        ids = [
            token_lifecycle.create_token(session, KEYS, user.id, f"t{n}", prefix="tks_", actor="tests")[1].id
            for n in range(3)
        ]
        _secret, browser = sessions.start_session(session, KEYS, user, days=1, ip=None, user_agent=None)
        session.flush()
        return ids, browser.id


def read(engine: Engine, model: type, row_id: int):
    with unit_of_work(session_factory(engine)) as session:
        row = session.get(model, row_id)
        session.expunge(row)
        return row


def writer_of(settings: Settings, **kwargs: object) -> UsageWriter:
    return UsageWriter(create_store_engine(settings, pool=Pool(1, 0), busy_timeout_ms=100), **kwargs)


def test_noted_uses_are_written_together_the_latest_of_each(store):
    settings, engine = store
    (first, second, _third), browser = three_tokens_and_a_session(engine)
    writer = writer_of(settings)
    now = utcnow()
    writer.token_used(None, TokenUse(first, now - timedelta(seconds=5), "192.0.2.1", "curl/8"))
    writer.token_used(None, TokenUse(first, now, "192.0.2.2", "git/2.39"))  # the later one stands
    writer.token_used(None, TokenUse(second, now, None, None))
    writer.session_seen(None, SessionSeen(browser, now + timedelta(minutes=5)))
    assert read(engine, PersonalToken, first).last_used_at is None  # nothing written yet
    assert writer.write_pending() is True
    row = read(engine, PersonalToken, first)
    assert (row.last_used_at, row.last_used_ip, row.last_used_agent) == (now, "192.0.2.2", "git/2.39")
    assert read(engine, PersonalToken, second).last_used_at == now
    assert read(engine, BrowserSession, browser).last_seen_at == now + timedelta(minutes=5)
    writer.engine.dispose()


def test_a_late_write_never_moves_a_moment_back(store):
    """Another instance may have written a later use already: the older one is left out."""
    settings, engine = store
    (token, _second, _third), _browser = three_tokens_and_a_session(engine)
    writer = writer_of(settings)
    now = utcnow()
    writer.token_used(None, TokenUse(token, now, "192.0.2.9", "later"))
    writer.write_pending()
    writer.token_used(None, TokenUse(token, now - timedelta(minutes=3), "192.0.2.1", "earlier"))
    writer.write_pending()
    row = read(engine, PersonalToken, token)
    assert (row.last_used_at, row.last_used_agent) == (now, "later")
    writer.engine.dispose()


def test_uses_are_kept_while_the_store_is_locked_and_written_once_it_is_not(store, caplog):
    caplog.set_level(logging.INFO, logger="tokensmith.usage")
    settings, engine = store
    (token, _second, _third), _browser = three_tokens_and_a_session(engine)
    writer = writer_of(settings)
    blocker = sqlite3.connect(settings.sqlite_path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")  # another process's write transaction, held
    try:
        writer.token_used(None, TokenUse(token, utcnow(), "192.0.2.3", "held"))
        assert writer.write_pending() is False
        assert writer.write_pending() is False
    finally:
        blocker.rollback()
        blocker.close()
    assert [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()] == [
        "cannot write last-used times yet (OperationalError); 1 kept, retrying every 2 s"
    ]  # once, not per try
    assert writer.write_pending() is True
    assert read(engine, PersonalToken, token).last_used_agent == "held"
    assert any("written again" in r.getMessage() for r in caplog.records)
    writer.engine.dispose()


def test_a_use_noted_while_a_batch_failed_wins_over_the_batch(store):
    settings, engine = store
    (token, _second, _third), _browser = three_tokens_and_a_session(engine)
    writer = writer_of(settings)
    writer.token_used(None, TokenUse(token, utcnow(), "192.0.2.4", "first"))
    taken = writer._tokens
    writer._tokens = {}
    writer.token_used(None, TokenUse(token, utcnow(), "192.0.2.5", "meanwhile"))
    writer._keep(taken, {})
    writer.write_pending()
    assert read(engine, PersonalToken, token).last_used_agent == "meanwhile"
    writer.engine.dispose()


def test_at_most_so_many_pending_uses_are_kept(store):
    settings, engine = store
    (first, second, third), _browser = three_tokens_and_a_session(engine)
    writer = writer_of(settings, max_pending=2)
    dropped = metrics.USAGE_RECORDS.labels("dropped")._value.get()
    for token in (first, second, third):
        writer.token_used(None, TokenUse(token, utcnow(), None, "bounded"))
    writer.token_used(None, TokenUse(first, utcnow(), None, "again"))  # one already pending: updated
    assert metrics.USAGE_RECORDS.labels("dropped")._value.get() == dropped + 1
    writer.write_pending()
    assert [read(engine, PersonalToken, t).last_used_agent for t in (first, second, third)] == [
        "again",
        "bounded",
        None,
    ]
    writer.engine.dispose()


def test_the_thread_writes_behind_and_stop_writes_what_is_left(store):
    settings, engine = store
    (first, second, _third), _browser = three_tokens_and_a_session(engine)
    writer = writer_of(settings, interval=0.05).start()
    writer.token_used(None, TokenUse(first, utcnow(), None, "soon"))
    for _ in range(100):
        if read(engine, PersonalToken, first).last_used_at is not None:
            break

        time.sleep(0.02)
    assert read(engine, PersonalToken, first).last_used_agent == "soon"
    writer.interval = 60  # the next batch would wait a minute: stop must not
    writer.token_used(None, TokenUse(second, utcnow(), None, "at stop"))
    writer.stop(timeout=10)
    assert read(engine, PersonalToken, second).last_used_agent == "at stop"
    writer.engine.dispose()


def addresses(engine: Engine, token_id: int) -> list[tuple[str, object, object, str | None]]:
    from tokensmith.tokens import listing as token_listing

    with unit_of_work(session_factory(engine)) as session:
        return [
            (row.ip, row.first_seen_at, row.last_seen_at, row.agent)
            for row in token_listing.addresses_of(session, [token_id])[token_id]
        ]


def test_each_token_keeps_its_last_five_distinct_addresses_with_first_and_last_seen(store):
    settings, engine = store
    (token, other, _third), _browser = three_tokens_and_a_session(engine)
    writer = writer_of(settings)
    start = utcnow() - timedelta(hours=1)
    for minute in range(7):  # seven addresses, one a minute; the first comes back at the end
        writer.token_used(
            None, TokenUse(token, start + timedelta(minutes=minute), f"192.0.2.{minute}", f"agent {minute}")
        )
        writer.write_pending()
    writer.token_used(None, TokenUse(token, start + timedelta(minutes=8), "192.0.2.0", "agent again"))
    writer.token_used(None, TokenUse(other, start, "2001:db8::1", None))
    writer.write_pending()
    kept = addresses(engine, token)
    assert [ip for ip, *_ in kept] == ["192.0.2.0", "192.0.2.6", "192.0.2.5", "192.0.2.4", "192.0.2.3"]
    # Pruned once it had fallen out of the five, the first address came back as new.
    assert kept[0][1:] == (start + timedelta(minutes=8), start + timedelta(minutes=8), "agent again")
    assert kept[1][1:] == (start + timedelta(minutes=6), start + timedelta(minutes=6), "agent 6")
    assert addresses(engine, other) == [("2001:db8::1", start, start, None)]  # another token's own
    writer.engine.dispose()


def test_an_address_seen_again_moves_its_last_seen_forward_and_never_back(store):
    settings, engine = store
    (token, _second, _third), _browser = three_tokens_and_a_session(engine)
    writer = writer_of(settings)
    start = utcnow() - timedelta(hours=1)
    for minutes, agent in ((0, "first"), (10, "later"), (5, "late writer")):
        writer.token_used(None, TokenUse(token, start + timedelta(minutes=minutes), "198.51.100.7", agent))
        writer.write_pending()
    assert addresses(engine, token) == [("198.51.100.7", start, start + timedelta(minutes=10), "later")]
    writer.engine.dispose()


def test_a_token_and_address_written_less_than_a_minute_ago_is_not_noted_again(store):
    """The check notes a use from a new address within the minute (token_check.record_use): the
    writer remembers what it wrote, so a token that alternates between two addresses still costs
    at most one write a minute for each."""
    settings, engine = store
    (token, _second, _third), _browser = three_tokens_and_a_session(engine)
    writer = writer_of(settings)
    now = utcnow()
    writer.token_used(None, TokenUse(token, now, "192.0.2.1", "a"))
    writer.token_used(None, TokenUse(token, now, "192.0.2.2", "b"))
    writer.write_pending()
    for seconds in (10, 20, 30):
        writer.token_used(None, TokenUse(token, now + timedelta(seconds=seconds), "192.0.2.1", "a"))
        writer.token_used(None, TokenUse(token, now + timedelta(seconds=seconds), "192.0.2.2", "b"))
    assert writer._tokens == {}  # nothing to write
    writer.token_used(None, TokenUse(token, now + timedelta(seconds=61), "192.0.2.1", "a, a minute on"))
    assert list(writer._tokens) == [(token, "192.0.2.1")]
    writer.write_pending()
    assert read(engine, PersonalToken, token).last_used_agent == "a, a minute on"
    writer.engine.dispose()


def test_a_new_address_costs_the_check_no_write_the_writer_writes_it(store):
    """Where a token was used stays off the request's path: on the check's own engine (the event
    loop's in the server: on SQLite it refuses every write), a use from a second address within
    the minute is only noted; the writer's thread writes it, with the token's last use."""
    settings, engine = store
    with unit_of_work(session_factory(engine)) as session:
        user = users.create_user(session, "roamer", "roamer@example.test", actor="tests")
        secret, row = token_lifecycle.create_token(session, KEYS, user.id, "roaming", prefix="tks_", actor="tests")
        remember(secret)
        session.flush()
        token_id = row.id
    writer, checks = writer_of(settings), create_check_engine(settings)
    statements: list[str] = []
    with checks.connect() as connection:
        # The check runs its statement on the driver's own cursor: SQLite's trace sees it.
        connection.connection.driver_connection.set_trace_callback(statements.append)

        def use_from(ip: str) -> None:
            token = token_check.verify_token(connection, KEYS, secret, prefix="tks_")
            token_check.record_use(connection, token, ip=ip, agent=f"from {ip}", usage=writer)

        use_from("192.0.2.1")  # the first use: noted, then written by the writer
        writer.write_pending()
        use_from("192.0.2.2")  # another address within the minute: noted
        use_from("192.0.2.1")  # the address written a moment ago: not even noted
    # one lookup per check, nothing else
    assert len(statements) == 3 and all(statement.lstrip().upper().startswith("SELECT") for statement in statements)
    assert list(writer._tokens) == [(token_id, "192.0.2.2")]  # noted in memory, not written
    writer.write_pending()
    assert [ip for ip, *_ in addresses(engine, token_id)] == ["192.0.2.2", "192.0.2.1"]
    assert read(engine, PersonalToken, token_id).last_used_ip == "192.0.2.2"
    checks.dispose()
    writer.engine.dispose()
