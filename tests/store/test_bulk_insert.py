"""store/bulk_insert.BulkInsert against SQLAlchemy's Core, on SQLite and on a real PostgreSQL: the
rows it writes read back as the driver gives them (text and JSON as stored on SQLite) equal to
those a Core INSERT writes with the same values — timestamps, JSON objects and lists, JSON's
None, text beyond ASCII —; its clauses (ON CONFLICT DO NOTHING, RETURNING) do what they say; a
table whose default of SQLAlchemy's it would leave out is refused."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, insert
from sqlalchemy.dialects import postgresql, sqlite

from tests.support.postgres import PostgresServer
from tokensmith.accounts import users
from tokensmith.config import Settings
from tokensmith.store.bulk_insert import BulkInsert
from tokensmith.store.database import create_store_engine, migrate, session_factory, unit_of_work
from tokensmith.store.models import AuditEvent, IdTokenUse, PersonalToken

EVENTS, TOKENS, SPENT = AuditEvent.__table__, PersonalToken.__table__, IdTokenUse.__table__
EVENT_COLUMNS = ("at", "action", "actor", "user_id", "ip", "details")
TOKEN_COLUMNS = ("user_id", "name", "digest", "key_version", "hint", "scopes", "projects", "allowed_ips", "created_at")
AT = datetime(2026, 12, 7, 14, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    postgres = PostgresServer().init().start() if request.param == "postgresql" else None
    try:
        folder = tmp_path_factory.mktemp("bulk")
        settings = Settings(data_dir=folder, database_url=postgres.url if postgres else None)
        made = create_store_engine(settings)
        migrate(made)
        yield made
        made.dispose()
    finally:
        if postgres is not None:
            postgres.stop()


@pytest.fixture(scope="module")
def owner(engine: Engine) -> int:
    with unit_of_work(session_factory(engine)) as session:
        return users.create_user(session, "kim", "kim@example.test", actor="test").id


def stored(connection: Connection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in connection.exec_driver_sql(sql).all()]


def test_events_are_stored_as_core_stores_them(engine: Engine) -> None:
    rows = [
        {
            "at": AT + timedelta(minutes=number),
            "action": "token.exchanged",
            "actor": f"CI repo:acme/app {number}",
            "user_id": None,
            "ip": "127.0.0.1" if number % 2 else None,
            "details": {"number": number, "name": "déploiement ✓", "claims": {"ref": ["main", None]}, "none": None},
        }
        for number in range(3)
    ]
    bulk = BulkInsert(EVENTS, EVENT_COLUMNS, lambda _dialect, values: insert(EVENTS).values(values))
    with engine.begin() as connection:
        connection.execute(insert(EVENTS), [{**row, "action": "core"} for row in rows])
        assert bulk.execute(connection, [{**row, "action": "bulk"} for row in rows]) == ()
        read = "SELECT at, actor, user_id, ip, details FROM audit_events WHERE action = '{}' ORDER BY id"
        by_core, by_bulk = stored(connection, read.format("core")), stored(connection, read.format("bulk"))
    assert len(by_bulk) == 3 and by_bulk == by_core


def test_tokens_are_stored_as_core_stores_them_and_their_ids_come_back(engine: Engine, owner: int) -> None:
    def rows(kind: str) -> list[dict[str, Any]]:
        return [
            {
                "user_id": owner,
                "name": f"{kind} token {number}",
                "digest": hashlib.sha256(f"{kind} {number}".encode()).digest(),
                "key_version": 1,
                "hint": f"tks_…{number:04}",
                "scopes": ["git:read", "maven:read"],
                "projects": ["acme"] if number else None,
                "allowed_ips": None,
                "created_at": AT,
            }
            for number in range(4)
        ]

    bulk = BulkInsert(
        TOKENS,
        TOKEN_COLUMNS,
        lambda _dialect, values: insert(TOKENS).values(values).returning(TOKENS.c.id, TOKENS.c.digest),
    )
    with engine.begin() as connection:
        connection.execute(insert(TOKENS), rows("core"))
        returned = bulk.execute(connection, rows("bulk"))
        read = (
            "SELECT digest, key_version, hint, scopes, projects, allowed_ips, created_at, expires_at FROM "
            "personal_tokens WHERE substr(name, 1, 4) = '{}' ORDER BY id"
        )
        by_core, by_bulk = stored(connection, read.format("core")), stored(connection, read.format("bulk"))
        ids = dict(stored(connection, "SELECT digest, id FROM personal_tokens WHERE substr(name, 1, 4) = 'bulk'"))
    assert [row[1:] for row in by_bulk] == [row[1:] for row in by_core] and len(by_bulk) == 4
    assert {bytes(digest): token_id for token_id, digest in returned} == {bytes(d): i for d, i in ids.items()}


def test_on_conflict_do_nothing_returns_only_the_rows_inserted(engine: Engine) -> None:
    dialects = {"sqlite": sqlite, "postgresql": postgresql}
    bulk = BulkInsert(
        SPENT,
        ("digest", "expires_at"),
        lambda dialect, values: (
            dialects[dialect.name].insert(SPENT).values(values).on_conflict_do_nothing().returning(SPENT.c.digest)
        ),
    )
    a, b, c = (hashlib.sha256(name).digest() for name in (b"a", b"b", b"c"))
    with engine.begin() as connection:
        first = {bytes(row[0]) for row in bulk.execute(connection, [{"digest": d, "expires_at": AT} for d in (a, b)])}
        again = {bytes(row[0]) for row in bulk.execute(connection, [{"digest": d, "expires_at": AT} for d in (b, c)])}
        kept = stored(connection, "SELECT count(*) FROM id_token_uses")
    assert (first, again, kept) == ({a, b}, {c}, [(3,)])


def test_a_default_of_sqlalchemy_left_out_is_refused() -> None:
    with pytest.raises(ValueError, match="details"):
        BulkInsert(EVENTS, EVENT_COLUMNS[:-1], lambda _dialect, values: insert(EVENTS).values(values))
