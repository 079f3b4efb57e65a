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

from tokensmith.accounts import passkeys, second_factors, sessions
from tokensmith.accounts.throttle import SignInThrottle
from tokensmith.errors import AuthenticationFailed, PasskeyRefused, TooManyAttempts
from tokensmith.identity import Identity
from tokensmith.store.models import BrowserSession
from tokensmith.web.runtime import client_ip, get_runtime
from tokensmith.web.templates import render

# The fields of the re-authentication form, named apart from every form it carries: the
# password, or an authenticator app's code or a recovery code, or a passkey's answer.
PASSWORD_FIELD = "reauth_password"
CODE_FIELD = "reauth_code"
PASSKEY_FIELD = "reauth_passkey"
# The second step's own throttle (web/second_step.py counts in it too): a code guessed here is
# a code guessed there.
SECOND_STEP = "second-step"
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
    code, answer = _posted(request, CODE_FIELD), _posted(request, PASSKEY_FIELD)
    if password or code or answer:
        try:
            confirmed_with = _confirm(request, db, row, password=password, code=code, answer=answer)
        except AuthenticationFailed as failure:
            error = failure.message
            if isinstance(failure, TooManyAttempts):
                status, headers = 429, {"Retry-After": str(failure.retry_after)}
        else:
            sessions.reauthenticated(db, row, ip=client_ip(request), confirmed_with=confirmed_with)
            return None
    provider = runtime.identity_provider
    with_password = runtime.settings.local_login and row.user.password_hash is not None
    factors = second_factors.factors_of(db, row.user_id) if with_password else second_factors.Factors()
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
            "code_field": CODE_FIELD,
            "passkey_field": PASSKEY_FIELD,
            "with_code": factors.has_app or factors.codes_left > 0,
            "with_passkey": bool(factors.passkeys),
            "party": passkeys.relying_party(runtime.settings.public_url),
        },
        status=status,
        headers=headers,
    )


def _posted(request: Request, name: str) -> str:
    """A field of the form the route was posted (FastAPI parsed it before calling the route, and
    Starlette keeps it on the request): the re-authentication form's code and passkey fields
    reach here without every route that may ask for a recent sign-in declaring them."""
    form = getattr(request, "_form", None)
    value = form.get(name) if form is not None else None
    return value[:65_536] if isinstance(value, str) else ""


def _confirm(request: Request, db: Session, row: BrowserSession, *, password: str, code: str, answer: str) -> str:
    """The person proves who they are again: what with, or AuthenticationFailed."""
    runtime = get_runtime(request)
    ip = client_ip(request)
    if password:
        runtime.authenticator.sign_in(db, row.user.username, password, ip=ip)
        return "password"
    throttle = SignInThrottle(runtime.keys, namespace=SECOND_STEP)
    throttle.check(db, row.user.username, ip)
    try:
        if answer:
            party = passkeys.relying_party(runtime.settings.public_url)
            challenge = second_factors.take_session_challenge(db, row.id, "confirm")
            if party is None:
                raise PasskeyRefused(passkeys.unavailable_reason(runtime.settings.public_url))
            passkeys.verify_assertion(db, party, answer, challenge.challenge, user_id=row.user_id)
            return second_factors.PASSKEY
        return second_factors.check_code(db, runtime.keys, row.user, code, ip=ip)
    except AuthenticationFailed:
        throttle.failed(db, row.user.username, ip)
        raise
