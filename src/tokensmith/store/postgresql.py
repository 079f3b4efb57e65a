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
"""

from __future__ import annotations

import functools
import select
import time
import weakref
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

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
