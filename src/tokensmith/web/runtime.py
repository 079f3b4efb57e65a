"""What every request shares: settings, the store, the keys; and the per-request session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from tokensmith.authentication import Authenticator
from tokensmith.config import Settings
from tokensmith.identity_provider import OpenIdProvider
from tokensmith.db import create_store_engine, for_single_statements, session_factory, unit_of_work
from tokensmith.server_keys import ServerKeys, load_server_keys

T = TypeVar("T")


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    # The same pool, for token checks and health checks: see db.for_single_statements.
    statement_engine: Engine
    sessions: sessionmaker[Session]
    keys: ServerKeys
    authenticator: Authenticator
    identity_provider: OpenIdProvider | None = None

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        keys = load_server_keys(settings)
        engine = create_store_engine(settings)
        return cls(
            settings=settings,
            engine=engine,
            statement_engine=for_single_statements(engine),
            sessions=session_factory(engine),
            keys=keys,
            authenticator=Authenticator(settings, keys),
            identity_provider=(
                OpenIdProvider(settings.identity_provider, settings.oidc_redirect_uri)
                if settings.identity_provider else None
            ),
        )


    @property
    def store_is_local(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    async def run_on_store(self, work: Callable[..., T], *args: object) -> T:
        """Run a short piece of store work from async code.

        On SQLite (a local file; a token check reads for tens of microseconds, and WAL readers
        never wait) it runs right here on the event loop: the trip to the threadpool and the
        handing over of the GIL cost more than the work, about 40% of the throughput. Any
        other store is across a network: its waits must not block the loop.
        """
        if self.store_is_local:
            return work(*args)
        return await run_in_threadpool(work, *args)


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_db(request: Request) -> Iterator[Session]:
    """The request's one transaction, committed at the edge once the route has returned.

    Declared with ``scope="function"`` so the commit happens before the response is sent:
    a client never sees success for a write that did not land.
    """
    with unit_of_work(get_runtime(request).sessions) as session:
        yield session


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


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
