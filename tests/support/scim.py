"""A real server with SCIM provisioning on, and the identity provider's client of it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.ledger import remember
from tests.support.servers import LiveServer

SCIM_JSON = "application/scim+json"


def provisioning_secret() -> str:
    return remember("scim-" + secrets.token_urlsafe(32))


@contextmanager
def provisioning_server(data_dir: Path, secret: str, name: str) -> Iterator[LiveServer]:
    """A server started with TOKENSMITH_SCIM_TOKEN set, stopped by its pid afterwards."""
    live = LiveServer(data_dir, env={"TOKENSMITH_SCIM_TOKEN": secret}, name=name)
    live.start()
    try:
        yield live
    finally:
        live.stop()


@contextmanager
def provider_client(server: LiveServer, secret: str) -> Iterator[httpx.Client]:
    """The identity provider's SCIM client: the base URL and the Bearer secret."""
    with httpx.Client(
        base_url=f"{server.base_url}/scim/v2", timeout=30, headers={"Authorization": f"Bearer {secret}"}
    ) as client:
        yield client
