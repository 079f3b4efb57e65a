"""The ASGI application: pages, REST API, health and metrics on one server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from tokensmith import __version__
from tokensmith.config import Settings, load_settings
from tokensmith.web import api, device, git, maven, monitoring, oidc, packages, pages, scim, security, studio
from tokensmith.web.bodies import BodyLimit
from tokensmith.web.errors import install_error_handlers
from tokensmith.web.runtime import Runtime

STATIC_DIR = Path(__file__).parent / "static"
# Every route of the server, in the order they are matched.
ROUTERS = (api.router, monitoring.router, git.router, maven.router, studio.router, packages.router, scim.router,
           pages.router, security.router, oidc.router, device.router)
# Every body a route reads is small (a form, a leak report of at most 100 tokens, a release
# request): past this it is a 413 before it is parsed. Git's pushes have a limit of their own.
MAX_BODY = 64 * 1024

DESCRIPTION = """
Personal access tokens for the platform. Authenticate with HTTP Basic (your username and a
token as the password — what git, Maven, Nexus and curl send) or `Authorization: Bearer TOKEN`.
Passwords are refused unless the server's password policy says otherwise.
"""


class StaticAssets(StaticFiles):
    """The site's CSS and JS; a method other than GET or HEAD is a 405 that says which are."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(status_code=405, headers={"Allow": "GET, HEAD"})
        return await super().get_response(path, scope)


def create_app(settings: Settings | None = None) -> FastAPI:
    runtime = Runtime.start(settings or load_settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        runtime.stop()

    app = FastAPI(title="Tokensmith", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.add_middleware(BodyLimit, default=MAX_BODY, by_prefix={"/git/": git.MAX_PUSH})
    if runtime.settings.trusted_proxies:
        # Who the client is, from X-Forwarded-For, only when the request comes from a proxy we
        # trust: anyone else could set it and reset the sign-in throttle, or aim it at a victim.
        app.add_middleware(ProxyHeadersMiddleware,
                           trusted_hosts=[str(network) for network in runtime.settings.trusted_proxies])
    app.state.runtime = runtime
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticAssets(directory=STATIC_DIR), name="static")
    return app
