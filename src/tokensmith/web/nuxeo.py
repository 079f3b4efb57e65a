"""The reference's addresses, under ``/nuxeo/``: what its tools, poms, settings.xml files, git
remotes and release scripts name, with only the host changed.

Most of them are Tokensmith's own routes at the reference's paths: ``ADDRESSES`` maps each
prefix onto the route that serves it, and ``web/edge.Edge`` rewrites the path before any
routing, so that one route — one implementation, one declaration of what it needs (docs/scopes.md
lists both addresses) — answers both, at the same cost. One is the reference's alone:
``GET /nuxeo/authentication/token``, where an application gets a token derived from the
personal token presented (application_tokens.py). Its answers are plain text, as the
reference's are.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from tokensmith.errors import NotPermitted, TokenExpired, TokenReplaced, TokenRevoked
from tokensmith.identity import Identity
from tokensmith.tokens import application_tokens
from tokensmith.tokens.application_tokens import Application
from tokensmith.web.auth import Requires, declares, identify_client
from tokensmith.web.runtime import client_ip, get_runtime

ROOT = "/nuxeo/"
# The reference's prefix -> the route's own. Matched in this order, on the path as sent.
ADDRESSES: tuple[tuple[str, str], ...] = (
    ("/nuxeo/git/", "/git/"),
    ("/nuxeo/site/studio/maven/", "/maven/studio/"),
    ("/nuxeo/site/studio/v2/", "/studio/v2/"),
)
CARRIES_A_SECRET = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# Any scope: an application token is never wider than the token it comes from.
APPLICATION_TOKEN = Requires(None)

router = APIRouter(include_in_schema=False)


def reference_path(path: str) -> str:
    """The reference's address of a route's path (for the table of docs/scopes.md), or ''."""
    return next((alias + path[len(own) :] for alias, own in ADDRESSES if path.startswith(own)), "")


def nothing_here(path: str) -> str:
    """What a 404 under /nuxeo/ says: which addresses there are, and the usual slip."""
    if path.startswith("/nuxeo//"):
        return (
            "Nothing here: the address has '//' after /nuxeo. The connect URL must not end with a slash: "
            "use --connectUrl=https://HOST/nuxeo (nuxeo studio link), without the final '/'."
        )
    return (
        "Nothing here. Under /nuxeo/ this server answers the reference's addresses: git/{project}.git, "
        "site/studio/maven/, site/studio/v2/project/{project}/…, authentication/token."
    )


@router.get("/nuxeo/authentication/token")
@declares(APPLICATION_TOKEN)
async def application_token(
    request: Request,
    application: Annotated[str | None, Query(alias="applicationName")] = None,
    device: Annotated[str | None, Query(alias="deviceId")] = None,
    permission: str | None = None,
    revoke: bool = False,
) -> Response:
    """An application token, derived from the personal token presented (Basic username:token):
    201 and the token as plain text. With ``revoke=true``, the application token presented
    revokes itself: 202."""
    if revoke:
        return await _sign_out(request)
    asked = Application.of(application, device, permission)  # before the credentials cost anything
    identity = await identify_client(request, APPLICATION_TOKEN)
    parent = identity.token
    if parent is None:
        raise NotPermitted(
            "An application token is made from a personal access token: send your username and "
            "a token (HTTP Basic), not a password."
        )
    if parent.parent_id is not None:
        raise NotPermitted(
            "An application token cannot make another: present the personal token it was made "
            "from (your username and a personal access token)."
        )
    runtime = get_runtime(request)
    secret, _row = await runtime.run_unit(
        lambda session: application_tokens.derive_token(
            session,
            runtime.keys,
            parent.id,
            identity.user.id,
            asked,
            prefix=runtime.settings.token_prefix,
            actor=identity.username,
            ip=client_ip(request),
            max_lifetime_days=runtime.settings.max_token_lifetime_days,
        )
    )
    return PlainTextResponse(secret, status_code=201, headers=CARRIES_A_SECRET)


@router.get("/nuxeo/site/connect/tokens")
def tokens_page() -> Response:
    """The reference's token page, which its command-line tool names when a token is refused
    ("make sure you use a token created at …/nuxeo/site/connect/tokens"): My Tokens here."""
    return RedirectResponse("/tokens", status_code=303)


async def _sign_out(request: Request) -> Response:
    """``revoke=true``. A token revoked or expired already is 202 too: what was asked is so
    (and the reference's tool forgets its token only on a 202: anything else would leave it
    unable to link again after its parent was revoked)."""
    try:
        identity: Identity = await identify_client(request, APPLICATION_TOKEN)
    except TokenReplaced:
        raise
    except (TokenRevoked, TokenExpired) as error:
        return PlainTextResponse(f"{error.message} Nothing left to revoke.\n", status_code=202)
    if identity.token is None:
        raise NotPermitted(
            "revoke=true revokes the application token presented: send it (X-Authentication-Token), not a password."
        )
    runtime = get_runtime(request)
    token = identity.token
    await runtime.run_unit(
        lambda session: application_tokens.sign_out(
            session, token.id, identity.user.id, actor=identity.username, ip=client_ip(request)
        )
    )
    return PlainTextResponse(f"Revoked the application token “{token.name}” ({token.hint}).\n", status_code=202)
