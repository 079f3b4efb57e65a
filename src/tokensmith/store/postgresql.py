"""PostgreSQL connections through a failover: none keeps a request waiting on a primary that has
died or hangs, and none is handed out stale once another server has taken over
(docs/deployment.md, "PostgreSQL: a primary, a synchronous standby, failover").

- Opening a connection waits at most ``CONNECT_TIMEOUT_S`` for each host of a multi-host URL
  (libpq's ``connect_timeout``, which psycopg applies to each host in turn): a host that does
  not answer is left for the next one.
- On a connection of the request path (``bound_waits``), every wait for the server's answer —
  a statement, a commit, a ping — lasts at most ``ANSWER_WITHIN_S``; then the connection is
  closed and the request gets the store's ``503``. Only this reaches a server that hangs with its
  sockets open (a stopped process, a stuck disk): its kernel still accepts connections and
  acknowledges what is sent, and answers TCP keepalives, so no TCP timeout ever fires. No
  statement of the request path legitimately waits that long: the store-wide locks are taken
  by polling (database.transaction_lock), and the migrations run on an engine of their own.
- At checkout (``watch_for_failover``), a connection is replaced, not handed out, when its
  server hung up on it (its socket reads as closed or has something to say while idle: what a
  primary that died or was demoted leaves) or when it was opened before the pool last saw
  the store fail (``note_failure``): after a switch, the first failure of a pool retires every
  connection that pool opened before it, so a pool costs at most one failed request, not one per
  connection it kept.

``AsyncReads`` does the same for single reads on the event loop (the token check on PostgreSQL),
on psycopg's asynchronous connections.
"""

from __future__ import annotations

import asyncio
import functools
import select
import time
import weakref
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

from tokensmith.errors import StoreUnavailable

if TYPE_CHECKING:
    import psycopg

CONNECT_TIMEOUT_S = 5
ANSWER_WITHIN_S = 5.0

_OPENED = "tokensmith_opened"  # when a pooled connection was opened (its record's info)
_LAST_FAILURE: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()


@functools.cache
def _answering_connection() -> type[psycopg.Connection[Any]]:
    """psycopg's Connection whose waits for the server end after ANSWER_WITHIN_S (psycopg is
    imported only here, by an engine that opens a PostgreSQL connection)."""
    import psycopg

    class AnsweringConnection(psycopg.Connection[Any]):
        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            try:
                return super().wait(gen, interval, ANSWER_WITHIN_S if timeout is None else timeout)
            except psycopg.errors._WaitTimeout:  # psycopg's own "the wait timed out"
                # The server owes an answer it may still send: the connection cannot be used
                # again. Closed, it reads as a lost connection (SQLAlchemy's is_disconnect).
                self.close()
                raise psycopg.OperationalError(
                    f"the store did not answer within {ANSWER_WITHIN_S:g} s; connection closed"
                ) from None

    return AnsweringConnection


def bound_waits(engine: Engine) -> Engine:
    """Open the engine's connections with every wait for an answer bounded (see the module)."""

    @event.listens_for(engine, "do_connect")
    def connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        return _answering_connection().connect(*cargs, **cparams)

    return engine


def watch_for_failover(engine: Engine) -> Engine:
    """Replace stale connections at checkout instead of handing them out (see the module)."""

    @event.listens_for(engine, "connect")
    def opened(dbapi_connection: Any, record: Any) -> None:
        record.info[_OPENED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if record.info.get(_OPENED, 0.0) <= _LAST_FAILURE.get(engine, -1.0):
            raise DisconnectionError("opened before the store last failed")
        if _hung_up(dbapi_connection):
            raise DisconnectionError("the server hung up")

    @event.listens_for(engine, "handle_error")
    def failed(context: Any) -> None:
        if context.is_disconnect:
            note_failure(engine)

    return engine


def note_failure(engine: Engine) -> None:
    """The store failed on one of the engine's connections: every connection it opened until
    now is replaced at its next checkout."""
    _LAST_FAILURE[engine] = time.monotonic()


def _hung_up(connection: Any) -> bool:
    """Whether an idle connection's server has closed it or is telling it something (the
    ``FATAL: terminating connection`` of a server shutting down): either way it is done. One
    poll of the socket, without waiting."""
    if connection.closed or connection.broken:
        return True
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


@functools.cache
def _answering_async_connection() -> type[psycopg.AsyncConnection[Any]]:
    """psycopg's AsyncConnection whose waits for the server end after ANSWER_WITHIN_S."""
    import psycopg

    class AnsweringAsyncConnection(psycopg.AsyncConnection[Any]):
        async def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            try:
                return await super().wait(gen, interval, ANSWER_WITHIN_S if timeout is None else timeout)
            except psycopg.errors._WaitTimeout:
                self.pgconn.finish()  # as AnsweringConnection does
                raise psycopg.OperationalError(
                    f"the store did not answer within {ANSWER_WITHIN_S:g} s; connection closed"
                ) from None

    return AnsweringAsyncConnection


class AsyncReads:
    """Single statements read on the event loop, on asynchronous connections of a pool of its own
    (at most ``capacity``, kept once opened): no trip to a thread and back, which cost a token
    check on PostgreSQL about a third of its CPU (bench/postgres_check.py). Opened as ``engine``
    opens its own (same URL, same settings), autocommitting, with the guards of the module's
    docstring: a connection whose server hung up, or that was opened before the store last
    failed here, is replaced rather than used; every wait is bounded. Use from one event loop."""

    def __init__(self, engine: Engine, capacity: int) -> None:
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        self._cargs = cargs
        self._cparams = {**cparams, "connect_timeout": CONNECT_TIMEOUT_S, "autocommit": True}
        self._capacity = capacity
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[tuple[float, psycopg.AsyncConnection[Any]]] = []  # (when opened, connection)
        self._last_failure = -1.0

    async def fetch_one(self, sql: str, parameters: Any) -> tuple[Any, ...] | None:
        """The statement's first row (None: no row); StoreUnavailable when the store cannot
        answer (the connection is then closed, and every other one opened before is replaced)."""
        import psycopg

        if self._slots is None:
            self._slots = asyncio.Semaphore(self._capacity)
        async with self._slots:
            opened, connection = await self._checkout()
            try:
                row = await (await connection.execute(sql, parameters)).fetchone()
            except psycopg.Error as error:
                if isinstance(error, psycopg.OperationalError) or connection.closed or connection.broken:
                    self._failed(connection)
                    raise StoreUnavailable() from error
                self._idle.append((opened, connection))  # autocommit: nothing is left open
                raise
            except BaseException:  # cancelled mid-answer: the connection's state is unknown
                connection.pgconn.finish()
                raise
            self._idle.append((opened, connection))
            return row

    async def _checkout(self) -> tuple[float, psycopg.AsyncConnection[Any]]:
        import psycopg

        while self._idle:
            opened, connection = self._idle.pop()
            if opened > self._last_failure and not _hung_up(connection):
                return opened, connection
            connection.pgconn.finish()
        try:
            connection = await _answering_async_connection().connect(*self._cargs, **self._cparams)
        except psycopg.OperationalError as error:
            self._last_failure = time.monotonic()
            raise StoreUnavailable() from error
        return time.monotonic(), connection

    def _failed(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self._last_failure = time.monotonic()
        connection.pgconn.finish()

    def close(self) -> None:
        while self._idle:
            self._idle.pop()[1].pgconn.finish()
