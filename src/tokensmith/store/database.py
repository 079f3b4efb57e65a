"""The store: engine, sessions, migrations, and what an outage looks like to the rest."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, CursorResult, Engine, create_engine, inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import SingletonThreadPool
from sqlalchemy.sql.dml import UpdateBase

from tokensmith.config import Settings
from tokensmith.errors import ConfigurationError, StoreUnavailable
from tokensmith.store import data_dir
from tokensmith.store import sqlite as sqlite_store

MIGRATIONS_DIR = Path(__file__).parents[1] / "migrations"

# What the hot path's domain functions run their Core statements on: a plain connection,
# or a session when they are part of a larger unit of work.
Connectable = Connection | Session

# Errors that mean "the store cannot answer right now", as opposed to a bug or bad data.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, PoolTimeout)


def is_outage(error: BaseException) -> bool:
    if isinstance(error, OUTAGE_ERRORS):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


@dataclass(frozen=True)
class Pool:
    """How many connections an engine keeps (``size``) and may open beyond them (``overflow``)."""

    size: int
    overflow: int

    @property
    def capacity(self) -> int:
        return self.size + self.overflow


# The pool of the units of work: a request's transaction, an admin command. The server admits
# at most its capacity of units at once (web/runtime.py), so a unit never waits for a connection.
# What a pool keeps (size) is what it does not open and close again under a steady load: a
# PostgreSQL connection costs more to open than a dozen token checks.
SESSION_POOL = Pool(size=20, overflow=10)
# What a writer waits for another writer's lock on SQLite, in a thread: never on the event loop.
SQLITE_WRITE_WAIT_MS = 5000


def create_store_engine(
    settings: Settings,
    *,
    pool: Pool = SESSION_POOL,
    busy_timeout_ms: int = SQLITE_WRITE_WAIT_MS,
    per_thread: bool = False,
    checkpoints: bool = True,
) -> Engine:
    """An engine on the configured store. SQLite only (see sqlite_store.py): ``per_thread`` keeps
    one connection per thread instead of a pool; ``checkpoints=False`` leaves the write-ahead
    log's checkpoints to a ``WalCheckpointer``; ``busy_timeout_ms`` bounds what a statement waits
    for another process's write lock."""
    url = settings.store_url
    if url.startswith("sqlite"):
        if settings.sqlite_path is not None:
            data_dir.create_private_file(settings.sqlite_path)  # before SQLite makes it world-readable
        # The event loop's own connections (per_thread) only read: a write there fails at once
        # rather than wait on the loop. Everyone else's writes take turns.
        queue = (
            None
            if per_thread or settings.sqlite_path is None
            else sqlite_store.WriterQueue.of(settings.sqlite_path, SQLITE_WRITE_WAIT_MS / 1000)
        )
        engine = create_engine(
            url,
            hide_parameters=True,  # errors and logs never show bound values
            connect_args={
                "check_same_thread": False,
                "timeout": busy_timeout_ms / 1000,
                **({"factory": queue.connection_class} if queue else {}),
            },
            **(
                {"poolclass": SingletonThreadPool}
                if per_thread
                else {"pool_size": pool.size, "max_overflow": pool.overflow}
            ),
        )
        sqlite_store.configure(
            engine, busy_timeout_ms=busy_timeout_ms, checkpoints=checkpoints, queue=queue, read_only=per_thread
        )
        return engine
    return _postgresql_engine(url, pool, replicated=settings.replica_database_url is not None)


def _postgresql_engine(url: str, pool: Pool, *, replicated: bool, autocommit: bool = False) -> Engine:
    # A server that is down refuses at once (503 at once); one that does not answer gets the
    # pool's own 10 s. Not 5: on a loaded host (the full test suite on 2 cores) a connection
    # opened under load once took 5 s to a PostgreSQL that was up, and a store that is up must
    # never answer 503.
    connect_args: dict[str, Any] = {"connect_timeout": 10} if "psycopg" in url else {}
    if replicated:
        # Token checks read a replica: a commit returns once the replica has applied it, so a
        # revocation is refused there by the very next request (docs/deployment.md).
        connect_args["options"] = "-c synchronous_commit=remote_apply"
    if autocommit:
        # Every statement commits on its own, so a connection comes back with nothing to roll
        # back: no reset on its return, and no isolation level set and reset at each checkout
        # (as ``execution_options(isolation_level=...)`` on the engine does).
        return create_engine(
            url,
            hide_parameters=True,
            connect_args=connect_args,
            isolation_level="AUTOCOMMIT",
            pool_reset_on_return=None,
            pool_size=pool.size,
            max_overflow=pool.overflow,
            pool_timeout=10,
        )
    return create_engine(
        url,
        hide_parameters=True,
        connect_args=connect_args,
        pool_size=pool.size,
        max_overflow=pool.overflow,
        pool_timeout=10,
    )


def require_existing_store(settings: Settings, engine: Engine | None = None) -> None:
    """ConfigurationError unless the configured store was created (by ``tokensmith serve``):
    an administration command run from another folder must not make an empty one there.
    On SQLite, call it before ``create_store_engine`` (which creates the file); elsewhere, with
    the engine."""
    if settings.sqlite_path is not None:
        if not settings.sqlite_path.exists():
            raise ConfigurationError(
                f"No Tokensmith store at {settings.sqlite_path}; set TOKENSMITH_DATA_DIR to the server's data "
                "dir (or TOKENSMITH_DATABASE_URL to its database), or start `tokensmith serve` once to create it."
            )
        return
    if engine is not None and not inspect(engine).has_table("alembic_version"):
        shown = engine.url.render_as_string(hide_password=True)
        raise ConfigurationError(
            f"No Tokensmith store in {shown}; set TOKENSMITH_DATABASE_URL to the server's database, or start "
            "`tokensmith serve` once to create it."
        )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest migration. Run on every start; a no-op when current."""
    with migrated(engine):
        pass


@contextlib.contextmanager
def migrated(engine: Engine) -> Iterator[Connection]:
    """A connection on the store brought to the latest migration, which holds the store's
    migration lock until the block ends: what is done in the block (the first start's
    bootstrap) is done by one process at a time, then seen by the next.

    On PostgreSQL the lock is a session-level advisory lock, so that instances started together
    on an empty database migrate one after the other (Alembic alone would have each create the
    tables). An embedded SQLite store belongs to the processes of one host, started by one
    ``tokensmith serve``: it takes no lock.

    A store already at the latest revision costs one read: Alembic (a tenth of a second to
    import, more to load its scripts) is loaded only when there is something to apply, which
    every administration command would otherwise pay.
    """
    with engine.connect() as connection, _session_lock(connection, STARTUP_LOCK):
        if schema_revision(connection) != head_revision():
            _upgrade(connection)
        yield connection


def _upgrade(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    with connection.begin():
        command.upgrade(config, "head")


def schema_revision(connection: Connection) -> str | None:
    """The revision the store is at (Alembic's ``alembic_version``), None for an empty store.
    Leaves no transaction open."""
    try:
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:  # no such table yet
        return None
    finally:
        connection.rollback()


@functools.cache
def head_revision() -> str:
    """The latest migration's revision. Migrations are numbered, each file named after its
    revision (``versions/0013_token_check_index.py`` is revision ``0013``, revising ``0012``):
    the head is the highest number (tests/store/test_migrations.py holds Alembic to it)."""
    return max(path.name.split("_", 1)[0] for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*_*.py"))


STARTUP_LOCK = "migrations and first start"


def lock_key(name: str) -> int:
    """The 64-bit key of a named PostgreSQL advisory lock."""
    return int.from_bytes(hashlib.sha256(f"tokensmith/{name}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def _session_lock(connection: Connection, name: str) -> Iterator[None]:
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": lock_key(name)})
    connection.commit()
    try:
        yield
    finally:
        if connection.in_transaction():
            connection.rollback()
        # A connection that died took its lock with it; one that lives gives it back.
        with contextlib.suppress(DBAPIError):
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(name)})
            connection.commit()


def transaction_lock(session: Session, name: str) -> None:
    """Hold the store-wide lock ``name`` until the session's transaction ends, for work outside
    the store that must not interleave across processes and hosts (publishing to a Maven
    repository on shared storage).

    PostgreSQL: a transaction-level advisory lock (``pg_advisory_xact_lock``). SQLite has one
    write lock for the whole file, taken by any write and held until the transaction ends: a
    write that changes nothing takes it (and, in the server, the writers' turn, sqlite_store.py).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})
    else:
        session.execute(text("UPDATE alembic_version SET version_num = version_num WHERE 1 = 0"))


# Token checks and health pings on PostgreSQL: a pool apart from the units of work, used from
# threads for one statement at a time, so that checking never queues behind a page's transaction;
# as large as the threadpool's 40 threads. Keeping 20 (it kept 10) doubled the token route's
# requests/s at 20 connections, which had opened a connection for every other check.
CHECK_POOL = Pool(size=20, overflow=20)
# What a read on the event loop may wait on SQLite: WAL readers do not wait for writers; this
# only bounds the rare wait for the WAL index itself.
SQLITE_READ_WAIT_MS = 250


def create_check_engine(settings: Settings) -> Engine:
    """The engine of token checks and health pings: single statements, no transaction to hold.

    On SQLite, one connection per thread (in the server, the event loop's own): a checkout never
    waits, and a read never waits for a writer (WAL). On PostgreSQL, a pool of its own whose
    statements commit on their own: one round trip instead of three (BEGIN, query, COMMIT).
    """
    if settings.store_url.startswith("sqlite"):
        return create_store_engine(settings, busy_timeout_ms=SQLITE_READ_WAIT_MS, per_thread=True)
    return _postgresql_engine(
        settings.replica_database_url or settings.store_url, CHECK_POOL, replicated=False, autocommit=True
    )


def check_replication(engine: Engine, settings: Settings) -> None:
    """With token checks on a replica, refuse to start unless the primary has synchronous
    standbys: ``remote_apply`` without one returns at the local commit, and a revoked token
    would go on working on the replica for as long as it lags."""
    if not settings.replica_database_url:
        return
    with connection_to(engine) as connection:
        standbys = connection.execute(text("SHOW synchronous_standby_names")).scalar()
    if not standbys:
        raise ConfigurationError(
            "TOKENSMITH_REPLICA_DATABASE_URL is set, but the primary has no synchronous standby: set "
            "synchronous_standby_names on it to the replicas token checks read (see docs/deployment.md)."
        )


@contextlib.contextmanager
def connection_to(engine: Engine) -> Iterator[Connection]:
    """A pooled connection, committed when the block succeeds; outages become StoreUnavailable."""
    try:
        with engine.connect() as connection:
            yield connection
            if connection.in_transaction():  # something was written: a read alone needs no commit
                connection.commit()
    except Exception as error:
        if is_outage(error):
            raise StoreUnavailable() from error
        raise


def fetch_one_on_driver(connection: Connection, sql: str, parameters: Any) -> tuple[Any, ...] | None:
    """One read straight on the driver's cursor, for the statement every request runs.

    SQLAlchemy's execution machinery (context, result, type processing) costs about 30 µs of
    a 45 µs token lookup; the drivers prepare and cache the statement themselves. Values come
    back as the driver has them: the caller types them. Errors keep their meaning: a driver
    error that means the store cannot answer (SQLite locked past the busy timeout or failing
    I/O; a PostgreSQL connection lost) is an outage, and a lost connection leaves the pool,
    as it does through SQLAlchemy.
    """
    driver = connection.connection.driver_connection
    assert driver is not None  # None only once the pool has closed the connection, never while in use
    try:
        row: tuple[Any, ...] | None = driver.execute(sql, parameters).fetchone()
        return row
    except sqlite3.OperationalError as error:
        raise StoreUnavailable() from error
    except Exception as error:
        # psycopg is loaded by the engine that made a PostgreSQL connection, and only then:
        # an administration command on SQLite does not pay for importing it.
        psycopg = sys.modules.get("psycopg")
        if psycopg is None or not isinstance(error, psycopg.Error):
            raise
        if isinstance(error, psycopg.OperationalError) or driver.closed:
            connection.invalidate()
            raise StoreUnavailable() from error
        raise


def rows_changed(session: Session, statement: UpdateBase) -> int:
    """Run an UPDATE or DELETE in the session's transaction: how many rows it changed (matched, for
    an UPDATE). Its result is a CursorResult, whose rowcount SQLAlchemy's types only promise for a
    Connection's execute."""
    result = session.execute(statement)
    assert isinstance(result, CursorResult)
    return result.rowcount


def ping(connect: Callable[[], AbstractContextManager[Connection]]) -> None:
    """Raise StoreUnavailable unless the store answers a trivial query, on the connection
    ``connect()`` gives (web/runtime.Runtime.check_connection)."""
    with connect() as connection:
        fetch_one_on_driver(connection, "SELECT 1", ())


@contextlib.contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: committed when the block succeeds, rolled back when it raises.

    Store outages surface as StoreUnavailable whatever the caller was doing.
    """
    session = factory()
    try:
        yield session
    except BaseException as error:
        end_unit(session, succeeded=False)
        if isinstance(error, Exception) and is_outage(error):
            raise StoreUnavailable() from error
        raise
    end_unit(session, succeeded=True)


def end_unit(session: Session, *, succeeded: bool) -> None:
    """Commit (or, after a failure, roll back) a unit of work and close its session, in one
    step; a failed commit is rolled back and raised, as StoreUnavailable for an outage."""
    try:
        if succeeded:
            session.commit()
        else:
            with contextlib.suppress(Exception):  # a dead connection cannot roll back either
                session.rollback()
    except Exception as error:
        with contextlib.suppress(Exception):
            session.rollback()
        if is_outage(error):
            raise StoreUnavailable() from error
        raise
    finally:
        session.close()
