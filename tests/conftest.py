"""Fixtures: stores on SQLite and a real PostgreSQL, live servers on loopback, factories."""

from __future__ import annotations

import contextlib
import os
import pty
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tests.support.browser import chromium_missing, launch_chromium
from tests.support.ledger import remember, watch, watch_database
from tests.support.postgres import PostgresServer, PostgresUnavailable
from tests.support.servers import LiveServer
from tests.support.smtp import SmtpServer
from tokensmith.accounts import passwords, users
from tokensmith.audit import mail, notices, trail
from tokensmith.config import MailSettings, PasswordHashing, Settings
from tokensmith.store.database import create_store_engine, migrate
from tokensmith.store.models import PersonalToken, User
from tokensmith.store.server_keys import ServerKeys, parse_keys
from tokensmith.tokens import lifecycle as token_lifecycle

# After each session's last test, what the tests left is read for the secrets they used.
pytest_plugins = ["tests.support.no_secrets_written"]

# Passwords hashed at OWASP's floor for argon2id, here and in every server and command the tests
# start (they inherit the environment): the suite makes and checks hundreds of passwords, each
# 0.2 s of CPU at the default cost. tests/accounts/test_passwords.py holds the default to RFC 9106's
# profile and starts a server with it; a hash made at either cost is remade at the other's.
# `TOKENSMITH_PASSWORD_HASHING=rfc9106-low-memory make test` runs the whole suite at the default.
SUITE_HASHING = PasswordHashing(os.environ.setdefault("TOKENSMITH_PASSWORD_HASHING", PasswordHashing.OWASP_MINIMUM))
passwords.use(SUITE_HASHING)

# `make test` sets this: there, a missing browser or PostgreSQL is a failure, not a skip.
REQUIRE_ALL = os.environ.get("TOKENSMITH_TEST_REQUIRE_ALL") == "1"
TEST_KEY = "1:" + "k" * 40


def unavailable(reason: str) -> None:
    if REQUIRE_ALL:
        pytest.fail(reason)
    pytest.skip(reason)


# --- unit tests and the rest (`make check` runs the first alone) ----------------------------------
#
# A unit test starts no server: no process but a short git command (a project's bare repository,
# a push's scan), and no listening port. Its fixtures are all among these (pytest's own, and the
# stores on SQLite, rolled back after each test). Any other fixture (a live server, PostgreSQL,
# chromium, Maven, a module's own server...) makes a test ``slow``, as do the markers ``postgres``
# and ``browser``; a new fixture counts as slow until it is added here. `make check`
# (TOKENSMITH_TEST_UNITS_ONLY=1, -m "not slow") then refuses any other process and any listening
# socket, so that a test starting one in its own body cannot pass for a unit test: it fails,
# naming the marker to put on it.
UNIT_FIXTURES = frozenset(
    {
        *("request", "tmp_path", "tmp_path_factory", "monkeypatch", "capsys", "capfd", "caplog", "recwarn"),
        "units_start_nothing",
        *("keys", "store_engine", "db", "make_user", "make_token"),
        # the modules' own, on the same footing
        *("settings", "store", "member", "alice", "mail_on", "outbox_engine"),
    }
)
UNITS_ONLY = os.environ.get("TOKENSMITH_TEST_UNITS_ONLY") == "1"


def is_slow(item: pytest.Item) -> bool:
    if any(item.get_closest_marker(name) for name in ("slow", "postgres", "browser")):
        return True
    return not set(getattr(item, "fixturenames", ())) <= UNIT_FIXTURES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if is_slow(item):
            item.add_marker(pytest.mark.slow)
    # The long scenarios (tests/system/: the README walked, failover, fuzzing...) first, so that
    # `make test`'s two workers, given files in this order, do not end with one of them alone on
    # a two-minute file. A stable sort: each file's tests stay together, in their order.
    items.sort(key=lambda item: not item.nodeid.startswith("tests/system/"))


def _refused(what: str) -> Callable[..., None]:
    def refuse(*_args: object, **_kwargs: object) -> None:
        pytest.fail(
            f"This test {what}: it is not a unit test (make check runs those alone). Mark it "
            "@pytest.mark.slow, or give it a fixture that is not in conftest.UNIT_FIXTURES.",
            pytrace=False,
        )

    return refuse


def _git_only(execute_child: Callable[..., None]) -> Callable[..., None]:
    def execute(popen: subprocess.Popen[bytes], args: Any, *rest: object, **options: object) -> None:
        program = os.fsdecode(args if isinstance(args, (str, bytes, os.PathLike)) else next(iter(args)))
        if os.path.basename(program) != "git":
            _refused(f"starts a process ({program})")()
        execute_child(popen, args, *rest, **options)

    return execute


@pytest.fixture(autouse=True)
def units_start_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `make check`, a unit test that starts a server, or a process other than git, fails."""
    if not UNITS_ONLY:
        return
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _git_only(subprocess.Popen._execute_child))
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp"):
        monkeypatch.setattr(os, name, _refused("starts a process"))
    monkeypatch.setattr(pty, "fork", _refused("starts a process"))
    monkeypatch.setattr(socket.socket, "listen", _refused("listens on a port"))


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


@contextlib.contextmanager
def mailing_instances(
    postgres: PostgresServer, smtp: SmtpServer, data_dir: Path, name: str, **env: str
) -> Iterator[list[LiveServer]]:
    """Two instances on one new PostgreSQL database and one data dir, mail on, sending and
    sweeping every 0.1 s (``env`` adds to that), started and ready; stopped by their pids after.
    Not traced by coverage (which slows a start severalfold): what they run is covered in process."""
    env = {
        "TOKENSMITH_DATABASE_URL": new_postgres_database(postgres),
        "TOKENSMITH_SMTP_URL": smtp.url,
        "TOKENSMITH_MAIL_FROM": "tokens@tokensmith.test",
        "TOKENSMITH_MAIL_POLL_SECONDS": "0.1",
        "TOKENSMITH_MAIL_REMINDER_SECONDS": "0.1",
        **env,
    }
    instances = [LiveServer(data_dir, env=env, name=f"{name}{n}", measured=False) for n in (1, 2)]
    try:
        for instance in instances:
            instance.launch()
        for instance in instances:
            instance.wait_until_ready(60)
        yield instances
    finally:
        for instance in instances:
            instance.stop()


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


# --- mail -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback (aiosmtpd), one per test module."""
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def mail_on() -> Iterator[object]:
    """Mail on in this process, as a server with an SMTP server configured has it; off again after."""
    yield notices.listen(
        Settings(
            public_url="https://tokens.example.test",
            mail=MailSettings(scheme="smtp", host="127.0.0.1", port=25, sender="Tokensmith <tokens@example.test>"),
        )
    )
    mail.configure(Settings())
    trail.unsubscribe(notices.for_event)
