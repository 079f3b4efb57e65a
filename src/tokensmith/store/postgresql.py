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
on asyncpg's connections.
"""

from __future__ import annotations

import asyncio
import functools
import select
import time
import urllib.parse
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

from tokensmith.errors import StoreUnavailable

if TYPE_CHECKING:
    import asyncpg
    import psycopg

CONNECT_TIMEOUT_S = 5
ANSWER_WITHIN_S = 5.0
MAX_KEYS_READ_AT_ONCE = 200

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


class AsyncReads:
    """Reads by key on the event loop, on asyncpg's connections in a pool of its own (at most
    ``capacity``, kept once opened): no trip to a thread and back, and asyncpg's execution of a
    prepared statement, about a quarter of psycopg's CPU (bench/postgres_check.py). The lookups
    asked in one turn of the event loop are read by one statement (``fetch_keyed``): under load,
    one round trip answers the several requests that arrived together.

    The engine's own connections stay psycopg's; this pool is opened from the same URL (its
    libpq keywords: hosts and ports tried in turn, ``target_session_attrs``, SSL), autocommitting,
    with the guards of the module's docstring: each host gets ``CONNECT_TIMEOUT_S`` as libpq
    gives it; a connection whose server hung up, or that was opened before the store last failed
    here, is replaced rather than used; every answer is awaited at most ``ANSWER_WITHIN_S``.
    Use from one event loop.
    """

    def __init__(self, engine: Engine, capacity: int) -> None:
        self._attempts = _asyncpg_attempts(engine)
        self._capacity = capacity
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[tuple[float, asyncpg.Connection]] = []  # (when opened, connection)
        self._last_failure = -1.0
        self._sending: set[asyncio.Task[None]] = set()
        self._gathering: dict[tuple[str, int], dict[Any, list[asyncio.Future[Any]]]] = {}

    async def fetch_keyed(self, sql: str, key_at: int, keys: Sequence[Any]) -> tuple[Any, ...] | None:
        """The row, among those ``sql`` reads for an array of keys (its one parameter, ``$1``),
        whose column ``key_at`` is one of ``keys``; None when there is none. The keys of every
        call made in the same turn of the event loop (up to ``MAX_KEYS_READ_AT_ONCE``) go in
        one array, one statement. StoreUnavailable when the store cannot answer."""
        loop = asyncio.get_running_loop()
        waiting = self._gathering.get((sql, key_at))
        if waiting is None or len(waiting) + len(keys) > MAX_KEYS_READ_AT_ONCE:
            waiting = self._gathering[(sql, key_at)] = {}
            loop.call_soon(self._send, sql, key_at, waiting)
        answer: asyncio.Future[Any] = loop.create_future()
        for key in keys:
            waiting.setdefault(key, []).append(answer)
        return cast("tuple[Any, ...] | None", await answer)

    def _send(self, sql: str, key_at: int, waiting: dict[Any, list[asyncio.Future[Any]]]) -> None:
        if self._gathering.get((sql, key_at)) is waiting:
            del self._gathering[(sql, key_at)]
        task = asyncio.ensure_future(self._answer(sql, key_at, waiting))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _answer(self, sql: str, key_at: int, waiting: dict[Any, list[asyncio.Future[Any]]]) -> None:
        try:
            rows = await self._fetch(sql, list(waiting))
        except Exception as error:  # noqa: BLE001 - handed to each request waiting (StoreUnavailable: a 503)
            for answers in waiting.values():
                for answer in answers:
                    if not answer.done():
                        answer.set_exception(error)
            return
        except BaseException:  # the server is stopping
            for answers in waiting.values():
                for answer in answers:
                    answer.cancel()
            raise
        for row in rows:
            for answer in waiting.pop(row[key_at], ()):
                if not answer.done():
                    answer.set_result(tuple(row))
        for answers in waiting.values():  # keys with no row
            for answer in answers:
                if not answer.done():
                    answer.set_result(None)

    async def _fetch(self, sql: str, *parameters: Any) -> list[asyncpg.Record]:
        """The statement's rows; StoreUnavailable when the store cannot answer (the connection is
        then closed, and every other one opened before is replaced)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._capacity)
        async with self._slots:
            opened, connection = await self._checkout()
            try:
                rows = await connection.fetch(sql, *parameters, timeout=ANSWER_WITHIN_S)
            except Exception as error:
                if connection.is_closed() or _store_lost(error):
                    self._failed(connection)
                    raise StoreUnavailable() from error
                self._idle.append((opened, connection))  # autocommit: nothing is left open
                raise
            except BaseException:  # cancelled mid-answer: the connection's state is unknown
                connection.terminate()
                raise
            self._idle.append((opened, connection))
            return rows

    async def _checkout(self) -> tuple[float, asyncpg.Connection]:
        while self._idle:
            opened, connection = self._idle.pop()
            if opened > self._last_failure and not connection.is_closed():
                return opened, connection
            connection.terminate()
        try:
            connection = await _connect(self._attempts)
        except StoreUnavailable:
            self._last_failure = time.monotonic()
            raise
        return time.monotonic(), connection

    def _failed(self, connection: asyncpg.Connection) -> None:
        self._last_failure = time.monotonic()
        connection.terminate()

    def close(self) -> None:
        while self._idle:
            self._idle.pop()[1].terminate()


def _store_lost(error: Exception) -> bool:
    """Whether an error of a read says its connection is done: lost, timed out, in a state
    asyncpg cannot go on from (a server that closed it while idle), or on a server that is
    shutting down or is no longer the primary."""
    from asyncpg import exceptions

    return isinstance(
        error,
        (
            OSError,
            TimeoutError,
            exceptions.InterfaceError,
            exceptions.InternalClientError,
            exceptions.PostgresConnectionError,
            exceptions.AdminShutdownError,
            exceptions.CannotConnectNowError,
            exceptions.ReadOnlySQLTransactionError,
        ),
    )


def _asyncpg_attempts(engine: Engine) -> list[dict[str, Any]]:
    """One set of asyncpg.connect arguments per host of the engine's URL, in the URL's order, as
    libpq would try them: its hosts and ports (one port for all, or one per host). libpq's other
    keywords (sslmode, sslrootcert, passfile…) go to asyncpg as the query of a DSN, which it reads
    as libpq does."""
    _, cparams = engine.dialect.create_connect_args(engine.url)
    keywords = {key: str(value) for key, value in cparams.items() if key != "context"}
    hosts = keywords.pop("host", "").split(",")
    ports = keywords.pop("port", "").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    if len(ports) != len(hosts):
        raise ValueError("the store's URL names a different number of hosts and ports")
    common: dict[str, Any] = {
        "database": keywords.pop("dbname", None),
        "user": keywords.pop("user", None),
        "password": keywords.pop("password", None),
        "target_session_attrs": keywords.pop("target_session_attrs", None),
        "server_settings": {"application_name": keywords.pop("application_name")}
        if "application_name" in keywords
        else None,
    }
    keywords.pop("connect_timeout", None)  # CONNECT_TIMEOUT_S, per host, as for the engine
    query = urllib.parse.urlencode(keywords)  # sslmode, sslrootcert, passfile…: asyncpg reads them as libpq does
    return [
        {
            **common,
            "dsn": "postgresql://" + (f"?{query}" if query else ""),
            "host": host or None,
            "port": int(port) if port else None,
        }
        for host, port in zip(hosts, ports, strict=True)
    ]


async def _connect(attempts: list[dict[str, Any]]) -> asyncpg.Connection:
    """The first host that answers and suits ``target_session_attrs``, each given at most
    ``CONNECT_TIMEOUT_S``; StoreUnavailable when none does."""
    import asyncpg

    failure: BaseException | None = None
    for attempt in attempts:
        try:
            return await asyncpg.connect(**attempt, timeout=CONNECT_TIMEOUT_S, statement_cache_size=16)
        except (
            OSError,
            TimeoutError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.exceptions.InternalClientError,
        ) as error:
            failure = error  # refused, not the primary, not answering: the next host
    raise StoreUnavailable() from failure
