"""The ASGI application: pages, REST API, health and metrics on one server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from tokensmith import __version__
from tokensmith.config import Settings, load_settings
from tokensmith.web import api, git, maven, monitoring, oidc, packages, pages, scim, studio
from tokensmith.web.errors import install_error_handlers
from tokensmith.web.runtime import Runtime

STATIC_DIR = Path(__file__).parent / "static"

DESCRIPTION = """
Personal access tokens for the platform. Authenticate with HTTP Basic (your username and a
token as the password — what git, Maven, Nexus and curl send) or `Authorization: Bearer TOKEN`.
Passwords are refused unless the server's password policy says otherwise.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    runtime = Runtime.start(settings or load_settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        runtime.stop()

    app = FastAPI(title="Tokensmith", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(api.router)
    app.include_router(monitoring.router)
    app.include_router(git.router)
    app.include_router(maven.router)
    app.include_router(studio.router)
    app.include_router(packages.router)
    app.include_router(scim.router)
    app.include_router(pages.router)
    app.include_router(oidc.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
