"""Request bodies: within a size, and for JSON read only once the caller is known, parsed safely.

``BodyLimit`` (a middleware) holds every body to the limit of its path: a body past it is a 413
as soon as the route reads it, and only then, so that a route that checks credentials first
answers a stranger 401 whatever the body. The error says the limit, in the route's own form
(JSON, a page, git's plain text, SCIM's document).

FastAPI reads and validates a route's body parameters before its dependencies run, so a route
that declares ``body: Model`` parses whatever a stranger sends before it knows who sent it.
These routes declare ``Annotated[Model, json_body(Model)]`` instead, a dependency that comes
after the credential check (``authenticated_json_body``), or stands alone where a route takes no
credentials (the leak report). The body is read within its limit, parsed by orjson, which refuses nesting past 1,024
levels and integers past 64 bits instead of recursing or computing, and validated strictly;
every refusal is a 422 in words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import orjson
from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokensmith.errors import InvalidInput
from tokensmith.identity import Identity
from tokensmith.web.auth import Requires

M = TypeVar("M", bound=BaseModel)


def problems_of(errors: Iterable[Mapping[str, Any]], skip: int = 0) -> str:
    """Validation errors as one line a person can act on: where, and what is wrong. Never the
    value sent (it may be a secret)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'][skip:]) or 'body'}: {problem['msg']}" for problem in errors
    )


async def read_json(request: Request, model: type[M]) -> M:
    body = await request.body()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidInput(
            f"The body must be JSON like {example_of(model)} (at most 1,024 levels deep, integers of at most 64 bits)."
        ) from None
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as error:
        raise InvalidInput(
            f"The request is not of the right shape ({problems_of(error.errors())}): send {example_of(model)}."
        ) from None


def example_of(model: type[BaseModel]) -> str:
    extra = model.model_config.get("json_schema_extra")  # ours are dicts; pydantic allows a function too
    example = extra.get("example") if isinstance(extra, dict) else None
    return orjson.dumps(example).decode() if example else "{...}"


def json_body(model: type[M]) -> Any:
    """A body read after nothing: for a route that takes no credentials."""

    async def read(request: Request) -> M:
        return await read_json(request, model)

    return Depends(read)


def authenticated_json_body(model: type[M], requirement: Requires) -> Any:
    """A body read only once the client's credentials have been checked against the route's
    ``requirement`` (the same dependency as the route's, so checked once): a stranger's body is
    never parsed, whatever it holds."""

    async def read(request: Request, _identity: Identity = Depends(requirement)) -> M:  # noqa: B008
        return await read_json(request, model)

    return Depends(read)


def documented(model: type[BaseModel]) -> dict[str, Any]:
    """What the route's ``openapi_extra`` needs for /docs to show the body it reads itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


# --- the size of every body --------------------------------------------------------------------------

LIMIT_SCOPE_KEY = "tokensmith.body_limit"


class LimitExceeded(HTTPException):
    """Raised from ``receive`` when a body passes its limit: FastAPI lets HTTP errors through its
    own body parsing, and web/errors.py (or SCIM's route) answers it."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"at most {limit:,} bytes")
        self.limit = limit


def declared_length(headers: Headers) -> int | None:
    """The length a request's Content-Length header declares, when it declares a number (the
    HTTP parser already refuses one of more than 19 digits)."""
    value = headers.get("content-length", "")
    return int(value) if value.isdigit() and len(value) < 40 else None


class BodyLimit:
    """Every request body within ``default`` bytes, or the limit of the first matching prefix
    in ``by_prefix`` (git's pushes). A declared Content-Length past it fails the first read;
    a body sent in chunks fails the read that passes it."""

    def __init__(self, app: ASGIApp, *, default: int, by_prefix: Mapping[str, int]) -> None:
        self.app = app
        self.default = default
        self.by_prefix = by_prefix

    def limit_of(self, path: str) -> int:
        return next((limit for prefix, limit in self.by_prefix.items() if path.startswith(prefix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, within(scope, receive, self.limit_of(scope["path"])), send)


def within(scope: Scope, receive: Receive, limit: int) -> Receive:
    """``receive``, failing with LimitExceeded past ``limit`` bytes (declared or sent): BodyLimit's,
    and the routes served before the framework's dispatch (web/edge.py)."""
    scope[LIMIT_SCOPE_KEY] = limit
    declared = declared_length(Headers(scope=scope))
    too_large = declared is not None and declared > limit
    received = 0

    async def limited() -> Message:
        nonlocal received
        if too_large:
            raise LimitExceeded(limit)
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise LimitExceeded(limit)
        return message

    return limited
