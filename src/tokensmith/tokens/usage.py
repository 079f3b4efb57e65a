"""When credentials were last used: a token's *last used* and a browser session's *last seen*.

These are the only writes that reading requests cause, and a token check is the one piece of
work every request does. In the server they are written behind the requests by one thread of
their own (``UsageWriter``): a check notes the use in memory and answers, and the writer puts
everything noted into the store in one short transaction a few times a second. So a check on
the event loop never writes and never waits for a writer's lock, and a burst of first uses costs
one transaction instead of one each. Elsewhere (the admin shell, domain tests) ``RECORD_INLINE``
writes each use at once on the caller's connection or session.

Each write only moves a moment forward (``WHERE last_used_at < :at``), so an instance that
writes late never overwrites a later use another one recorded.

With a token's *last used* goes where it was used: each token's last ``MAX_ADDRESSES`` distinct
addresses (``token_addresses``), each with when it was first and last seen there and the client
last seen, upserted in the same transaction and pruned to the five most recently seen. A check
notes a use at most once a minute per token and address (token_check.record_use, and the
writer's own memory of what it wrote), so a token used from a second address within the minute
is still seen there, and a busy token from one address still costs one write a minute.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import Engine, bindparam, delete, or_, select, update
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.orm import Session

from tokensmith import metrics
from tokensmith.errors import StoreUnavailable
from tokensmith.store.database import Connectable, connection_to
from tokensmith.store.models import BrowserSession, PersonalToken, TokenAddress

log = logging.getLogger("tokensmith.usage")


@dataclass(frozen=True, slots=True)
class TokenUse:
    token_id: int
    at: datetime
    ip: str | None
    agent: str | None


@dataclass(frozen=True, slots=True)
class SessionSeen:
    session_id: int
    at: datetime


_Noted = TypeVar("_Noted", TokenUse, SessionSeen)
_Key = TypeVar("_Key", tuple[int, str | None], int)  # a token's use by address; a session by id

_TOKENS = PersonalToken.__table__
_SESSIONS = BrowserSession.__table__
_ADDRESSES = TokenAddress.__table__
MAX_ADDRESSES = 5  # the distinct addresses kept per token, the most recently seen
# A use from the same token and address as one written less than this ago is not written again.
REWRITE_AFTER = timedelta(minutes=1)
_WRITE_TOKEN_USE = (
    update(_TOKENS)
    .where(
        _TOKENS.c.id == bindparam("use_token_id"),
        or_(_TOKENS.c.last_used_at.is_(None), _TOKENS.c.last_used_at < bindparam("use_at")),
    )
    .values(last_used_at=bindparam("use_at"), last_used_ip=bindparam("use_ip"), last_used_agent=bindparam("use_agent"))
)
_WRITE_SESSION_SEEN = (
    update(_SESSIONS)
    .where(_SESSIONS.c.id == bindparam("seen_session_id"), _SESSIONS.c.last_seen_at < bindparam("seen_at"))
    .values(last_seen_at=bindparam("seen_at"))
)


def _upsert_address(dialect: str) -> Any:
    """INSERT an address of a token, or move its last seen (and client) forward: one statement
    of the store's own dialect, for every address of a batch."""
    insert = sqlite_dialect.insert if dialect == "sqlite" else postgresql_dialect.insert
    statement = insert(_ADDRESSES)
    return statement.on_conflict_do_update(
        index_elements=[_ADDRESSES.c.token_id, _ADDRESSES.c.ip],
        set_={"last_seen_at": statement.excluded.last_seen_at, "agent": statement.excluded.agent},
        where=_ADDRESSES.c.last_seen_at < statement.excluded.last_seen_at,
    )


_UPSERT_ADDRESS = {dialect: _upsert_address(dialect) for dialect in ("sqlite", "postgresql")}
_KEPT = _ADDRESSES.alias("kept")
# Each token's addresses past the five most recently seen (the correlated subquery: its own five).
_PRUNE_ADDRESSES = delete(_ADDRESSES).where(
    _ADDRESSES.c.token_id.in_(bindparam("token_ids", expanding=True)),
    _ADDRESSES.c.id.not_in(
        select(_KEPT.c.id)
        .where(_KEPT.c.token_id == _ADDRESSES.c.token_id)
        .order_by(_KEPT.c.last_seen_at.desc(), _KEPT.c.id.desc())
        .limit(MAX_ADDRESSES)
    ),
)
_PRUNE_BATCH = 1000  # token ids per pruning statement


def _dialect_of(store: Connectable) -> str:
    return store.get_bind().dialect.name if isinstance(store, Session) else store.dialect.name


def write_token_uses(store: Connectable, uses: Sequence[TokenUse]) -> None:
    """Each use's moment, address and client on its token, and its address among the token's
    last five."""
    if not uses:
        return
    store.execute(
        _WRITE_TOKEN_USE,
        [{"use_token_id": use.token_id, "use_at": use.at, "use_ip": use.ip, "use_agent": use.agent} for use in uses],
    )
    located = [use for use in uses if use.ip is not None]
    if not located:
        return
    store.execute(
        _UPSERT_ADDRESS[_dialect_of(store)],
        [
            {
                "token_id": use.token_id,
                "ip": use.ip,
                "first_seen_at": use.at,
                "last_seen_at": use.at,
                "agent": use.agent,
            }
            for use in located
        ],
    )
    token_ids = sorted({use.token_id for use in located})
    for start in range(0, len(token_ids), _PRUNE_BATCH):
        store.execute(_PRUNE_ADDRESSES, {"token_ids": token_ids[start : start + _PRUNE_BATCH]})


def write_sessions_seen(store: Connectable, seen: Sequence[SessionSeen]) -> None:
    if seen:
        store.execute(_WRITE_SESSION_SEEN, [{"seen_session_id": s.session_id, "seen_at": s.at} for s in seen])


class UsageRecorder(Protocol):
    """Where the token check and the session lookup hand the uses they note."""

    def token_used(self, store: Connectable, use: TokenUse) -> None: ...

    def session_seen(self, store: Connectable, seen: SessionSeen) -> None: ...


class RecordInline:
    """Writes each use at once, on the store the caller is working on."""

    def token_used(self, store: Connectable, use: TokenUse) -> None:
        write_token_uses(store, [use])

    def session_seen(self, store: Connectable, seen: SessionSeen) -> None:
        write_sessions_seen(store, [seen])


RECORD_INLINE = RecordInline()


class UsageWriter:
    """Uses written behind the requests, by one thread on a connection of its own.

    ``token_used`` and ``session_seen`` only note the use (the latest per token and address, or
    per session) and return, so they may be called from the event loop; a token's use from an
    address it wrote less than ``REWRITE_AFTER`` ago is not noted again. ``start`` starts the
    thread and ``stop`` writes what is left and ends it. When the store cannot take a batch (an outage, a lock held
    past the wait) it is kept and tried again every ``retry_seconds``; at most ``max_pending`` uses
    of each kind are kept, and those beyond are dropped and counted.
    """

    def __init__(
        self, engine: Engine, *, interval: float = 0.2, retry_seconds: float = 2.0, max_pending: int = 100_000
    ) -> None:
        self.engine = engine
        self.interval = interval
        self.retry_seconds = retry_seconds
        self.max_pending = max_pending
        self._tokens: dict[tuple[int, str | None], TokenUse] = {}
        self._sessions: dict[int, SessionSeen] = {}
        self._written: dict[tuple[int, str | None], datetime] = {}  # each token and address: last written
        self._lock = threading.Lock()
        self._noted = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    # --- what the requests call ---------------------------------------------------------------

    def token_used(self, _store: Connectable, use: TokenUse) -> None:
        key = (use.token_id, use.ip)
        written = self._written.get(key)
        if written is not None and key not in self._tokens and timedelta(0) <= use.at - written < REWRITE_AFTER:
            return
        self._note(self._tokens, key, use)

    def session_seen(self, _store: Connectable, seen: SessionSeen) -> None:
        self._note(self._sessions, seen.session_id, seen)

    def _note(self, pending: dict[_Key, _Noted], key: _Key, value: _Noted) -> None:
        with self._lock:
            if key not in pending and len(pending) >= self.max_pending:
                metrics.count_usage("dropped")
                return
            pending[key] = value
        self._noted.set()

    # --- the writer's thread ------------------------------------------------------------------

    def start(self) -> UsageWriter:
        self._thread = threading.Thread(target=self._run, name="tokensmith-usage-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Write what is still pending, then end the thread (within ``timeout`` seconds)."""
        self._stopping.set()
        self._noted.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._noted.wait()
            self._stopping.wait(self.interval)  # let a batch gather
            if not self.write_pending() and not self._stopping.is_set():
                self._stopping.wait(self.retry_seconds)
        self.write_pending()

    def write_pending(self) -> bool:
        """Write every use noted so far in one transaction; False when the store refused it."""
        with self._lock:
            tokens, self._tokens = self._tokens, {}
            seen, self._sessions = self._sessions, {}
            self._noted.clear()
        if not tokens and not seen:
            return True
        try:
            with connection_to(self.engine) as connection:
                write_token_uses(connection, list(tokens.values()))
                write_sessions_seen(connection, list(seen.values()))
        except StoreUnavailable as error:
            self._keep(tokens, seen)
            if not self._failing:
                log.warning(
                    "cannot write last-used times yet (%s); %d kept, retrying every %.0f s",
                    type(error.__cause__).__name__,
                    len(tokens) + len(seen),
                    self.retry_seconds,
                )
            self._failing = True
            return False
        except Exception:
            metrics.count_usage("dropped", len(tokens) + len(seen))
            log.exception("last-used times could not be written and were dropped")
            return True
        self._remember_written(tokens.values())
        if self._failing:
            log.info("last-used times are written again")
        self._failing = False
        metrics.count_usage("written", len(tokens) + len(seen))
        return True

    def _remember_written(self, uses: Iterable[TokenUse]) -> None:
        with self._lock:
            if len(self._written) >= self.max_pending:  # bounded: forgetting costs a write, no more
                self._written.clear()
            for use in uses:
                self._written[(use.token_id, use.ip)] = use.at

    def _keep(self, tokens: dict[tuple[int, str | None], TokenUse], seen: dict[int, SessionSeen]) -> None:
        """Put a batch back, under what was noted meanwhile (which is later)."""
        with self._lock:
            self._tokens = {**tokens, **self._tokens}
            self._sessions = {**seen, **self._sessions}
            self._noted.set()
