"""Sign-in through the identity provider: start at /login/oidc, come back at the callback.

The protocol is in ``identity_provider``, whose account it is in ``provider_accounts``; this
module carries cookies and redirects. A failure shows the sign-in page with what went wrong,
never a server error, and never the code or the token.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from tokensmith.accounts import provider_accounts, sessions
from tokensmith.accounts.identity_provider import PENDING_SECONDS, OpenIdProvider, PendingSignIn
from tokensmith.errors import IdentityProviderUnavailable, NotFound, SignInRejected
from tokensmith.web.errors import status_of
from tokensmith.web.pages import login_page, safe_next, start_browser_session
from tokensmith.web.runtime import get_runtime
from tokensmith.web.templates import PENDING_SIGN_IN_COOKIE, PROVIDER_SESSION_COOKIE

router = APIRouter(include_in_schema=False)
CALLBACK_PATH = "/login/oidc/callback"
# Browsers keep cookies up to 4 kB; a larger ID token is not kept (sign-out then names the
# client instead of the token).
MAX_HINT_LENGTH = 3800


def _provider(request: Request) -> OpenIdProvider:
    provider = get_runtime(request).identity_provider
    if provider is None:
        raise NotFound("Sign-in through an identity provider is not configured on this server.")
    return provider


@router.get("/login/oidc")
async def start_sign_in(request: Request, next: str = "/tokens", reauth: bool = False) -> Response:
    """``reauth``: the person is signed in but must prove it again before creating or changing
    a token; the provider is asked for a sign-in within the re-authentication window."""
    provider = _provider(request)
    settings = get_runtime(request).settings
    next_path = safe_next(next)
    max_age = int(sessions.REAUTHENTICATION_WINDOW.total_seconds()) if reauth else None
    try:
        url, pending = await provider.begin(next_path, max_age=max_age)
    except IdentityProviderUnavailable as error:
        return login_page(request, next_path=next_path, error=error.message, status=status_of(error))
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        PENDING_SIGN_IN_COOKIE,
        pending.seal(get_runtime(request).keys),
        max_age=PENDING_SECONDS,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/login/oidc",
    )
    return response


@router.get(CALLBACK_PATH)
async def finish_sign_in(request: Request) -> Response:
    runtime = get_runtime(request)
    provider = _provider(request)
    next_path = "/tokens"
    try:
        pending = PendingSignIn.unseal(runtime.keys, request.cookies.get(PENDING_SIGN_IN_COOKIE))
        next_path = pending.next_path
        identity = await provider.finish(pending, request.query_params)
        # The account and the session in one unit of work, taken only once the provider has
        # answered: a slow provider holds no connection.
        response = await runtime.run_unit(
            lambda session: start_browser_session(
                request,
                session,
                provider_accounts.account_for(session, identity, provider_name=provider.name),
                next_path,
                authenticated_at=identity.authenticated_at,
            )
        )
    except (SignInRejected, IdentityProviderUnavailable) as error:
        response = login_page(request, next_path=next_path, error=error.message, status=status_of(error))
        response.delete_cookie(PENDING_SIGN_IN_COOKIE, path="/login/oidc")
        return response
    response.delete_cookie(PENDING_SIGN_IN_COOKIE, path="/login/oidc")
    hint = identity.id_token if len(identity.id_token) <= MAX_HINT_LENGTH else ""
    response.set_cookie(
        PROVIDER_SESSION_COOKIE,
        hint,
        max_age=runtime.settings.session_days * 86400,
        httponly=True,
        samesite="lax",
        secure=runtime.settings.secure_cookies,
        path="/logout",
    )
    return response
