"""The ASGI application: pages, REST API, health and metrics on one server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, cast

from fastapi import FastAPI
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from tokensmith import __version__
from tokensmith.config import Settings, load_settings
from tokensmith.web import (
    api,
    api_docs,
    device,
    maven,
    monitoring,
    nuxeo,
    oidc,
    packages,
    pages,
    scim,
    second_step,
    secret_scanning,
    security,
    security_settings,
    studio,
    workload_identity,
)
from tokensmith.web.access_log import ACCESS_LOG
from tokensmith.web.assets import Assets
from tokensmith.web.bodies import BodyLimit
from tokensmith.web.edge import Edge
from tokensmith.web.errors import install_error_handlers
from tokensmith.web.git import routes as git_routes
from tokensmith.web.runtime import Runtime
from tokensmith.web.templates import use_assets

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application

STATIC_DIR = Path(__file__).parent / "static"
# Every route of the server, in the order they are matched.
ROUTERS = (
    api.router,
    workload_identity.router,
    secret_scanning.router,
    monitoring.router,
    git_routes.router,
    maven.router,
    studio.router,
    packages.router,
    scim.router,
    nuxeo.router,
    pages.router,
    workload_identity.pages_router,
    security.router,
    security_settings.router,
    second_step.router,
    oidc.router,
    device.router,
    api_docs.router,
)
# Every body a route reads is small (a form, a leak report of at most 100 tokens, a release
# request): past this it is a 413 before it is parsed. Git's pushes have a limit of their own, and
# so have GitHub's secret-scanning reports (up to 1,000 tokens).
MAX_BODY = 64 * 1024

DESCRIPTION = """
Personal access tokens for the platform. Authenticate with HTTP Basic (your username and a
token as the password — what git, Maven, Nexus and curl send) or `Authorization: Bearer TOKEN`.
Passwords are refused unless the server's password policy says otherwise.
"""


def create_app(settings: Settings | None = None) -> ASGIApp:
    """The whole server: ``Edge`` (web/edge.py) in front of the FastAPI application, behind
    the proxy headers' reader when a proxy is trusted."""
    app = create_fastapi_app(settings)
    static = Assets(STATIC_DIR, api_docs.SWAGGER_UI)
    use_assets(static)
    served: ASGIApp = Edge(app, static, addresses=nuxeo.ADDRESSES, body_limit=MAX_BODY)
    trusted = app.state.runtime.settings.trusted_proxies
    if trusted:
        # Who the client is, from X-Forwarded-For, only when the request comes from a proxy we
        # trust: anyone else could set it and reset the sign-in throttle, or aim it at a victim.
        # (uvicorn spells ASGI's messages as TypedDicts, Starlette as mappings: one interface, two types.)
        proxied = ProxyHeadersMiddleware(cast("ASGI3Application", served), trusted_hosts=[str(net) for net in trusted])
        served = cast(ASGIApp, proxied)
    return served


def create_fastapi_app(settings: Settings | None = None) -> FastAPI:
    runtime = Runtime.start(settings or load_settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        runtime.stop()
        ACCESS_LOG.flush()  # the last answers' lines, before the process exits

    # /docs is Swagger UI from the package (web/api_docs.py); ReDoc would load from CDNs.
    app = FastAPI(
        title="Tokensmith",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.add_middleware(
        BodyLimit,
        default=MAX_BODY,
        by_prefix={"/git/": git_routes.MAX_PUSH, secret_scanning.PATH: secret_scanning.MAX_BODY},
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    for router in ROUTERS:
        # The routes themselves, not the router: FastAPI matches an included router's routes
        # through a layer of its own on every request (about 10 µs for a route deep in the list).
        # Each route already carries its router's prefix, tags and dependencies.
        app.router.routes.extend(router.routes)
    return app
