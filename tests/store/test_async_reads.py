"""The token lookups the server reads on the event loop on PostgreSQL (store/postgresql.AsyncReads),
against a real PostgreSQL that counts its statements (pg_stat_statements): the lookups asked
together are read by one statement and each gets its own row; a store that stops answers every
waiting lookup with StoreUnavailable (the 503), and the reads come back with it."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.support.ledger import remember, watch
from tests.support.no_secrets_written import dump_database, leaks_in
from tests.support.postgres import PostgresServer
from tokensmith.accounts import users
from tokensmith.config import Settings
from tokensmith.errors import StoreUnavailable
from tokensmith.store.database import create_check_engine, create_store_engine, migrate, session_factory, unit_of_work
from tokensmith.store.postgresql import MAX_KEYS_READ_AT_ONCE, AsyncReads
from tokensmith.store.server_keys import ServerKeys, load_server_keys
from tokensmith.tokens import check as token_check
from tokensmith.tokens import format as token_format
from tokensmith.tokens import lifecycle as token_lifecycle

pytestmark = pytest.mark.postgres

LOOKUP_CALLS = (
    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE '%personal_tokens.digest = ANY ($1)%'"
)


class Store:
    def __init__(self, postgres: PostgresServer, check: Engine, keys: ServerKeys, secrets: list[str]) -> None:
        self.postgres, self.check, self.keys, self.secrets = postgres, check, keys, secrets

    def digests(self, secret: str) -> list[bytes]:
        return self.keys.all_digests(token_check.PURPOSE, secret)

    def lookups(self) -> int:
        return int(self.postgres.execute(LOOKUP_CALLS)[0][0])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    postgres = PostgresServer(settings={"shared_preload_libraries": "pg_stat_statements"})
    try:
        postgres.init().start()
        postgres.execute("CREATE EXTENSION pg_stat_statements")
        settings = Settings(data_dir=tmp_path_factory.mktemp("reads"), database_url=postgres.url)
        engine = create_store_engine(settings)
        migrate(engine)
        keys = load_server_keys(settings)
        with unit_of_work(session_factory(engine)) as session:
            user = users.create_user(session, "kim", "kim@example.test", actor="test")
            secrets = [
                remember(token_lifecycle.create_token(session, keys, user.id, f"t{n}", prefix="tks_", actor="test")[0])
                for n in range(5)
            ]
        engine.dispose()
        check = create_check_engine(settings)
        yield Store(postgres, check, keys, secrets)
        check.dispose()
        assert not leaks_in(dump_database(settings.database_url or "")), "a secret reached the store"
    finally:
        if postgres.log_path.exists():  # read by the run's last test, the server gone by then
            shutil.copy(postgres.log_path, watch(tmp_path_factory.mktemp("reads-log") / "postgres.log"))
        postgres.remove()


async def lookup(reads: AsyncReads, digests: list[bytes]) -> tuple[object, ...] | None:
    return await reads.fetch_keyed(token_check.ASYNCPG_BY_DIGESTS, token_check.DIGEST_AT, digests)


def test_lookups_asked_together_are_read_by_one_statement_each_getting_its_own_row(store: Store) -> None:
    unknown = store.digests(remember(token_format.generate("tks_")))

    async def scenario() -> tuple[list[tuple[object, ...] | None], int, int]:
        reads = AsyncReads(store.check, 4)
        try:
            await lookup(reads, store.digests(store.secrets[0]))  # the connection opened, the statement prepared
            before = store.lookups()
            together = await asyncio.gather(
                *(lookup(reads, store.digests(secret)) for secret in store.secrets), lookup(reads, unknown)
            )
            after_together = store.lookups()
            for secret in store.secrets[:3]:  # one at a time: a statement each
                await lookup(reads, store.digests(secret))
            return together, after_together - before, store.lookups() - after_together
        finally:
            reads.close()

    rows, together, one_at_a_time = asyncio.run(scenario())
    assert together == 1
    assert one_at_a_time == 3
    assert rows[-1] is None  # no such token
    for secret, row in zip(store.secrets, rows, strict=False):
        assert row is not None and row[token_check.DIGEST_AT] in store.digests(secret)
        checked = token_check.verify_token(
            token_check.Fetched(store.digests(secret), row), store.keys, secret, prefix="tks_"
        )
        assert checked.name == f"t{store.secrets.index(secret)}"


def test_one_statement_reads_at_most_so_many_keys(store: Store) -> None:
    many = [store.digests(remember(token_format.generate("tks_"))) for _ in range(MAX_KEYS_READ_AT_ONCE + 1)]

    async def scenario() -> tuple[list[tuple[object, ...] | None], int]:
        reads = AsyncReads(store.check, 4)
        try:
            await lookup(reads, many[0])
            before = store.lookups()
            rows = await asyncio.gather(*(lookup(reads, digests) for digests in many))
            return rows, store.lookups() - before
        finally:
            reads.close()

    rows, statements = asyncio.run(scenario())
    assert rows == [None] * len(many)
    assert statements == 2


def test_a_store_that_stops_answers_every_waiting_lookup_unavailable_then_comes_back(store: Store) -> None:
    async def scenario() -> tuple[list[BaseException | tuple[object, ...] | None], tuple[object, ...] | None]:
        reads = AsyncReads(store.check, 4)
        try:
            assert await lookup(reads, store.digests(store.secrets[0])) is not None
            store.postgres.stop()
            try:
                failed = await asyncio.gather(
                    *(lookup(reads, store.digests(secret)) for secret in store.secrets), return_exceptions=True
                )
            finally:
                store.postgres.start()
            return failed, await lookup(reads, store.digests(store.secrets[1]))
        finally:
            reads.close()

    failed, afterwards = asyncio.run(scenario())
    assert all(isinstance(outcome, StoreUnavailable) for outcome in failed), failed
    assert afterwards is not None and afterwards[token_check.DIGEST_AT] in store.digests(store.secrets[1])
