"""The security log (every event of the signed-in person) and, for administrators, the
credential inventory (every person's live tokens, each revocable, and whose a token given by
its value is). Forms only; the rules are in ``audit`` and ``tokens``."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from tokensmith.accounts import users
from tokensmith.audit import trail
from tokensmith.errors import InvalidInput, NotFound
from tokensmith.identity import Identity
from tokensmith.store.models import PersonalToken
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import listing as token_listing
from tokensmith.tokens import lookup as token_lookup
from tokensmith.web.auth import BrowserIdentity, Db
from tokensmith.web.pages import MAX_ID, FormText, TokenId, check_csrf
from tokensmith.web.reauthentication import recent_sign_in
from tokensmith.web.runtime import client_ip, get_runtime
from tokensmith.web.templates import render

router = APIRouter(include_in_schema=False)
LOG_PAGE = 25
INVENTORY_PAGE = 50
Cursor = Annotated[str | None, Query(max_length=200)]
PastedText = Annotated[str, Form(max_length=60_000)]  # a thousand tokens, within the body limit


@router.get("/security-log")
def security_log(
    request: Request,
    db: Db,
    identity: BrowserIdentity,
    cursor: Cursor = None,
    token: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    """Every event of the person's account, newest first, a page at a time."""
    user_id = identity.user.id
    error = None
    try:
        events, next_cursor = trail.events_page(db, user_id, limit=LOG_PAGE, cursor=cursor, token_id=token)
    except InvalidInput as refused:  # a cursor edited by hand, or from another server
        events, next_cursor, error = [], None, refused.message
    filters = {"token": token} if token is not None else {}
    return render(
        request,
        "security_log.html",
        {
            "active": "security-log",
            "events": events,
            "tokens": token_listing.every_token_of(db, user_id),
            "chosen": token,
            "first_page": cursor is not None,
            "first_url": "/security-log" + (f"?{urlencode(filters)}" if filters else ""),
            "next_url": f"/security-log?{urlencode({**filters, 'cursor': next_cursor})}" if next_cursor else None,
            "error": error,
        },
        status=422 if error else 200,
    )


# --- the credential inventory ----------------------------------------------------------------------


def require_admin(identity: Identity) -> None:
    """The administrators' pages read, to anybody else, like pages that do not exist."""
    if not identity.user.is_admin:
        raise NotFound("There is no such page.")


@router.get("/admin/tokens")
def inventory(
    request: Request,
    db: Db,
    identity: BrowserIdentity,
    owner: Annotated[str, Query(max_length=64)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    revoked: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    """Every person's live tokens, with their limits, last use and expiry."""
    require_admin(identity)
    return _inventory_page(request, db, owner=owner, page=page, revoked=revoked)


@router.post("/admin/tokens/lookup")
def inventory_lookup(
    request: Request, db: Db, identity: BrowserIdentity, csrf_token: FormText = "", tokens: PastedText = ""
) -> Response:
    """Whose is this token? The values come in the form's body, never in an address (which
    proxies and browsers log), and are never shown back: each finding by its hint."""
    check_csrf(request, csrf_token)
    require_admin(identity)
    prefix = get_runtime(request).settings.token_prefix
    try:
        values = token_lookup.values_in(tokens, prefix)
    except InvalidInput as refused:
        return _inventory_page(request, db, lookup_error=refused.message, status=422)
    found = token_lookup.look_up(db, get_runtime(request).keys, values, prefix=prefix)
    return _inventory_page(request, db, found=found)


def _inventory_page(
    request: Request,
    db: Db,
    *,
    owner: str = "",
    page: int = 1,
    revoked: int | None = None,
    found: list[token_lookup.LookedUp] | None = None,
    lookup_error: str | None = None,
    status: int = 200,
) -> Response:
    owner_id, error = None, None
    if owner:
        try:
            owner_id = users.get_user(db, owner).id
        except NotFound as missing:
            error = missing.message
    rows, more = (
        ([], False)
        if error
        else token_listing.live_tokens(db, owner_id=owner_id, offset=(page - 1) * INVENTORY_PAGE, limit=INVENTORY_PAGE)
    )
    filters = {"owner": owner} if owner else {}
    notice = None
    if revoked is not None:
        ended = db.get(PersonalToken, revoked)
        if ended is not None:
            notice = (
                f"The token “{ended.name}” ({ended.hint}) of {ended.owner.username} was revoked; "
                "it is in their security log."
            )
    return render(
        request,
        "inventory.html",
        {
            "active": "inventory",
            "tokens": rows,
            "addresses": token_listing.addresses_of(db, (row.id for row in rows)),
            "owner": owner,
            "users": [user.username for user in users.list_users(db)],
            "error": error,
            "notice": notice,
            "page": page,
            "here": f"/admin/tokens?{urlencode({**filters, 'page': page})}",
            "previous_url": f"/admin/tokens?{urlencode({**filters, 'page': page - 1})}" if page > 1 else None,
            "next_url": f"/admin/tokens?{urlencode({**filters, 'page': page + 1})}" if more else None,
            "found": found,
            "lookup_error": lookup_error,
        },
        status=status,
    )


@router.post("/admin/tokens/{token_id}/revoke")
def inventory_revoke(
    token_id: TokenId,
    request: Request,
    db: Db,
    identity: BrowserIdentity,
    csrf_token: FormText = "",
    back: FormText = "/admin/tokens",
    reauth_password: FormText = "",
) -> Response:
    """An administrator revokes anybody's token: reason "admin", the administrator as actor."""
    check_csrf(request, csrf_token)
    require_admin(identity)
    back = back if back.startswith("/admin/tokens") else "/admin/tokens"
    asked = recent_sign_in(
        request,
        db,
        identity,
        what="Revoking somebody's token",
        back=back,
        fields=[("back", back)],
        password=reauth_password,
    )
    if asked is not None:
        return asked
    token_lifecycle.revoke_any_token(db, token_id, actor=identity.username, ip=client_ip(request))
    separator = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{separator}revoked={token_id}", status_code=303)
