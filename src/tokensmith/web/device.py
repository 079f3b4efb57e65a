"""The device authorization grant over HTTP (RFC 8628): the client's two endpoints, answered in
the RFC's JSON, and the ``/device`` page where a signed-in person approves or denies a login.
The rules are in ``device_authorization.py``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, Response

from tokensmith.accounts import device_authorization
from tokensmith.accounts.device_authorization import DeviceGrantError
from tokensmith.errors import InvalidInput, TooManyAttempts
from tokensmith.scopes import SCOPES
from tokensmith.store.models import DeviceAuthorization
from tokensmith.web.auth import BrowserIdentity, Db
from tokensmith.web.pages import check_csrf
from tokensmith.web.reauthentication import recent_sign_in
from tokensmith.web.runtime import client_ip, get_runtime
from tokensmith.web.templates import render

router = APIRouter(include_in_schema=False)
Field = Annotated[str, Form(max_length=512)]
# An answer that carries a code or a token: no cache may keep it (RFC 6749 §5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def refusal(error: DeviceGrantError) -> JSONResponse:
    """RFC 6749 §5.2's error body."""
    return JSONResponse(
        {"error": error.code, "error_description": error.message}, status_code=error.status, headers=NO_STORE
    )


@router.post("/login/device/code")
def device_code(
    request: Request, db: Db, client_id: Field = "", scope: Field = "", device_name: Field = ""
) -> Response:
    runtime = get_runtime(request)
    try:
        codes, _row = device_authorization.request_codes(
            db, runtime.keys, client_id=client_id, scope=scope, device_name=device_name, ip=client_ip(request)
        )
    except DeviceGrantError as error:
        return refusal(error)
    return JSONResponse(
        {
            "device_code": codes.device_code,
            "user_code": codes.user_code,
            "verification_uri": f"{runtime.settings.public_url}/device",
            "expires_in": codes.expires_in,
            "interval": codes.interval,
        },
        headers=NO_STORE,
    )


@router.post("/login/device/token")
def device_token(
    request: Request, db: Db, grant_type: Field = "", device_code: Field = "", client_id: Field = ""
) -> Response:
    runtime = get_runtime(request)
    try:
        secret, row = device_authorization.exchange(
            db,
            runtime.keys,
            grant_type=grant_type,
            device_code=device_code,
            client_id=client_id,
            prefix=runtime.settings.token_prefix,
            ip=client_ip(request),
            max_lifetime_days=runtime.settings.max_token_lifetime_days,
        )
    except DeviceGrantError as error:
        return refusal(error)  # committed all the same: a poll notes its time, a slow_down its interval
    return JSONResponse(
        {"access_token": secret, "token_type": "bearer", "scope": " ".join(row.scopes)}, headers=NO_STORE
    )


def page(request: Request, step: str, *, status: int = 200, **context: object) -> Response:
    return render(request, "device.html", {"step": step, "scopes": SCOPES, **context}, status=status)


@router.get("/device")
def device_page(request: Request, identity: BrowserIdentity) -> Response:
    return page(request, "enter", typed="")


def confirmation(request: Request, row: DeviceAuthorization, code: str) -> Response:
    return page(
        request,
        "confirm",
        row=row,
        code=code,
        client=device_authorization.CLIENTS[row.client_id],
        token_name=device_authorization.token_name(row),
    )


def wrong_code(request: Request, error: InvalidInput | TooManyAttempts, typed: str) -> Response:
    if not isinstance(error, TooManyAttempts):
        return page(request, "enter", status=400, error=error.message, typed=typed[:20])
    response = page(request, "enter", status=429, error=error.message, typed=typed[:20])
    response.headers["Retry-After"] = str(error.retry_after)
    return response


@router.post("/device")
def enter_code(
    request: Request, db: Db, identity: BrowserIdentity, user_code: Field = "", csrf_token: Field = ""
) -> Response:
    check_csrf(request, csrf_token)
    runtime = get_runtime(request)
    try:
        row = device_authorization.pending(db, runtime.keys, user_code, identity.user, ip=client_ip(request))
    except (InvalidInput, TooManyAttempts) as error:
        return wrong_code(request, error, user_code)
    code = device_authorization.normalised(user_code)
    assert code is not None  # pending() found a login under it
    return confirmation(request, row, device_authorization.shown(code))


@router.post("/device/decision")
def decision(
    request: Request,
    db: Db,
    identity: BrowserIdentity,
    user_code: Field = "",
    decision: Field = "",
    csrf_token: Field = "",
    reauth_password: Field = "",
) -> Response:
    check_csrf(request, csrf_token)
    if decision not in ("approve", "deny"):
        raise InvalidInput("Choose Approve or Deny.")
    if decision == "approve":  # an approval makes a token: it needs a recent sign-in too
        asked = recent_sign_in(
            request,
            db,
            identity,
            what="Approving a device login (it makes a token)",
            back="/device",
            fields=[("user_code", user_code), ("decision", decision)],
            password=reauth_password,
        )
        if asked is not None:
            return asked
    runtime = get_runtime(request)
    try:
        row = device_authorization.decide(
            db, runtime.keys, user_code, identity.user, approve=decision == "approve", ip=client_ip(request)
        )
    except (InvalidInput, TooManyAttempts) as error:
        return wrong_code(request, error, user_code)
    return page(
        request, "approved" if decision == "approve" else "denied", token_name=device_authorization.token_name(row)
    )
