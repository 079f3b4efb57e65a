"""The requests every client makes many times a second, answered before the framework's dispatch.

FastAPI's way to a route — its middleware (error pages, telemetry, its body limit, the exit
stack), a linear scan of the routes, the dependency solver, the response's validation — costs
about as much as the route's whole work does on the token path (docs/benchmarks.md has the
profile). Three kinds of request do not need any of it:

- the routes marked ``@at_the_edge``: a GET or a POST of a fixed path whose endpoint takes
  the ``Request`` and returns its ``Response``: ``GET /api/v1/me``, which every client calls to
  check its token (``/healthz`` is not one: a load balancer asks every few seconds, and it is
  the yardstick of the token route's ratio in docs/benchmarks.md), and ``POST
  /api/v1/oidc/exchange``, a CI job's exchange (web/workload_identity.py). A POST's body is
  held to the application's limit (``body_limit``, as BodyLimit holds every other). The same
  route stays registered with FastAPI, where it is documented and where every other method of
  its path gets its 405;
- the static files (web/assets.py), served from memory, and ``/favicon.ico``.

It also gives the reference's addresses (``/nuxeo/git/…``, web/nuxeo.py) the path of the route
that serves them, before anything else reads the path: from then on the request is that route's
in every respect (its declaration, its body limit, its error form), for a few hundred
nanoseconds. The access log, which keeps the scope uvicorn made, shows the address as sent.

Errors are answered by the same handlers as everywhere else (web/errors.answer_error), so a
refusal reads the same whichever way the request came. Anything else goes to FastAPI.

Every answer, whichever way it came — a page, JSON, SCIM, git, Maven, a static file, an error
of the framework's own — leaves with ``X-Content-Type-Options: nosniff``: a browser shown a
JSON body or a file from a repository takes it for what its Content-Type says, never for HTML.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokensmith.web import assets
from tokensmith.web.bodies import within
from tokensmith.web.errors import answer_error

Endpoint = Callable[[Request], Awaitable[Response]]
NOSNIFF = (b"x-content-type-options", b"nosniff")


_MARKED: set[Endpoint] = set()  # route functions, which live as long as the process


def at_the_edge(endpoint: Endpoint) -> Endpoint:
    """Serve this route's GET or POST before the framework's dispatch (see the module's docstring)."""
    _MARKED.add(endpoint)
    return endpoint


def edge_routes(app: FastAPI) -> dict[tuple[str, str], Endpoint]:
    """The marked routes' methods, paths and endpoints, checked once at start to be what the
    edge can serve: a fixed path, GET or POST, and the request as the only parameter."""
    found = {}
    for route in app.router.routes:
        if not (isinstance(route, APIRoute) and route.endpoint in _MARKED):
            continue
        parameters = list(inspect.signature(route.endpoint).parameters.values())
        if (
            route.param_convertors
            or route.methods not in ({"GET"}, {"POST"})
            or len(parameters) != 1
            or parameters[0].annotation not in (Request, "Request")
        ):
            raise TypeError(
                f"{route.path} cannot be served at the edge: a GET or POST of a fixed path whose "
                "endpoint takes only the request"
            )
        found[(next(iter(route.methods)), route.path)] = route.endpoint
    return found


class Edge:
    """The outermost application: the edge's routes and the static files, else ``app``."""

    def __init__(
        self,
        app: FastAPI,
        static: assets.Assets,
        inner: ASGIApp | None = None,
        addresses: tuple[tuple[str, str], ...] = (),
        body_limit: int = 64 * 1024,
    ) -> None:
        """``addresses``: (prefix, the route's own prefix) pairs, as web/nuxeo.ADDRESSES;
        ``body_limit``: the bytes a POST served here may send (the application's, web/app.py)."""
        self.app = app
        self.inner = inner or app  # the framework, behind whatever wraps it
        self.static = static
        self.routes = edge_routes(app)
        self.addresses = addresses
        self.body_limit = body_limit
        self.aliased = tuple({prefix[: prefix.index("/", 1) + 1] for prefix, _own in addresses})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            send = without_sniffing(send)
            path = scope["path"]
            if path.startswith(self.aliased):
                scope = self._served_as(scope)
                path = scope["path"]
            if (endpoint := self.routes.get((scope["method"], path))) is not None:
                if scope["method"] == "POST":
                    receive = within(scope, receive, self.body_limit)
                request = self._request(scope, receive)
                try:
                    response = await endpoint(request)
                except Exception as error:  # noqa: BLE001 - answered as the framework's handlers would
                    response = await answer_error(request, error)
                await response(scope, receive, send)
                return
            if path.startswith(assets.PREFIX) or path in assets.AT_THE_ROOT:
                try:
                    await self.static(scope, receive, send)
                except HTTPException as error:
                    await (await answer_error(self._request(scope, receive), error))(scope, receive, send)
                return
        await self.inner(scope, receive, send)

    def _served_as(self, scope: Scope) -> Scope:
        """The scope of an address as its route's own path: a copy, so that the access log keeps
        the path as sent."""
        path = scope["path"]
        for prefix, own in self.addresses:
            if path.startswith(prefix):
                raw = scope.get("raw_path") or b""
                if raw.startswith(prefix.encode()):
                    raw = own.encode() + raw[len(prefix) :]
                return {**scope, "path": own + path[len(prefix) :], "raw_path": raw}
        return scope

    def _request(self, scope: Scope, receive: Receive) -> Request:
        scope["app"] = self.app  # as Starlette sets it: the runtime is found through it
        return Request(scope, receive)


def without_sniffing(send: Send) -> Send:
    """``send``, with every response's headers carrying ``X-Content-Type-Options: nosniff``."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), NOSNIFF]}
        await send(message)

    return sending
