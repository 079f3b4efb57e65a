"""Domain exceptions to HTTP answers, in one place.

Non-browser routes get JSON ``{"error": CODE, "message": WORDS}``; pages get an HTML page.
A 401 always carries the Basic challenge, since git and Maven only send credentials after it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from tokensmith.errors import (
    AddressNotAllowed,
    AuthenticationFailed,
    AuthenticationRequired,
    BodyTooLarge,
    Conflict,
    CsrfFailed,
    GitUnavailable,
    HeaderTooLarge,
    IdentityProviderUnavailable,
    InsufficientScope,
    InvalidInput,
    IssuerUnavailable,
    NotFound,
    NotPermitted,
    ScanningKeysUnavailable,
    SignInRejected,
    StoreUnavailable,
    TokensmithError,
    TooManyAttempts,
)
from tokensmith.web import nuxeo
from tokensmith.web.auth import SecondFactorRequired, SignInRequired
from tokensmith.web.bodies import LIMIT_SCOPE_KEY, problems_of
from tokensmith.web.templates import render

log = logging.getLogger("tokensmith.web")

CHALLENGE = {"WWW-Authenticate": 'Basic realm="tokensmith", charset="UTF-8"'}
STATUS = {
    TooManyAttempts: 429,
    AuthenticationRequired: 401,
    AuthenticationFailed: 401,
    NotPermitted: 403,
    CsrfFailed: 403,
    NotFound: 404,
    Conflict: 409,
    BodyTooLarge: 413,
    InvalidInput: 422,
    HeaderTooLarge: 431,
    StoreUnavailable: 503,
    GitUnavailable: 503,
    IssuerUnavailable: 503,
    ScanningKeysUnavailable: 503,
    IdentityProviderUnavailable: 502,
    SignInRejected: 400,
}
# Paths whose clients are programs; everything else is a page for a person.
# (The reference's addresses under /nuxeo/ that are Tokensmith's own routes reach here with the
# route's own path, web/edge.py; the rest, its token route, answers plain text as the reference.)
PLAIN_TEXT_PREFIXES = ("/git/", nuxeo.ROOT)
MACHINE_PREFIXES = (
    "/api/",
    "/git/",
    "/maven/",
    "/packages/",
    "/studio/",
    "/scim/",
    "/healthz",
    "/metrics",
    "/login/device/",
    nuxeo.ROOT,
)


def status_of(error: TokensmithError) -> int:
    for kind, status in STATUS.items():
        if isinstance(error, kind):
            return status
    return 400


def wants_page(request: Request) -> bool:
    return not request.url.path.startswith(MACHINE_PREFIXES)


def error_response(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None, **fields: object
) -> Response:
    headers = {**(headers or {}), **(CHALLENGE if status == 401 and not wants_page(request) else {})}
    if status == 503:
        headers["Retry-After"] = "5"
    if wants_page(request):
        return render(request, "error.html", {"status": status, "message": message}, status=status, headers=headers)
    if request.url.path.startswith(PLAIN_TEXT_PREFIXES):
        # git and Maven print a text/plain error body to the person ("remote: ..."); JSON they drop.
        return PlainTextResponse(message + "\n", status_code=status, headers=headers)
    return JSONResponse({"error": code, "message": message, **fields}, status_code=status, headers=headers)


async def handle_domain_error(request: Request, error: TokensmithError) -> Response:
    message = error.full_message if isinstance(error, AuthenticationFailed) else error.message
    if isinstance(error, AuthenticationFailed):
        log.info("authentication refused: %s on %s %s", error.reason, request.method, request.url.path)
    elif isinstance(error, StoreUnavailable):
        log.warning("store unavailable on %s %s: %s", request.method, request.url.path, type(error.__cause__).__name__)
    headers, fields = limit_details(error)
    response = error_response(request, status_of(error), error.code, message, headers, **fields)
    if isinstance(error, TooManyAttempts):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def limit_details(error: TokensmithError) -> tuple[dict[str, str], dict[str, object]]:
    """What a token's limits refusal carries beside its words: the scopes needed and held, as
    GitHub's X-Accepted-OAuth-Scopes / X-OAuth-Scopes headers; the address seen."""
    if isinstance(error, InsufficientScope):
        return (
            {"X-Tokensmith-Scopes": ", ".join(error.held), "X-Accepted-Scopes": error.needed},
            {"needed_scope": error.needed, "token_scopes": list(error.held)},
        )
    if isinstance(error, AddressNotAllowed):
        return {}, {"address": error.address}
    return {}, {}


async def handle_sign_in_required(request: Request, _error: SignInRequired) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


async def handle_second_factor_required(request: Request, _error: SecondFactorRequired) -> Response:
    return RedirectResponse("/settings/security", status_code=303)


async def handle_validation_error(request: Request, error: RequestValidationError) -> Response:
    return error_response(
        request, 422, "invalid_input", f"The request is not valid: {problems_of(error.errors(), skip=1)}."
    )


async def handle_http_error(request: Request, error: StarletteHTTPException) -> Response:
    """Routing's and the framework's own refusals, in words; a 405 keeps its Allow header."""
    status = error.status_code
    if status == 413:
        return error_response(request, 413, BodyTooLarge.code, body_too_large(request))
    messages = {
        404: nuxeo.nothing_here(request.url.path) if request.url.path.startswith(nuxeo.ROOT) else "Nothing here.",
        405: f"{request.method[:10]} is not allowed here.",
    }
    headers = dict(error.headers or {})
    if status == 405:
        headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
        messages[405] += f" Allowed: {headers['Allow']}."
    return error_response(request, status, "http_error", messages.get(status, str(error.detail)), headers)


def body_too_large(request: Request) -> str:
    limit = request.scope.get(LIMIT_SCOPE_KEY)
    at_most = f" (at most {limit // 1024:,} KiB)" if isinstance(limit, int) else ""
    return f"The request body is larger than {request.method[:10]} {request.url.path[:100]} accepts{at_most}."


METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path, asked of the routes themselves: Starlette's
    own 405 names only those of the first route that matched (My Tokens' GET and POST are two).
    A mount (the static files) matches any method; it names its own."""
    routes = [route for route in request.app.router.routes if not isinstance(route, Mount)]
    return ", ".join(
        method
        for method in METHOD_ORDER
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    )


async def handle_unexpected(request: Request, error: Exception) -> Response:
    log.error("unexpected %s on %s %s", type(error).__name__, request.method, request.url.path, exc_info=error)
    return error_response(
        request,
        500,
        "internal_error",
        "Something went wrong on our side. Try again; if it persists, tell an administrator.",
    )


# Every kind of error and who answers it; anything else is unexpected (a 500).
HANDLERS: dict[type[Exception], Callable[[Request, Any], Awaitable[Response]]] = {
    TokensmithError: handle_domain_error,
    SignInRequired: handle_sign_in_required,
    SecondFactorRequired: handle_second_factor_required,
    RequestValidationError: handle_validation_error,
    StarletteHTTPException: handle_http_error,
}


def install_error_handlers(app: FastAPI) -> None:
    for kind, handler in HANDLERS.items():
        app.add_exception_handler(kind, handler)
    app.add_exception_handler(Exception, handle_unexpected)


async def answer_error(request: Request, error: Exception) -> Response:
    """The answer to ``error``, as the handlers installed on the application would give it:
    for the routes served before the framework's dispatch (web/edge.py)."""
    handler = next((handler for kind, handler in HANDLERS.items() if isinstance(error, kind)), handle_unexpected)
    return await handler(request, error)
