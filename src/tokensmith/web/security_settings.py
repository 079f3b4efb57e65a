"""/settings/security ("Security" in the navigation): an authenticator app, passkeys, recovery
codes. Forms and their answers only; the rules are in accounts/second_factors.py.

Every change needs a recent sign-in (web/reauthentication.py), as minting a token does: a
session left open must not be enough to put a factor of someone else's on the account, or to
take the person's own away. Passkeys are added with a little same-origin JavaScript
(static/passkeys.js): it asks ``/settings/security/passkeys/options`` for the options, lets the
browser make the passkey, and posts its answer with the form.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Header, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from tokensmith.accounts import passkeys, second_factors, sessions, totp
from tokensmith.accounts.passkeys import RelyingParty
from tokensmith.errors import CsrfFailed, InvalidInput, NotFound, PasskeyRefused, TokensmithError
from tokensmith.identity import Identity
from tokensmith.store.models import User
from tokensmith.web.auth import BrowserIdentity, Db
from tokensmith.web.errors import status_of
from tokensmith.web.pages import MAX_ID, FormText, check_csrf
from tokensmith.web.reauthentication import recent_sign_in
from tokensmith.web.runtime import client_ip, get_runtime
from tokensmith.web.templates import csrf_binding, render

router = APIRouter(include_in_schema=False)
PAGE = "/settings/security"
PasskeyId = Annotated[int, Path(ge=1, le=MAX_ID)]
# A passkey's answer: JSON the browser made, limited again by passkeys.MAX_ANSWER_CHARACTERS.
Answer = Annotated[str, Form(max_length=60_000)]


def relying_party_of(request: Request) -> RelyingParty | None:
    return passkeys.relying_party(get_runtime(request).settings.public_url)


def json_refusal(error: TokensmithError, status: int) -> JSONResponse:
    """What the page's script shows when it cannot go on."""
    return JSONResponse({"error": error.code, "message": error.message}, status_code=status)


def csrf_from_header(request: Request, token: str | None) -> None:
    if not sessions.csrf_valid(get_runtime(request).keys, csrf_binding(request), token):
        raise CsrfFailed()


def security_page(
    request: Request, db: Session, identity: Identity, *, status: int = 200, **context: object
) -> Response:
    runtime = get_runtime(request)
    user = db.get(User, identity.user.id)
    assert user is not None  # a live session's person
    factors = second_factors.factors_of(db, user.id)
    party = relying_party_of(request)
    enrolment = None
    if factors.app_pending:
        secret = totp.pending_secret(db, runtime.keys, user.id)
        enrolment = totp.enrolment(secret, user.username, runtime.settings.public_url) if secret else None
    return render(
        request,
        "security.html",
        {
            "active": "security",
            "local": second_factors.applies_to(user),
            "factors": factors,
            "enrolment": enrolment,
            "party": party,
            "passkeys_unavailable": None if party else passkeys.unavailable_reason(runtime.settings.public_url),
            "required": runtime.settings.require_second_factor and not factors.any,
            **context,
        },
        status=status,
    )


def _may_change(
    request: Request, db: Session, identity: Identity, csrf_token: str, what: str, password: str
) -> Response | None:
    """A change's form, checked: None to go on, or the page that asks the person to confirm it
    is them (and then posts the form again)."""
    check_csrf(request, csrf_token)
    return recent_sign_in(request, db, identity, what=what, back=PAGE, password=password)


REMOVED = {"app": "Your authenticator app was removed.", "passkey": "The passkey was removed."}


@router.get(PAGE)
def security_settings(
    request: Request, db: Db, identity: BrowserIdentity, removed: Annotated[str, Query(max_length=20)] = ""
) -> Response:
    return security_page(request, db, identity, notice=REMOVED.get(removed))


@router.post(f"{PAGE}/app")
def add_app(
    request: Request, db: Db, identity: BrowserIdentity, csrf_token: FormText = "", reauth_password: FormText = ""
) -> Response:
    asked = _may_change(request, db, identity, csrf_token, "Adding an authenticator app", reauth_password)
    if asked is not None:
        return asked
    _local_only(db, identity)
    if second_factors.factors_of(db, identity.user.id).has_app:
        raise InvalidInput("You have an authenticator app already: remove it first to add another.")
    totp.start_enrolment(db, get_runtime(request).keys, identity.user.id)
    return security_page(request, db, identity)


@router.post(f"{PAGE}/app/confirm")
def confirm_app(
    request: Request,
    db: Db,
    identity: BrowserIdentity,
    code: FormText = "",
    csrf_token: FormText = "",
    reauth_password: FormText = "",
) -> Response:
    asked = _may_change(request, db, identity, csrf_token, "Adding an authenticator app", reauth_password)
    if asked is not None:
        return asked
    user = _local_only(db, identity)
    try:
        codes = second_factors.confirm_app(db, get_runtime(request).keys, user, code, ip=client_ip(request))
    except InvalidInput as error:
        return security_page(request, db, identity, status=422, app_error=error.message)
    db.commit()  # before the page shows the codes, as a new token's page does
    return security_page(request, db, identity, notice="Your authenticator app was added.", new_codes=codes)


@router.post(f"{PAGE}/app/remove")
def remove_app(
    request: Request, db: Db, identity: BrowserIdentity, csrf_token: FormText = "", reauth_password: FormText = ""
) -> Response:
    asked = _may_change(request, db, identity, csrf_token, "Removing your authenticator app", reauth_password)
    if asked is not None:
        return asked
    second_factors.remove_app(db, _local_only(db, identity), ip=client_ip(request))
    return RedirectResponse(f"{PAGE}?removed=app", status_code=303)


@router.post(f"{PAGE}/passkeys/options")
def passkey_options(
    request: Request, db: Db, identity: BrowserIdentity, x_csrf_token: Annotated[str | None, Header()] = None
) -> Response:
    """The options for navigator.credentials.create(), with a challenge bound to this session."""
    try:
        csrf_from_header(request, x_csrf_token)
    except CsrfFailed as error:
        return json_refusal(error, 403)
    party = relying_party_of(request)
    row = request.state.browser_session
    if party is None:
        return json_refusal(InvalidInput(passkeys.unavailable_reason(get_runtime(request).settings.public_url)), 422)
    if not sessions.recently_authenticated(row):
        # The script posts the form as it is: the answer asks the person to confirm it is them.
        return JSONResponse(
            {"error": "reauthenticate", "message": "Confirm it is you first.", "reauthenticate": True}, status_code=403
        )
    user = _local_only(db, identity)
    handle = passkeys.user_handle(db, user.id)
    challenge = second_factors.session_challenge(db, row.id, "register", user_handle=handle)
    options = passkeys.registration_options(party, user, handle, challenge, passkeys.passkeys_of(db, user.id))
    return Response(options, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.post(f"{PAGE}/passkeys")
def add_passkey(
    request: Request,
    db: Db,
    identity: BrowserIdentity,
    name: FormText = "",
    credential: Answer = "",
    csrf_token: FormText = "",
    reauth_password: FormText = "",
) -> Response:
    asked = _may_change(request, db, identity, csrf_token, "Adding a passkey", reauth_password)
    if asked is not None:
        return asked
    party = relying_party_of(request)
    user = _local_only(db, identity)
    if not credential:
        return security_page(request, db, identity, notice="Thank you. Now choose “Add a passkey” again.")
    try:
        if party is None:
            raise InvalidInput(passkeys.unavailable_reason(get_runtime(request).settings.public_url))
        challenge = second_factors.take_session_challenge(db, request.state.browser_session.id, "register")
        row, codes = second_factors.add_passkey(
            db, get_runtime(request).keys, party, user, name, credential, challenge, ip=client_ip(request)
        )
    except TokensmithError as error:
        db.commit()  # the challenge stays spent
        # A passkey refused at registration is input that does not hold (422), not a sign-in refused.
        status = 422 if isinstance(error, PasskeyRefused) else status_of(error)
        return security_page(request, db, identity, status=status, passkey_error=error.message)
    db.commit()
    return security_page(request, db, identity, notice=f"Your passkey “{row.name}” was added.", new_codes=codes)


@router.post(f"{PAGE}/passkeys/{{passkey_id}}/remove")
def remove_passkey(
    passkey_id: PasskeyId,
    request: Request,
    db: Db,
    identity: BrowserIdentity,
    csrf_token: FormText = "",
    reauth_password: FormText = "",
) -> Response:
    asked = _may_change(request, db, identity, csrf_token, "Removing a passkey", reauth_password)
    if asked is not None:
        return asked
    try:
        second_factors.remove_passkey(db, _local_only(db, identity), passkey_id, ip=client_ip(request))
    except NotFound as error:
        return security_page(request, db, identity, status=404, passkey_error=error.message)
    return RedirectResponse(f"{PAGE}?removed=passkey", status_code=303)


@router.post(f"{PAGE}/recovery-codes")
def new_recovery_codes(
    request: Request, db: Db, identity: BrowserIdentity, csrf_token: FormText = "", reauth_password: FormText = ""
) -> Response:
    asked = _may_change(request, db, identity, csrf_token, "Making new recovery codes", reauth_password)
    if asked is not None:
        return asked
    try:
        codes = second_factors.regenerate_codes(
            db, get_runtime(request).keys, _local_only(db, identity), ip=client_ip(request)
        )
    except InvalidInput as error:
        return security_page(request, db, identity, status=422, codes_error=error.message)
    db.commit()
    return security_page(
        request, db, identity, new_codes=codes, notice="New recovery codes: the earlier ones no longer work."
    )


def _local_only(db: Session, identity: Identity) -> User:
    """The person, if they sign in with a Tokensmith password; people of the identity provider
    have their provider's second factor, and nothing to change here."""
    user = db.get(User, identity.user.id)
    if user is None or not second_factors.applies_to(user):
        raise NotFound("Your identity provider looks after your second factor: there is nothing to change here.")
    return user
