"""The one credential extractor: any request in, an Identity out (or a refusal).

Non-browser routes depend on ``client_identity`` (Basic ``username:token`` as git, Maven,
Nexus and curl send it, or Bearer). Pages depend on ``browser_identity`` (the session
cookie). A route that declares neither is public; everything else is denied by default.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy.orm import Session

from tokensmith import metrics, sessions, tokens
from tokensmith.accounts import Account
from tokensmith.config import Settings
from tokensmith.authentication import BasicCredentials, BearerCredentials, Credentials, Identity
from tokensmith.errors import AuthenticationFailed, AuthenticationRequired, CredentialMalformed, HeaderTooLarge
from tokensmith.db import connection_to
from tokensmith.web.runtime import Runtime, client_agent, client_ip, get_db, get_runtime
from tokensmith.web.templates import SESSION_COOKIE

MAX_AUTHORIZATION_LENGTH = 4096
Db = Annotated[Session, Depends(get_db, scope="function")]


class SignInRequired(Exception):
    """A page needs a browser session; the handler redirects to the sign-in page."""


def parse_authorization(header: str | None, token_prefix: str) -> Credentials | None:
    """Read an Authorization header; None when there is none. Never echoes its content."""
    if header is None:
        return None
    if len(header) > MAX_AUTHORIZATION_LENGTH:
        raise HeaderTooLarge(
            f"The Authorization header is {len(header):,} characters long; at most "
            f"{MAX_AUTHORIZATION_LENGTH:,} are accepted (a token is 42)."
        )
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if not scheme:
        raise CredentialMalformed("The Authorization header is empty.")
    if scheme.lower() == "basic":
        return _parse_basic(value, token_prefix)
    if scheme.lower() in ("bearer", "token"):
        if not value:
            raise CredentialMalformed("The Bearer credential is empty.")
        return BearerCredentials(value)
    raise CredentialMalformed(
        "Unsupported authorization scheme: use Basic (username and token) or Bearer (token)."
    )


def presents_bearer_secret(header: str | None, expected: str) -> bool:
    """Whether an Authorization header is ``Bearer`` and this deployment's secret (SCIM's,
    /metrics'), compared in constant time: digests first, so that not even the length shows."""
    if header is None or len(header) > MAX_AUTHORIZATION_LENGTH:
        return False
    scheme, _, presented = header.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        hashlib.sha256(presented.strip().encode()).digest(), hashlib.sha256(expected.encode()).digest())


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
        raise CredentialMalformed(
            "The Basic credentials have no ':' between the username and the token."
        )
    if not secret and tokens.looks_like_token(username, token_prefix):
        return BearerCredentials(username)  # `curl -u TOKEN:`, as GitHub allows
    if not secret:
        raise CredentialMalformed("The Basic credentials carry an empty password.")
    return BasicCredentials(username, secret)


def _check_token(runtime: Runtime, credentials: Credentials, ip: str | None, agent: str | None) -> Identity:
    return runtime.authenticator.check(lambda: connection_to(runtime.check_engine), credentials,
                                       ip=ip, agent=agent)


async def identify_client(request: Request) -> Identity:
    """The identity of a non-browser client: git, Maven, Nexus, curl, the CLI.

    The check runs on every request: a token's on the check engine, with at most one trip to
    the threadpool (none on SQLite), and writing nothing itself (its *last used* goes to the
    writer behind the requests); a password's, hashed for tens of milliseconds, as a unit of
    work in a thread.
    """
    runtime = get_runtime(request)
    settings = runtime.settings
    try:
        credentials = parse_authorization(
            request.headers.get("authorization"), settings.token_prefix
        )
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
    if runtime.authenticator.is_token(credentials):
        return await runtime.check_on_store(_check_token, runtime, credentials, ip, agent)

    def check_password(session: Session) -> Identity | AuthenticationFailed:
        try:
            return runtime.authenticator.authenticate(session, credentials, ip=ip, agent=agent)
        except AuthenticationFailed as error:
            return error  # returned, not raised: the unit commits the throttle's count of it

    outcome = await runtime.run_unit(check_password)
    if isinstance(outcome, AuthenticationFailed):
        raise outcome
    return outcome


def add_deprecation_headers(response: Response, identity: Identity, settings: Settings) -> None:
    """A password accepted under the ``warn`` policy: say so in every answer."""
    if identity.warning:
        response.headers["Deprecation"] = "true"
        response.headers["Warning"] = f'299 tokensmith "{identity.warning}"'
        response.headers["Link"] = f'<{settings.tokens_page_url}>; rel="deprecation"'


async def client_identity(request: Request, response: Response) -> Identity:
    """The dependency of non-browser routes: ``identify_client``, and the headers it calls for."""
    identity = await identify_client(request)
    add_deprecation_headers(response, identity, get_runtime(request).settings)
    return identity


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
    return identity


def browser_identity(
    identity: Annotated[Identity | None, Depends(optional_browser_identity)],
) -> Identity:
    """The signed-in person behind a page request; otherwise off to the sign-in page."""
    if identity is None:
        raise SignInRequired()
    return identity


ClientIdentity = Annotated[Identity, Depends(client_identity)]
BrowserIdentity = Annotated[Identity, Depends(browser_identity)]
