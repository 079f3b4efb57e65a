"""The one credential extractor: any request in, an Identity out (or a refusal).

Non-browser routes declare what they need of a token with ``Requires`` (Basic
``username:token`` as git, Maven, Nexus and curl send it, Bearer, or the reference's
``X-Authentication-Token`` header, which its tools send): a scope, and where the
project they act on is named. The extractor hands that need to the check, which holds the token
to its limits right after its lookup (token_limits.py). Pages depend on ``browser_identity``
(the session cookie). A route that declares neither is public; everything else is denied by
default. docs/scopes.md is the table of these declarations (``requirements``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from tokensmith import metrics
from tokensmith.accounts import second_factors, sessions
from tokensmith.config import Settings
from tokensmith.errors import (
    AuthenticationFailed,
    AuthenticationRequired,
    CredentialMalformed,
    HeaderTooLarge,
    NotFound,
    TokenReplaced,
)
from tokensmith.identity import Account, BasicCredentials, BearerCredentials, Credentials, Identity
from tokensmith.tokens import check as token_check
from tokensmith.tokens import format as token_format
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import limits as token_limits
from tokensmith.tokens.limits import Need, missing_project
from tokensmith.web.runtime import Runtime, client_agent, client_ip, get_db, get_runtime
from tokensmith.web.templates import SESSION_COOKIE

MAX_AUTHORIZATION_LENGTH = 4096
# The reference's header for a token alone (its command-line tool sends it): read as Bearer is.
TOKEN_HEADER = "x-authentication-token"
Db = Annotated[Session, Depends(get_db, scope="function")]


class SignInRequired(Exception):
    """A page needs a browser session; the handler redirects to the sign-in page."""


class SecondFactorRequired(Exception):
    """TOKENSMITH_REQUIRE_2FA, and the person has no second factor yet: the handler sends them
    to the Security page, the one page open to them until they add one."""


# What a person without a second factor may still open under TOKENSMITH_REQUIRE_2FA.
ENROLMENT_PATHS = ("/settings/security", "/reauthenticate/")


def presented_credentials(headers: Mapping[str, str], token_prefix: str) -> Credentials | None:
    """What a request presents: its Authorization header, else its X-Authentication-Token (a
    token alone, as Bearer carries it); None when neither is there. Never echoes their content."""
    header = headers.get("authorization")
    if header is not None or TOKEN_HEADER not in headers:
        return parse_authorization(header, token_prefix)
    token = _within_limit(headers[TOKEN_HEADER], "X-Authentication-Token").strip()
    if not token:
        raise CredentialMalformed("The X-Authentication-Token header is empty.")
    return BearerCredentials(token)


def _within_limit(header: str, name: str) -> str:
    if len(header) > MAX_AUTHORIZATION_LENGTH:
        raise HeaderTooLarge(
            f"The {name} header is {len(header):,} characters long; at most "
            f"{MAX_AUTHORIZATION_LENGTH:,} are accepted (a token is 42)."
        )
    return header


def parse_authorization(header: str | None, token_prefix: str) -> Credentials | None:
    """Read an Authorization header; None when there is none. Never echoes its content."""
    if header is None:
        return None
    scheme, _, value = _within_limit(header, "Authorization").strip().partition(" ")
    value = value.strip()
    if not scheme:
        raise CredentialMalformed("The Authorization header is empty.")
    if scheme.lower() == "basic":
        return _parse_basic(value, token_prefix)
    if scheme.lower() in ("bearer", "token"):
        if not value:
            raise CredentialMalformed("The Bearer credential is empty.")
        return BearerCredentials(value)
    raise CredentialMalformed("Unsupported authorization scheme: use Basic (username and token) or Bearer (token).")


def presents_bearer_secret(header: str | None, expected: str) -> bool:
    """Whether an Authorization header is ``Bearer`` and this deployment's secret (SCIM's,
    /metrics'), compared in constant time: digests first, so that not even the length shows."""
    if header is None or len(header) > MAX_AUTHORIZATION_LENGTH:
        return False
    scheme, _, presented = header.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        hashlib.sha256(presented.strip().encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def _parse_basic(value: str, token_prefix: str) -> Credentials:
    if not value:
        raise CredentialMalformed("The Basic credentials are empty.")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise CredentialMalformed("The Basic credentials are not valid base64.") from None
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialMalformed("The Basic credentials are not valid UTF-8.") from None
    username, colon, secret = decoded.partition(":")
    if not colon:
        raise CredentialMalformed("The Basic credentials have no ':' between the username and the token.")
    if not secret and token_format.looks_like_token(username, token_prefix):
        return BearerCredentials(username)  # `curl -u TOKEN:`, as GitHub allows
    if not secret:
        raise CredentialMalformed("The Basic credentials carry an empty password.")
    return BasicCredentials(username, secret)


def _check_token(
    runtime: Runtime, credentials: Credentials, ip: str | None, agent: str | None, need: Need | None
) -> Identity:
    return runtime.authenticator.check(runtime.check_connection, credentials, ip=ip, agent=agent, need=need)


async def _checked_token(
    runtime: Runtime, credentials: Credentials, ip: str | None, agent: str | None, need: Need | None
) -> Identity:
    """A token checked as the store allows: on SQLite on the event loop; on PostgreSQL its
    lookup read on the event loop (runtime.reads), then the check run on that answer, here. A
    malformed token is refused before the store is asked (check_on_store: no store then)."""
    digests = runtime.authenticator.token_digests(credentials) if runtime.reads is not None else None
    if runtime.reads is None or digests is None:
        return await runtime.check_on_store(_check_token, runtime, credentials, ip, agent, need)
    row = await runtime.reads.fetch_keyed(token_check.ASYNCPG_BY_DIGESTS, token_check.DIGEST_AT, digests)
    fetched = token_check.Fetched(digests, row)
    return runtime.authenticator.check(
        lambda: contextlib.nullcontext(fetched), credentials, ip=ip, agent=agent, need=need
    )


@dataclass(frozen=True)
class ProjectIn:
    """Where a route names the project it acts on, so that a token limited to other projects
    finds it missing: ``read`` takes it from the request line (a path parameter, a Maven path);
    ``body_field`` from the JSON body, read once the credentials hold. ``hidden`` is the
    route's own words for a project it cannot show."""

    where: str  # for the table in docs/scopes.md
    read: Callable[[Request], str | None] | None = None
    body_field: str | None = None
    hidden: Callable[[str], NotFound] = missing_project

    @classmethod
    def path(cls, parameter: str) -> ProjectIn:
        return cls(f"path: {{{parameter}}}", read=lambda request: request.path_params.get(parameter))

    @classmethod
    def body(cls, field: str) -> ProjectIn:
        return cls(f"body: {field}", body_field=field)

    async def from_body(self, request: Request) -> str | None:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return None  # the route's own parsing says what is wrong with it
        named = body.get(self.body_field) if isinstance(body, dict) else None
        return named if isinstance(named, str) else None


@dataclass(frozen=True, eq=False)
class Requires:
    """What a route needs of a token, declared on the route (a FastAPI dependency): everything
    the extractor checks comes from here.

    ``scope``: one of scopes.SCOPES, or None for any (GET /api/v1/me). A route whose need
    depends on the request (git: fetch or push) gives ``choose`` instead, and ``variants``,
    its (what, scope) pairs for the table. ``project``: where the route names its project.
    """

    scope: str | None
    project: ProjectIn | None = None
    choose: Callable[[Request], str] | None = None
    variants: tuple[tuple[str, str], ...] = ()
    _fixed: Need | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        # A need that does not depend on the request is made once (GET /api/v1/me's, the API's).
        fixed = (
            Need(self.scope) if self.choose is None and (self.project is None or self.project.read is None) else None
        )
        object.__setattr__(self, "_fixed", fixed)

    def need(self, request: Request) -> Need:
        if self._fixed is not None:
            return self._fixed
        scope = self.choose(request) if self.choose is not None else self.scope
        project = self.project
        if project is None or project.read is None:
            return Need(scope)
        return Need(scope, project.read(request), project.hidden)

    async def __call__(self, request: Request, response: Response) -> Identity:
        identity = await identify_client(request, self)
        add_deprecation_headers(response, identity, get_runtime(request).settings)
        return identity

    def rows(self) -> Iterator[tuple[str, str | None]]:
        """(what, scope) for each thing the route does: one, or its variants."""
        yield from self.variants or [("", self.scope)]


Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
# What the routes that call the extractor themselves declared, by their endpoint function.
_DECLARED: dict[Callable[..., Any], Requires] = {}


def declares(requirement: Requires) -> Callable[[Endpoint], Endpoint]:
    """For a route that calls the extractor itself (GET /api/v1/me, for speed): its declaration,
    for the table."""

    def mark(endpoint: Endpoint) -> Endpoint:
        _DECLARED[endpoint] = requirement
        return endpoint

    return mark


async def identify_client(request: Request, requires: Requires) -> Identity:
    """The identity of a non-browser client: git, Maven, Nexus, curl, the CLI.

    The check runs on every request: a token's on the check engine, with at most one trip to
    the threadpool (none on SQLite), and writing nothing itself (its *last used* goes to the
    writer behind the requests); a password's, hashed for tens of milliseconds, as a unit of
    work in a thread.
    """
    runtime = get_runtime(request)
    settings = runtime.settings
    try:
        credentials = presented_credentials(request.headers, settings.token_prefix)
    except CredentialMalformed as error:
        metrics.count_authentication("token", error.reason)
        error.advice = f"Send your username and a personal access token from {settings.tokens_page_url}"
        raise
    if credentials is None:
        raise AuthenticationRequired(
            "Authentication required: send your username and a personal access token "
            f"(HTTP Basic) or the token alone (Bearer). Create one at {settings.tokens_page_url}."
        )
    ip, agent = client_ip(request), client_agent(request)
    need = requires.need(request)
    if runtime.authenticator.is_token(credentials):
        try:
            identity = await _checked_token(runtime, credentials, ip, agent, need)
        except TokenReplaced as error:
            # A rotated token used again: whoever copied it may hold its replacement too. Written
            # in a unit of its own (the check engine never writes), committed before the 401.
            replaced = error.token_id
            await runtime.run_unit(lambda session: token_lifecycle.revoke_successors(session, replaced))
            raise
    else:

        def check_password(session: Session) -> Identity | AuthenticationFailed:
            try:
                return runtime.authenticator.authenticate(session, credentials, ip=ip, agent=agent, need=need)
            except AuthenticationFailed as error:
                return error  # returned, not raised: the unit commits the throttle's count of it

        outcome = await runtime.run_unit(check_password)
        if isinstance(outcome, AuthenticationFailed):
            raise outcome
        identity = outcome
    if identity.token is not None and requires.project is not None and requires.project.body_field:
        # Named in the body, which is read only now that the credentials hold.
        named = await requires.project.from_body(request)
        token_limits.enforce_on(identity.token, Need(None, named, requires.project.hidden), ip)
    return identity


def add_deprecation_headers(response: Response, identity: Identity, settings: Settings) -> None:
    """A password accepted under the ``warn`` policy: say so in every answer."""
    if identity.warning:
        response.headers["Deprecation"] = "true"
        response.headers["Warning"] = f'299 tokensmith "{identity.warning}"'
        response.headers["Link"] = f'<{settings.tokens_page_url}>; rel="deprecation"'


def session_secret(request: Request) -> str:
    return request.cookies.get(SESSION_COOKIE, "")


def optional_browser_identity(request: Request, db: Db) -> Identity | None:
    runtime = get_runtime(request)
    row = sessions.find_session(db, runtime.keys, session_secret(request), usage=runtime.usage)
    if row is None:
        return None
    metrics.count_authentication("session", "ok")
    identity = Identity(user=Account.of(row.user), method="session")
    request.state.identity = identity
    request.state.browser_session = row  # its sign-in time, for the pages that need a recent one
    return identity


def browser_identity(
    request: Request,
    db: Db,
    identity: Annotated[Identity | None, Depends(optional_browser_identity)],
) -> Identity:
    """The signed-in person behind a page request; otherwise off to the sign-in page (or, under
    TOKENSMITH_REQUIRE_2FA, to the Security page while they have no second factor)."""
    if identity is None:
        raise SignInRequired()
    if (
        get_runtime(request).settings.require_second_factor
        and not request.url.path.startswith(ENROLMENT_PATHS)
        and second_factors.applies_to(request.state.browser_session.user)
        and not second_factors.has_second_factor(db, identity.user.id)
    ):
        raise SecondFactorRequired()
    return identity


BrowserIdentity = Annotated[Identity, Depends(browser_identity)]


def requirements(routers: Iterable[APIRouter]) -> Iterator[tuple[APIRoute, Requires]]:
    """Every route that takes a token, with what it declared (the table of docs/scopes.md)."""
    for route in (route for router in routers for route in router.routes):
        if not isinstance(route, APIRoute):
            continue
        declared = _DECLARED.get(route.endpoint) or _declared_in(route.dependant)
        if declared is not None:
            yield route, declared


def requirements_table(routers: Iterable[APIRouter], also_at: Callable[[str], str] = lambda _path: "") -> str:
    """docs/scopes.md's table, from the routes' own declarations: what each route needs, and
    what a token holding each one scope gets there (its address allowed, its project listed).
    ``also_at``: another address of a route's path, served by the same route (web/nuxeo.py), or ''."""
    from tokensmith.scopes import ALL_SCOPES
    from tokensmith.tokens.limits import validate_scopes

    lines = [
        "| route | needs | " + " | ".join(f"`{scope}`" for scope in ALL_SCOPES) + " | its project, from |",
        "|---|---|" + "---|" * len(ALL_SCOPES) + "---|",
    ]
    for route, declared in requirements(routers):
        methods = ", ".join(sorted(route.methods or ()))  # FastAPI sets them (GET by default)
        for what, scope in declared.rows():
            cells = ["yes" if scope is None or scope in validate_scopes([held]) else "403" for held in ALL_SCOPES]
            where = declared.project.where if declared.project else "—"
            alias = f" (also `{also_at(route.path)}`)" if also_at(route.path) else ""
            lines.append(
                f"| `{methods} {route.path}`{alias}{' ' + what if what else ''} | "
                f"{f'`{scope}`' if scope else 'any scope'} | " + " | ".join(cells) + f" | {where} |"
            )
    return "\n".join(lines) + "\n"


def _declared_in(dependant: Dependant) -> Requires | None:
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, Requires):
            return dependency.call
        if (found := _declared_in(dependency)) is not None:
            return found
    return None
