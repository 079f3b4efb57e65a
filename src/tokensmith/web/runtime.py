"""What every request shares: settings, the store, the keys; and how requests reach the store.

Three ways in, so that no request ever waits on the event loop for the store and none can hold
up another's way to it:
- token checks and health pings (``check_on_store``): on SQLite right on the event loop, on a
  connection of the loop's own (WAL readers never wait for a writer); elsewhere in a thread, on
  a pool of their own — but for a token check's lookup on PostgreSQL, read on the event loop
  on asynchronous connections (``reads``, store/postgresql.AsyncReads), the check then run
  on its answer;
- units of work (``get_db`` for a route, ``run_unit`` for one step of work): in threads, at most
  as many at once as the pool has connections (``admission``), so that a unit never waits for a
  connection while others that hold one wait for a thread;
- *last used* and *last seen*: noted in memory and written by one thread behind the requests
  (``usage``, see usage.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import ipaddress
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
from fastapi import Request
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from tokensmith import metrics
from tokensmith.accounts import passwords
from tokensmith.accounts.authentication import Authenticator
from tokensmith.accounts.identity_provider import OpenIdProvider
from tokensmith.accounts.throttle import SignInThrottle, ThrottlePruner
from tokensmith.audit import mail, notices
from tokensmith.backups import revocation_journal
from tokensmith.config import Settings
from tokensmith.errors import StoreUnavailable
from tokensmith.housekeeping import Periodic
from tokensmith.store.database import (
    CHECK_POOL,
    SESSION_POOL,
    Pool,
    connection_to,
    create_check_engine,
    create_store_engine,
    end_unit,
    is_outage,
    session_factory,
    unit_of_work,
)
from tokensmith.store.postgresql import AsyncReads
from tokensmith.store.server_keys import ServerKeys, load_server_keys
from tokensmith.store.sqlite import WalCheckpointer
from tokensmith.tokens.exchange_batches import ExchangeBatches
from tokensmith.tokens.oidc_issuers import IssuerDirectory
from tokensmith.tokens.secret_scanning import PublishedKeys
from tokensmith.tokens.sweep import Sweep
from tokensmith.tokens.usage import UsageWriter
from tokensmith.tokens.workload_identity import SpentIdTokensPruner

T = TypeVar("T")


@dataclass
class Runtime:
    settings: Settings
    engine: Engine  # the units of work's pool
    check_engine: Engine  # token checks and health pings: see db.create_check_engine
    sessions: sessionmaker[Session]
    keys: ServerKeys
    authenticator: Authenticator
    usage: UsageWriter
    admission: asyncio.Semaphore
    scanning_keys: PublishedKeys  # GitHub's secret-scanning keys (tokens/secret_scanning.py)
    identity_provider: OpenIdProvider | None = None
    housekeeping: list[Periodic] = field(default_factory=list)  # jobs on a timer, see housekeeping.py
    mail_engine: Engine | None = None  # the mail sender's and the sweep's (mail.py, sweep.py), when either runs
    reads: AsyncReads | None = None  # token lookups on the event loop (PostgreSQL), see the module
    # The CI issuers' keys this process has needed (workload identity, oidc_issuers.py).
    issuers: IssuerDirectory = field(default_factory=IssuerDirectory)
    _loop_connection: Connection | None = field(default=None, repr=False)  # see check_connection
    _exchanges: ExchangeBatches | None = field(default=None, repr=False)  # see exchanges
    _checkers: ThreadPoolExecutor | None = field(default=None, repr=False)  # see check_on_store
    _batch_writer: ThreadPoolExecutor | None = field(default=None, repr=False)  # see run_batch

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        keys = load_server_keys(settings)
        passwords.use(settings.password_hashing)
        metrics.worker_started()
        # On SQLite, checkpoints are the WalCheckpointer's: no request waits for the disk.
        engine = create_store_engine(settings, checkpoints=False, bounded=True)
        # One connection each for the threads behind the requests: the usage writer, the
        # throttle's pruner, the pruner of the ID tokens exchanged and, on SQLite, the checkpointer.
        usage = UsageWriter(
            create_store_engine(settings, pool=Pool(size=4, overflow=0), checkpoints=False, bounded=True)
        ).start()
        throttle = SignInThrottle(keys)
        local = engine.dialect.name == "sqlite"
        mail_engine, mail_jobs = _mail_jobs(settings)
        revocation_journal.listen(settings)  # every revocation also apart from the store, for a restore
        check_engine = create_check_engine(settings)
        return cls(
            settings=settings,
            engine=engine,
            check_engine=check_engine,
            sessions=session_factory(engine),
            keys=keys,
            authenticator=Authenticator(settings, keys, throttle=throttle, usage=usage),
            usage=usage,
            admission=asyncio.Semaphore(SESSION_POOL.capacity),
            identity_provider=(
                OpenIdProvider(settings.identity_provider, settings.oidc_redirect_uri)
                if settings.identity_provider
                else None
            ),
            scanning_keys=PublishedKeys(settings.secret_scanning_keys_url),
            housekeeping=[
                ThrottlePruner(throttle, usage.engine).start(),
                SpentIdTokensPruner(usage.engine).start(),
                *([WalCheckpointer(usage.engine).start()] if local else []),
                *mail_jobs,
            ],
            mail_engine=mail_engine,
            reads=None if local else AsyncReads(check_engine, CHECK_POOL.capacity),
        )

    def stop(self) -> None:
        """Write the last uses still pending, then close every connection."""
        self.usage.stop()
        for job in self.housekeeping:
            job.stop()
        if self._loop_connection is not None:
            self._loop_connection.close()
        for executor in (self._checkers, self._batch_writer):
            if executor is not None:
                executor.shutdown(wait=True)
        if self.reads is not None:
            self.reads.close()
        for engine in (self.engine, self.check_engine, self.usage.engine, self.mail_engine):
            if engine is not None:
                engine.dispose()

    @property
    def store_is_local(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    async def check_on_store(self, work: Callable[..., T], *args: object) -> T:
        """Run a read of a statement or two (a token check, a ping) on ``check_engine``.

        On SQLite (a local file; a token check reads for tens of microseconds, and WAL readers
        never wait) it runs right here on the event loop: the trip to the threadpool and the
        handing over of the GIL cost more than the work, about 40% of the throughput. It must
        not write there. Any other store is across a network: its waits must not block the loop.
        """
        if self.store_is_local:
            return work(*args)
        # Threads of its own, as many as the check pool has connections (a check never waits
        # for one), reached with the loop's run_in_executor: half the CPU of AnyIO's worker
        # threads, which run_in_threadpool goes through (bench/postgres_check.py: 40 against
        # 81 µs a trip, a token check 260 against 347 µs, at 20 concurrent checks).
        if self._checkers is None:
            self._checkers = ThreadPoolExecutor(max_workers=CHECK_POOL.capacity, thread_name_prefix="token-check")
        call = functools.partial(contextvars.copy_context().run, work, *args)
        return await asyncio.get_running_loop().run_in_executor(self._checkers, call)

    def check_connection(self) -> AbstractContextManager[Connection]:
        """The connection a token check or a ping reads on, from ``check_on_store``.

        On SQLite, the event loop's own connection, opened once and kept: checking it out of
        the pool and back in cost as much as the lookup itself. Only single-row reads run on it
        (a check's lookup by digest, ``SELECT 1``), each stepped to its end by the driver, so it
        never holds a read snapshot from one request to the next: a revocation committed
        anywhere is seen by the very next check. Elsewhere, a connection of the check pool for
        the one statement, in the calling thread.
        """
        if not self.store_is_local:
            return connection_to(self.check_engine)
        if self._loop_connection is None:
            self._loop_connection = self.check_engine.connect()
        return contextlib.nullcontext(self._loop_connection)

    @property
    def exchanges(self) -> ExchangeBatches:
        """The CI exchanges checked on the loop, written in batches (tokens/exchange_batches.py)."""
        if self._exchanges is None:
            self._exchanges = ExchangeBatches(
                self.run_batch,
                self.keys,
                prefix=self.settings.token_prefix,
                minutes=self.settings.oidc_token_minutes,
            )
        return self._exchanges

    async def run_unit(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` as one unit of work in one trip to a thread, once admitted."""
        async with self.admission:
            return await run_in_threadpool(_in_unit_of_work, self.sessions, work)

    async def run_batch(self, work: Callable[[Session], T]) -> T:
        """``run_unit`` for the exchanges' batches, which are written one at a time: on a thread of
        their own, reached with the loop's run_in_executor (half the CPU of AnyIO's worker threads
        a trip, as ``check_on_store`` found), admitted as any unit."""
        async with self.admission:
            if self._batch_writer is None:
                self._batch_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exchange-batches")
            call = functools.partial(contextvars.copy_context().run, _in_unit_of_work, self.sessions, work)
            return await asyncio.get_running_loop().run_in_executor(self._batch_writer, call)


def _mail_jobs(settings: Settings) -> tuple[Engine | None, list[Periodic]]:
    """With mail on: its sender; with mail on or unused tokens retired, the sweep (expiry
    reminders, unused tokens: tokens/sweep.py). Threads on a small engine of their own."""
    mailing = notices.listen(settings) is not None
    if not mailing and settings.revoke_unused_after_days is None:
        return None, []
    engine = create_store_engine(settings, pool=Pool(size=2, overflow=0), checkpoints=False, bounded=True)
    sender = [mail.MailSender(engine, settings.mail).start()] if settings.mail is not None else []
    return engine, [*sender, Sweep(engine, settings).start()]


def _in_unit_of_work(sessions: sessionmaker[Session], work: Callable[[Session], T]) -> T:
    with unit_of_work(sessions) as session:
        return work(session)


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime  # set once by create_fastapi_app
    return runtime


async def get_db(request: Request) -> AsyncIterator[Session]:
    """The request's one transaction, committed at the edge once the route has returned.

    Declared with ``scope="function"`` so the commit happens before the response is sent:
    a client never sees success for a write that did not land. Admitted first (see the module's
    docstring). Its end (commit or rollback, then close) is one trip to a thread that waits for
    no other (a limiter of its own, as FastAPI gives a dependency's exit), since the unit holds
    its connection, and on SQLite perhaps its turn to write, until then.
    """
    runtime = get_runtime(request)
    async with runtime.admission:
        session = runtime.sessions()
        try:
            yield session
        except BaseException as error:
            with anyio.CancelScope(shield=True):  # a client that left still gets its unit undone
                await _end_in_thread(session, succeeded=False)
            if isinstance(error, Exception) and is_outage(error):
                raise StoreUnavailable() from error
            raise
        await _end_in_thread(session, succeeded=True)


async def _end_in_thread(session: Session, *, succeeded: bool) -> None:
    await anyio.to_thread.run_sync(
        functools.partial(end_unit, session, succeeded=succeeded), limiter=anyio.CapacityLimiter(1)
    )


def client_ip(request: Request) -> str | None:
    """The client's address, as the socket (or a trusted proxy) says; None if it is no address."""
    host = request.client.host if request.client else None
    return host if host is not None and _is_address(host) else None


@functools.lru_cache(maxsize=4096)
def _is_address(host: str) -> bool:
    if len(host) > 45:  # the longest an address is written (the store keeps 45); a zone id can pass it
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def client_agent(request: Request) -> str | None:
    agent = request.headers.get("user-agent")
    if not agent:
        return None
    if not agent.isprintable():
        agent = "".join(char for char in agent if char.isprintable())
    return agent[:200]


def has_encoded_separators(request: Request) -> bool:
    """Whether the raw path hides a '/', '\\' or NUL behind percent-encoding: such paths mean
    something else to every proxy on the way, so repositories refuse them outright."""
    raw = request.scope.get("raw_path", b"").lower()
    return any(encoded in raw for encoded in (b"%2f", b"%5c", b"%00"))
