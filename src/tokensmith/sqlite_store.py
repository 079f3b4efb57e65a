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

import logging
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event

from tokensmith.errors import StoreUnavailable

log = logging.getLogger("tokensmith.store")

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
_HOLDS = "tokensmith_holds_write_turn"


def configure(engine: Engine, *, busy_timeout_ms: int, checkpoints: bool, queue: WriterQueue | None,
              read_only: bool = False) -> None:
    """Set up every connection ``engine`` opens; with a ``queue``, its writers take turns;
    ``read_only`` connections refuse every write."""

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
        cursor.close()

    event.listen(engine, "connect", on_connect)
    if queue is not None:
        queue.attach(engine)


class WriterQueue:
    """One process's writers to one SQLite file, one transaction at a time.

    A transaction takes its turn before its first INSERT, UPDATE or DELETE and gives it back
    when it ends, however it ends (commit, rollback, or its connection going back to the pool or
    away). Waiting longer than ``wait_seconds`` is an outage, as SQLite's own busy wait was.
    """

    _by_file: dict[Path, WriterQueue] = {}
    _registry_lock = threading.Lock()

    def __init__(self, wait_seconds: float) -> None:
        self.wait_seconds = wait_seconds
        self._turn = threading.Lock()

    @classmethod
    def of(cls, path: Path, wait_seconds: float) -> WriterQueue:
        """The queue of this file: every engine of the process on it shares one."""
        with cls._registry_lock:
            return cls._by_file.setdefault(path, cls(wait_seconds))

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before_statement)
        event.listen(engine, "commit", self._after_transaction)
        event.listen(engine, "rollback", self._after_transaction)
        for name in ("checkin", "invalidate", "close", "soft_invalidate"):
            event.listen(engine.pool, name, self._connection_left)

    def _before_statement(self, connection: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip()[:7].upper().startswith(_WRITES):
            return
        record = connection.connection.info
        if record.get(_HOLDS):
            return
        if not self._turn.acquire(timeout=self.wait_seconds):
            raise StoreUnavailable("The token store is busy; try again in a moment.")
        record[_HOLDS] = True

    def _after_transaction(self, connection: Connection) -> None:
        self._give_back(connection.connection.info)

    def _connection_left(self, _dbapi_connection: Any, record: Any, *_args: Any) -> None:
        if record is not None:
            self._give_back(record.info)

    def _give_back(self, info: dict) -> None:
        if info.pop(_HOLDS, False):
            self._turn.release()


class WalCheckpointer:
    """SQLite's write-ahead log moved into the database file by a thread of its own.

    A checkpoint is the one step of a SQLite write that waits for the disk (with
    ``synchronous=NORMAL`` a commit does not sync; a checkpoint does), and by default it runs in
    whichever commit makes the log pass 1,000 pages: a request would pay for it. The server's
    connections turn that off (``checkpoints=False``) and this thread checkpoints every
    ``interval`` seconds instead, PASSIVE: it never waits for a reader or a writer.
    """

    def __init__(self, engine: Engine, *, interval: float = 1.0) -> None:
        self.engine = engine
        self.interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tokensmith-wal-checkpoints", daemon=True)

    def start(self) -> WalCheckpointer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)
        self.checkpoint()

    def checkpoint(self) -> None:
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception as error:  # the next round tries again; an outage shows elsewhere
            log.info("WAL checkpoint skipped: %s", type(error).__name__)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.checkpoint()
