"""What the embedded store (SQLite, one file) needs to stay up when many requests share it.

SQLite lets any number of readers work alongside one writer (WAL mode). What it does not do
by itself is queue the writers: a writer that finds the lock taken polls for it, sleeping ever
longer between tries, so under a steady stream of writes one of them can be passed over until
its wait runs out (``database is locked``, a 503). And by default whichever commit makes the
write-ahead log long enough also moves it back into the database file, the one step that
waits for the disk. So, on every connection the server opens:

- ``WriterQueue``: the writers of one process take turns on a lock of their own, taken at a
  transaction's first write and given back when it commits or rolls back; the wait is a
  thread's, never the event loop's, and at most ``SQLITE_WRITE_WAIT_MS``. SQLite's own lock
  then only ever waits for another process (an administrator's command).
- ``WalCheckpointer``: the log is checkpointed by a thread of its own, never by a request.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine, event

from tokensmith.errors import StoreUnavailable
from tokensmith.housekeeping import Periodic

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
# The page cache of the event loop's connection, which token checks read on (db.create_check_engine).
# SQLite's default (2 MiB) holds the digest index's upper levels only: among a million tokens
# presented at random, each check read an index leaf and a table page from the OS again, and
# cost about 1.27 x what it costs among a thousand; with 64 MiB (the digest index of a million
# tokens is about 45 MB) about 1.1 x (bench/check_scale.py, docs/benchmarks.md). A bound, not an
# allocation: the cache grows only to the pages checks touch. It helps only between writes: any
# commit elsewhere (the last-used times, a few times a second under load) makes SQLite drop
# this cache at the next read, in WAL mode as in any other. Since migration 0013 the check reads
# one covering index alone (models.CHECK_COLUMNS: about 117 MB among a million tokens, of which
# the cache holds the pages checks touch), so fewer pages are read again after such a commit.
CHECK_CACHE_KIB = 64 * 1024


def configure(
    engine: Engine, *, busy_timeout_ms: int, checkpoints: bool, queue: WriterQueue | None, read_only: bool = False
) -> None:
    """Set up every connection ``engine`` opens; with a ``queue`` (whose ``connection_class`` the
    engine's connections must be), its writers take turns; ``read_only`` connections refuse every
    write."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        if not checkpoints:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
            cursor.execute(f"PRAGMA cache_size=-{CHECK_CACHE_KIB}")
        cursor.close()

    event.listen(engine, "connect", on_connect)
    if queue is not None:
        event.listen(engine, "before_cursor_execute", queue.before_statement)


class TurnTakingConnection(sqlite3.Connection):
    """A driver connection that gives its writer's turn back once its transaction has ended in
    SQLite itself: after the real COMMIT or ROLLBACK (or the close) has returned. SQLAlchemy's
    own ``commit`` event comes before the driver commits, and a turn given back there let the
    next writer meet SQLite's lock still held. A subclass of one queue sets ``queue``."""

    queue: WriterQueue
    holds_turn = False

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.queue.give_back(self)

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.queue.give_back(self)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.queue.give_back(self)


class WriterQueue:
    """One process's writers to one SQLite file, one transaction at a time.

    A transaction takes its turn before its first INSERT, UPDATE or DELETE and gives it back
    when it ends, however it ends (commit, rollback, its connection being reset on its way back
    to the pool, or closed). Waiting longer than ``wait_seconds`` is an outage, as SQLite's own
    busy wait was. The engine's connections must be of this queue's ``connection_class``.
    """

    _by_file: ClassVar[dict[Path, WriterQueue]] = {}
    _registry_lock = threading.Lock()

    def __init__(self, wait_seconds: float) -> None:
        self.wait_seconds = wait_seconds
        self._turn = threading.Lock()
        self.connection_class: type[TurnTakingConnection] = type(
            "QueuedConnection", (TurnTakingConnection,), {"queue": self}
        )

    @classmethod
    def of(cls, path: Path, wait_seconds: float) -> WriterQueue:
        """The queue of this file: every engine of the process on it shares one."""
        with cls._registry_lock:
            return cls._by_file.setdefault(path, cls(wait_seconds))

    def before_statement(self, connection: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip()[:7].upper().startswith(_WRITES):
            return
        driver_connection = connection.connection.driver_connection
        assert isinstance(driver_connection, TurnTakingConnection)  # the engine's connection_class
        if driver_connection.holds_turn:
            return
        if not self._turn.acquire(timeout=self.wait_seconds):
            raise StoreUnavailable("The token store is busy; try again in a moment.")
        driver_connection.holds_turn = True

    def give_back(self, driver_connection: TurnTakingConnection) -> None:
        if driver_connection.holds_turn:
            driver_connection.holds_turn = False
            self._turn.release()


class WalCheckpointer(Periodic):
    """SQLite's write-ahead log moved into the database file by a thread of its own.

    A checkpoint is the one step of a SQLite write that waits for the disk (with
    ``synchronous=NORMAL`` a commit does not sync; a checkpoint does), and by default it runs in
    whichever commit makes the log pass 1,000 pages: a request would pay for it. The server's
    connections turn that off (``checkpoints=False``) and this thread checkpoints every
    ``interval`` seconds instead, PASSIVE: it never waits for a reader or a writer.
    """

    def __init__(self, engine: Engine, *, interval: float = 1.0) -> None:
        super().__init__("tokensmith-wal-checkpoints", interval)
        self.engine = engine

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self.round()

    def run_once(self) -> None:
        with self.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
