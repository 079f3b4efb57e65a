"""The store: engine, sessions, migrations, and what an outage looks like to the rest."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError, TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from tokensmith.config import Settings
from tokensmith.errors import StoreUnavailable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# What the hot path's domain functions run their Core statements on: a plain connection,
# or a session when they are part of a larger unit of work.
Connectable = Connection | Session

# Errors that mean "the store cannot answer right now", as opposed to a bug or bad data.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, PoolTimeout)


def is_outage(error: BaseException) -> bool:
    if isinstance(error, OUTAGE_ERRORS):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


def create_store_engine(settings: Settings) -> Engine:
    url = settings.store_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            hide_parameters=True,  # errors and logs never show bound values
            connect_args={"check_same_thread": False, "timeout": 5},
            pool_size=8,
            max_overflow=16,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        hide_parameters=True,
        # A down server must fail fast with 503, not hang a client.
        connect_args={"connect_timeout": 5} if "psycopg" in url else {},
        pool_size=10,
        max_overflow=20,
        pool_timeout=10,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest migration. Run on every start; a no-op when current."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def for_single_statements(engine: Engine) -> Engine:
    """The engine for work of one or two independent statements, like a token check and its
    once-a-minute ``last_used`` write.

    On PostgreSQL each statement then commits on its own: one round trip instead of three
    (BEGIN, the query, COMMIT). SQLite's driver already begins a transaction only before a
    write, and its autocommit mode is slower there, so SQLite keeps the engine as it is.
    """
    if engine.dialect.name == "sqlite":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


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
    try:
        return connection.connection.driver_connection.execute(sql, parameters).fetchone()
    except sqlite3.OperationalError as error:
        raise StoreUnavailable() from error
    except psycopg.Error as error:
        if isinstance(error, psycopg.OperationalError) or connection.connection.driver_connection.closed:
            connection.invalidate()
            raise StoreUnavailable() from error
        raise


def ping(engine: Engine) -> None:
    """Raise StoreUnavailable unless the store answers a trivial query."""
    with connection_to(engine) as connection:
        connection.execute(text("SELECT 1"))


@contextlib.contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: committed when the block succeeds, rolled back when it raises.

    Store outages surface as StoreUnavailable whatever the caller was doing.
    """
    session = factory()
    try:
        yield session
        session.commit()
    except Exception as error:
        with contextlib.suppress(Exception):  # a dead connection cannot roll back either
            session.rollback()
        if is_outage(error):
            raise StoreUnavailable() from error
        raise
    finally:
        session.close()
