"""A recent sign-in before creating or changing a token (GitHub's "sudo mode").

A session left open on a shared or stolen machine must not be enough to mint a token that
outlives it. The pages that create or change a token call ``recent_sign_in`` first: past the
window (sessions.REAUTHENTICATION_WINDOW) it answers the page that asks the person to prove it
again, whose form posts their request back as it was, with their password added; people who
sign in through the identity provider go there again, asked for a sign-in that recent
(``max_age``), and come back to the page they were on.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from tokensmith.accounts import sessions
from tokensmith.errors import AuthenticationFailed, TooManyAttempts
from tokensmith.identity import Identity
from tokensmith.web.runtime import client_ip, get_runtime
from tokensmith.web.templates import render

# The password field of the re-authentication form, named apart from every form it carries.
PASSWORD_FIELD = "reauth_password"
WINDOW_MINUTES = int(sessions.REAUTHENTICATION_WINDOW.total_seconds() // 60)
# The address the provider returns to travels in the sign-in's cookie (4 kB at most in all).
MAX_RESUME_LENGTH = 1500


def recent_sign_in(
    request: Request,
    db: Session,
    identity: Identity,
    *,
    what: str,
    back: str,
    fields: Iterable[tuple[str, str]] = (),
    password: str = "",
    resume: str | None = None,
) -> Response | None:
    """None when the person may go on; otherwise the page to answer instead.

    ``what`` names the act ("Creating a token"), ``back`` is the page to return to,
    ``fields`` the form as it was posted (the CSRF token aside), ``password`` what they typed
    in the re-authentication form, if that is where the request comes from. ``resume``: where
    the identity provider sends the person back to find their input again (a page that fills
    its form from the query), when that address is short enough to travel through it."""
    row = request.state.browser_session
    if sessions.recently_authenticated(row):
        return None
    runtime = get_runtime(request)
    error, status, headers = None, 401, None
    if password:
        try:
            runtime.authenticator.sign_in(db, identity.username, password, ip=client_ip(request))
        except AuthenticationFailed as failure:
            error = failure.message
            if isinstance(failure, TooManyAttempts):
                status, headers = 429, {"Retry-After": str(failure.retry_after)}
        else:
            sessions.reauthenticated(db, row, ip=client_ip(request))
            return None
    provider = runtime.identity_provider
    with_password = runtime.settings.local_login and row.user.password_hash is not None
    carried = resume is not None and len(resume) <= MAX_RESUME_LENGTH
    return render(
        request,
        "reauth.html",
        {
            "what": what,
            "action": request.url.path,
            "fields": [(name, value) for name, value in fields],
            "signed_in": row.authenticated_at,
            "window": WINDOW_MINUTES,
            "with_password": with_password,
            "provider_name": provider.name if provider is not None and row.user.oidc_subject else None,
            "provider_url": "/login/oidc?" + urlencode({"next": resume if carried else back, "reauth": "true"}),
            "carried": carried,
            "back": back,
            "error": error,
            "password_field": PASSWORD_FIELD,
        },
        status=status,
        headers=headers,
    )
