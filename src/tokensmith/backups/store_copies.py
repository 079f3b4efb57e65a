"""The store's part of a backup: one consistent copy of it while the server runs, what that copy
holds (read in the same moment), and loading it into an empty store.

- SQLite: the online backup API (``sqlite3.Connection.backup``) in one step, which reads the
  whole file inside one read transaction: the copy is the store as of that transaction's start,
  the write-ahead log's committed pages included, while the server's writers go on (a WAL
  reader never blocks a writer; checkpoints merely wait for it to end).
- PostgreSQL: a read-only REPEATABLE READ transaction exports its snapshot
  (``pg_export_snapshot``), ``pg_dump --snapshot`` dumps exactly that snapshot, and the same
  transaction reads what it holds, so the manifest and the dump describe one moment.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, func, inspect, select, text

from tokensmith.backups import postgres_tools
from tokensmith.clock import utcnow
from tokensmith.errors import Conflict
from tokensmith.store import data_dir
from tokensmith.store.models import PersonalToken, Project, Release, User

SQLITE_MEMBER = "store/tokensmith.db"
POSTGRESQL_MEMBER = "store/postgresql.dump"
# What the copy waits for a writer's lock when it starts, at most: a WAL reader needs none after.
SQLITE_OPEN_WAIT_SECONDS = 30


@dataclass(frozen=True)
class Contents:
    """What the store held at the backup's moment, read in that moment."""

    taken_at: datetime
    schema_revision: str | None
    projects: dict[str, str]  # id -> Maven groupId
    releases: list[tuple[str, str]]  # (project id, version)
    users: int
    live_tokens: int

    def counts(self) -> dict[str, int]:
        return {
            "users": self.users,
            "live_tokens": self.live_tokens,
            "projects": len(self.projects),
            "releases": len(self.releases),
        }


def read_contents(connection: Connection, taken_at: datetime) -> Contents:
    revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return Contents(
        taken_at=taken_at,
        schema_revision=revision,
        projects={row.id: row.group_id for row in connection.execute(select(Project.id, Project.group_id))},
        releases=[
            (row.project_id, row.version) for row in connection.execute(select(Release.project_id, Release.version))
        ],
        users=connection.execute(select(func.count()).select_from(User)).scalar_one(),
        live_tokens=connection.execute(
            select(func.count()).select_from(PersonalToken).where(PersonalToken.revoked_at.is_(None))
        ).scalar_one(),
    )


def copy_sqlite(store: Path, into: Path) -> Contents:
    """A consistent copy of the SQLite store at ``into`` (a new file), and what it holds."""
    taken_at = utcnow()
    source = sqlite3.connect(store, timeout=SQLITE_OPEN_WAIT_SECONDS)
    try:
        data_dir.create_private_file(into)
        target = sqlite3.connect(into)
        try:
            source.backup(target)  # one step: one read transaction, one moment
        finally:
            target.close()
    finally:
        source.close()
    engine = create_engine(f"sqlite:///{into}")
    try:
        with engine.connect() as connection:
            return read_contents(connection, taken_at)
    finally:
        engine.dispose()


@contextlib.contextmanager
def postgresql_snapshot(engine: Engine) -> Iterator[tuple[Contents, int, Iterator[bytes]]]:
    """What the store holds as of one snapshot, the server's major version, and ``pg_dump``'s
    output of that same snapshot, to be read while the block runs (the transaction that exported
    it stays open until then)."""
    with engine.connect() as connection:
        held = connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with held.begin():
            snapshot = held.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            taken_at = held.execute(text("SELECT now()")).scalar_one()
            contents = read_contents(held, taken_at)
            major = postgres_tools.server_major(held)
            yield contents, major, postgres_tools.dump(engine, snapshot, major)


def ensure_empty_postgresql(engine: Engine) -> None:
    tables = inspect(engine).get_table_names()
    if tables:
        shown = engine.url.render_as_string(hide_password=True)
        raise Conflict(
            f"The database {shown} is not empty ({len(tables)} tables, {', '.join(sorted(tables)[:3])}…): a backup is "
            "restored into an empty database only. Create a new one (createdb), or empty this one if you mean to "
            "replace what it holds."
        )


def load_postgresql(engine: Engine, dump_file: Path, dumped_by: int) -> None:
    with engine.connect() as connection:
        major = postgres_tools.server_major(connection)
    postgres_tools.restore(engine, dump_file, max(major, dumped_by))


def is_disk_full(error: BaseException) -> bool:
    """An error that says the disk being written is full (or the writer's quota is spent)."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    if isinstance(error, sqlite3.OperationalError):
        return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(error)
    return False
