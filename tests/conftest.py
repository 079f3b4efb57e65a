"""Fixtures: stores on SQLite and a real PostgreSQL, live servers on loopback, factories."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tests.support.browser import chromium_missing, launch_chromium
from tests.support.ledger import remember, watch, watch_database
from tests.support.postgres import PostgresServer, PostgresUnavailable
from tests.support.servers import LiveServer
from tokensmith.accounts import users
from tokensmith.config import Settings
from tokensmith.store.database import create_store_engine, migrate
from tokensmith.store.models import PersonalToken, User
from tokensmith.store.server_keys import ServerKeys, parse_keys
from tokensmith.tokens import lifecycle as token_lifecycle

# `make test` sets this: there, a missing browser or PostgreSQL is a failure, not a skip.
REQUIRE_ALL = os.environ.get("TOKENSMITH_TEST_REQUIRE_ALL") == "1"
TEST_KEY = "1:" + "k" * 40


def unavailable(reason: str) -> None:
    if REQUIRE_ALL:
        pytest.fail(reason)
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``last`` run after all others: they inspect what the whole run left."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


# --- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's chromium through Playwright, headless: one per test module."""
    reason = chromium_missing()
    if reason:
        unavailable(reason)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


# --- PostgreSQL -----------------------------------------------------------------------------------


def started_postgres() -> PostgresServer:
    """A new PostgreSQL cluster, running; the caller removes it (stopped by its pid)."""
    server = PostgresServer()
    try:
        server.init().start()
    except (PostgresUnavailable, OSError) as error:
        server.remove()
        unavailable(f"PostgreSQL cannot start here: {error}")
    watch(server.log_path)
    return server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole run."""
    server = started_postgres()
    yield server
    server.remove()


_database_count = 0


def new_postgres_database(postgres: PostgresServer) -> str:
    global _database_count
    _database_count += 1
    return watch_database(postgres.create_database(f"tokensmith_{_database_count}"))


# --- stores for domain tests --------------------------------------------------------------------


@pytest.fixture(scope="session")
def keys() -> ServerKeys:
    return parse_keys(TEST_KEY)


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    if request.param == "sqlite":
        data_dir = tmp_path_factory.mktemp("sqlite-store")
        settings = Settings(data_dir=data_dir)
        watch(data_dir / "tokensmith.db")
        watch(data_dir / "tokensmith.db-wal")
    else:
        postgres = request.getfixturevalue("postgres")
        settings = Settings(database_url=new_postgres_database(postgres))
    engine = create_store_engine(settings)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def db(store_engine: Engine) -> Iterator[Session]:
    """A session whose work is rolled back after the test, commits included."""
    connection = store_engine.connect()
    transaction = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        transaction.rollback()
        connection.close()


# --- factories ----------------------------------------------------------------------------------

_user_count = 0


@pytest.fixture
def make_user(db: Session):
    def make(username: str | None = None, *, password: str | None = None, admin: bool = False) -> User:
        global _user_count
        _user_count += 1
        username = username or f"user{_user_count}"
        return users.create_user(
            db,
            username,
            f"{username}@example.test",
            password=password and remember(password),
            is_admin=admin,
            actor="tests",
        )

    return make


@pytest.fixture
def make_token(db: Session, keys: ServerKeys):
    def make(owner: User, name: str = "laptop", **kwargs: object) -> tuple[str, PersonalToken]:
        secret, row = token_lifecycle.create_token(db, keys, owner.id, name, prefix="tks_", actor="tests", **kwargs)
        return remember(secret), row

    return make


# --- Maven ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mvn() -> str:
    """Real Maven, with Debian's copy of the dependency plugin (central is out of reach here)."""
    found = shutil.which("mvn")
    if not found or not Path("/usr/share/maven-repo/org/apache/maven/plugins/maven-dependency-plugin").is_dir():
        unavailable("mvn with Debian's maven-dependency-plugin is not installed")
    return found


# --- live servers ---------------------------------------------------------------------------------


def start_server(base: Path, name: str = "server", **env: str) -> LiveServer:
    return LiveServer(base / "data", env=env, name=name).start()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The shared server on SQLite with the default policy (``deny``)."""
    live = start_server(tmp_path_factory.mktemp("server"))
    yield live
    live.stop()


@pytest.fixture(scope="session")
def warn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose password policy is ``warn``."""
    live = start_server(tmp_path_factory.mktemp("warn-server"), TOKENSMITH_PASSWORD_POLICY="warn")
    yield live
    live.stop()
