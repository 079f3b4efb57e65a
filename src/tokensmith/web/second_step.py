"""The second step of a sign-in, a sign-in with a passkey alone, and the passkey that confirms a
recent sign-in. Forms and their answers only; the rules are in accounts/second_factors.py.

After a right password, a person with a second factor holds only a half-done sign-in (its
cookie, ``tokensmith_sign_in``, sent to /login/ alone): no session, nothing opens. The second
step takes an authenticator app's code, a recovery code or a passkey, throttled as passwords
are (accounts/throttle.py, counts of its own per account); done, the session begins. "Sign in
with a passkey" on /login begins a half-done sign-in without a person, which the passkey
finishes (with user verification: it stands for the password and the second factor).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Header, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from tokensmith.accounts import passkeys, second_factors, sessions
from tokensmith.accounts.throttle import SignInThrottle
from tokensmith.errors import (
    AccountDisabled,
    AuthenticationFailed,
    CsrfFailed,
    InvalidInput,
    PasskeyRefused,
    SignInExpired,
    TooManyAttempts,
)
from tokensmith.store.models import PendingSignIn, User
from tokensmith.web.auth import BrowserIdentity, Db
from tokensmith.web.pages import (
    SECOND_STEP_PATH,
    SIGN_IN_COOKIE,
    FormText,
    login_page,
    remember_sign_in,
    safe_next,
    start_browser_session,
)
from tokensmith.web.reauthentication import SECOND_STEP
from tokensmith.web.runtime import client_ip, get_runtime
from tokensmith.web.security_settings import csrf_from_header, json_refusal, relying_party_of
from tokensmith.web.templates import presession_of, render

router = APIRouter(include_in_schema=False)
Answer = Annotated[str, Form(max_length=60_000)]
# A passkey sign-in names nobody until the passkey does: its failures count per address.
PASSKEY_ALONE = "passkey"


def _throttle(request: Request, namespace: str = SECOND_STEP) -> SignInThrottle:
    return SignInThrottle(get_runtime(request).keys, namespace=namespace)


def _pending(request: Request, db: Session, *, alone: bool = False) -> PendingSignIn:
    return second_factors.find_sign_in(
        db, get_runtime(request).keys, request.cookies.get(SIGN_IN_COOKIE, ""), passkey_alone=alone
    )


def _ended(request: Request, error: AuthenticationFailed, status: int = 401) -> Response:
    response = login_page(request, next_path="/tokens", error=error.message, status=status)
    response.delete_cookie(SIGN_IN_COOKIE, path="/login")
    return response


def _step_page(
    request: Request,
    db: Session,
    row: PendingSignIn,
    *,
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    factors = second_factors.factors_of(db, row.user_id or 0)
    return render(
        request,
        "second_step.html",
        {
            "with_app": factors.has_app,
            "with_passkey": bool(factors.passkeys),
            "codes_left": factors.codes_left,
            "party": relying_party_of(request),
            "minutes": second_factors.expires_in_minutes(row),
            "error": error,
        },
        status=status,
        headers=headers,
    )


def _check_presession(request: Request, submitted: str | None) -> None:
    if not sessions.csrf_valid(get_runtime(request).keys, presession_of(request), submitted):
        raise CsrfFailed()


@router.get(SECOND_STEP_PATH)
def second_step_page(request: Request, db: Db) -> Response:
    try:
        row = _pending(request, db)
    except SignInExpired as error:
        return _ended(request, error)
    return _step_page(request, db, row)


@router.post(SECOND_STEP_PATH)
def second_step(
    request: Request, db: Db, code: FormText = "", credential: Answer = "", csrf_token: FormText = ""
) -> Response:
    """An authenticator app's code, a recovery code, or a passkey's answer: the session begins."""
    try:
        _check_presession(request, csrf_token)
        row = _pending(request, db)
    except SignInExpired as error:
        return _ended(request, error)
    user = db.get(User, row.user_id)
    if user is None or not user.is_active:
        second_factors.end_sign_in(db, row)
        return _ended(request, AccountDisabled("This account is disabled: ask your administrator."))
    throttle, ip = _throttle(request), client_ip(request)
    try:
        throttle.check(db, user.username, ip)
        if credential:
            party = relying_party_of(request)
            if party is None:
                raise PasskeyRefused(passkeys.unavailable_reason(get_runtime(request).settings.public_url))
            passkeys.verify_assertion(db, party, credential, second_factors.take_challenge(row), user_id=user.id)
            method = second_factors.PASSKEY
        else:
            method = second_factors.check_code(db, get_runtime(request).keys, user, code, ip=ip)
    except TooManyAttempts as error:
        return _step_page(
            request, db, row, error=error.message, status=429, headers={"Retry-After": str(error.retry_after)}
        )
    except AuthenticationFailed as error:
        throttle.failed(db, user.username, ip)  # committed with the page, as a wrong password's is
        second_factors.second_step_failed(db, user.id, ip=ip, username=user.username)
        return _step_page(request, db, row, error=error.message, status=401)
    throttle.succeeded(db, user.username, ip)
    next_path = row.next_path
    second_factors.end_sign_in(db, row)
    return start_browser_session(request, db, user, next_path, second_step=method)


@router.post(f"{SECOND_STEP_PATH}/passkey-options")
def second_step_passkey_options(
    request: Request, db: Db, x_csrf_token: Annotated[str | None, Header()] = None
) -> Response:
    """The options for navigator.credentials.get() at the second step: the person's passkeys,
    and a challenge bound to this half-done sign-in."""
    party = relying_party_of(request)
    try:
        _check_presession(request, x_csrf_token)
        row = _pending(request, db)
        if party is None:
            raise InvalidInput(passkeys.unavailable_reason(get_runtime(request).settings.public_url))
    except (CsrfFailed, InvalidInput, SignInExpired) as error:
        return json_refusal(
            error, 403 if isinstance(error, CsrfFailed) else 401 if isinstance(error, SignInExpired) else 422
        )
    options = passkeys.authentication_options(
        party, second_factors.give_challenge(row), passkeys.passkeys_of(db, row.user_id or 0)
    )
    return Response(options, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.post("/login/passkey/options")
def passkey_sign_in_options(
    request: Request,
    db: Db,
    next: Annotated[str, Query(max_length=2000)] = "/tokens",
    x_csrf_token: Annotated[str | None, Header()] = None,
) -> Response:
    """ "Sign in with a passkey": a half-done sign-in without a person yet, and its challenge."""
    runtime = get_runtime(request)
    party = relying_party_of(request)
    try:
        _check_presession(request, x_csrf_token)
        if not runtime.settings.local_login:
            raise InvalidInput(
                "Passkeys are for Tokensmith accounts, and this server signs people in through the identity provider."
            )
        if party is None:
            raise InvalidInput(passkeys.unavailable_reason(runtime.settings.public_url))
        _throttle(request, PASSKEY_ALONE).check(db, PASSKEY_ALONE, client_ip(request))
    except TooManyAttempts as error:
        return json_refusal(error, 429)
    except (CsrfFailed, InvalidInput) as error:
        return json_refusal(error, 403 if isinstance(error, CsrfFailed) else 422)
    response = Response(media_type="application/json", headers={"Cache-Control": "no-store"})
    row = remember_sign_in(request, db, response, None, safe_next(next))
    response.body = passkeys.authentication_options(party, second_factors.give_challenge(row), alone=True).encode()
    response.headers["content-length"] = str(len(response.body))
    return response


@router.post("/login/passkey")
def passkey_sign_in(
    request: Request, db: Db, credential: Answer = "", csrf_token: FormText = "", next: FormText = "/tokens"
) -> Response:
    """The passkey's answer: whose passkey it is, verified, and their session begins."""
    ip = client_ip(request)
    throttle = _throttle(request, PASSKEY_ALONE)
    try:
        _check_presession(request, csrf_token)
        throttle.check(db, PASSKEY_ALONE, ip)
        row = _pending(request, db, alone=True)
        challenge = second_factors.take_challenge(row)
        next_path = row.next_path
        second_factors.end_sign_in(db, row)  # used once, right or wrong
        party = relying_party_of(request)
        if party is None:
            raise PasskeyRefused(passkeys.unavailable_reason(get_runtime(request).settings.public_url))
        key = passkeys.verify_assertion(db, party, credential, challenge, alone=True)
        user = db.get(User, key.user_id)
        if user is None or not user.is_active:
            raise AccountDisabled("This account is disabled: ask your administrator.")
    except TooManyAttempts as error:
        return _ended(request, error, 429)
    except CsrfFailed as error:
        return login_page(request, next_path=safe_next(next), error=error.message, status=403)
    except AuthenticationFailed as error:
        throttle.failed(db, PASSKEY_ALONE, ip)
        return _ended(request, error)
    return start_browser_session(request, db, user, next_path, second_step=second_factors.PASSKEY)


@router.post("/reauthenticate/passkey-options")
def confirm_with_passkey_options(
    request: Request, db: Db, identity: BrowserIdentity, x_csrf_token: Annotated[str | None, Header()] = None
) -> Response:
    """The options for confirming it is them with a passkey (web/reauthentication.py), with a
    challenge bound to this session."""
    try:
        csrf_from_header(request, x_csrf_token)
    except CsrfFailed as error:
        return json_refusal(error, 403)
    party = relying_party_of(request)
    if party is None:
        return json_refusal(InvalidInput(passkeys.unavailable_reason(get_runtime(request).settings.public_url)), 422)
    challenge = second_factors.session_challenge(db, request.state.browser_session.id, "confirm")
    options = passkeys.authentication_options(party, challenge, passkeys.passkeys_of(db, identity.user.id))
    return Response(options, media_type="application/json", headers={"Cache-Control": "no-store"})
