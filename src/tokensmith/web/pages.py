"""The web site: sign in, My Tokens, My Applications, sign out. Forms only; no rules here."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import Field
from sqlalchemy.orm import Session

from tokensmith.accounts import second_factors, sessions
from tokensmith.audit import trail
from tokensmith.errors import AuthenticationFailed, Conflict, CsrfFailed, InvalidInput, TooManyAttempts
from tokensmith.identity import Identity
from tokensmith.projects import catalog, releases
from tokensmith.projects import publishers as trusted_publishers
from tokensmith.scopes import ALL_SCOPES, READ_ONLY, SCOPES
from tokensmith.store.models import PendingSignIn, User
from tokensmith.tokens import ci_tokens
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import listing as token_listing
from tokensmith.web.auth import BrowserIdentity, Db, optional_browser_identity, session_secret
from tokensmith.web.reauthentication import recent_sign_in
from tokensmith.web.runtime import client_agent, client_ip, get_runtime
from tokensmith.web.templates import (
    PRESESSION_COOKIE,
    PROVIDER_SESSION_COOKIE,
    SESSION_COOKIE,
    csrf_binding,
    presession_of,
    render,
)

router = APIRouter(include_in_schema=False)
# The <server><id> of the Studio repository in people's settings.xml.
MAVEN_SERVER_ID = "tokensmith-studio"

FormText = Annotated[str, Form(max_length=4096)]
OptionalIdentity = Annotated[Identity | None, Depends(optional_browser_identity)]


def check_csrf(request: Request, submitted: str) -> None:
    if not sessions.csrf_valid(get_runtime(request).keys, csrf_binding(request), submitted):
        raise CsrfFailed()


def safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/tokens"


@router.get("/")
def home(identity: OptionalIdentity) -> Response:
    return RedirectResponse("/tokens" if identity else "/login", status_code=303)


# --- signing in and out ---------------------------------------------------------------------


def login_page(
    request: Request,
    *,
    next_path: str,
    error: str | None = None,
    username: str = "",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    fresh = presession_of(request) is None
    if fresh:
        request.state.presession = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {"next": next_path, "error": error, "username": username},
        status=status,
        headers=headers,
    )
    if fresh:
        response.set_cookie(
            PRESESSION_COOKIE,
            request.state.presession,
            httponly=True,
            samesite="lax",
            secure=get_runtime(request).settings.secure_cookies,
            path="/",
        )
    return response


@router.get("/login")
def login_form(request: Request, identity: OptionalIdentity, next: str = "/tokens") -> Response:
    if identity is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    response = login_page(request, next_path=safe_next(next))
    if session_secret(request):  # a session that ended on the server: the browser may forget it
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/login")
def login(
    request: Request,
    db: Db,
    username: FormText = "",
    password: FormText = "",
    csrf_token: FormText = "",
    next: FormText = "/tokens",
) -> Response:
    runtime = get_runtime(request)
    next_path = safe_next(next)
    if not runtime.settings.local_login:
        return login_page(
            request,
            next_path=next_path,
            status=403,
            error="Passwords are turned off on this server: sign in with the button below.",
        )
    if not sessions.csrf_valid(runtime.keys, presession_of(request), csrf_token):
        return login_page(request, next_path=next_path, username=username, status=403, error=CsrfFailed().message)
    try:
        user = runtime.authenticator.sign_in(db, username, password, ip=client_ip(request))
    except AuthenticationFailed as error:
        retry = {"Retry-After": str(error.retry_after)} if isinstance(error, TooManyAttempts) else None
        return login_page(
            request,
            next_path=next_path,
            username=username,
            status=401 if retry is None else 429,
            error=error.message,
            headers=retry,
        )
    if second_factors.applies_to(user) and second_factors.has_second_factor(db, user.id):
        return ask_for_second_step(request, db, user, next_path)
    return start_browser_session(request, db, user, next_path)


# A sign-in half done (web/second_step.py): its cookie, sent to the sign-in's own addresses only.
SIGN_IN_COOKIE = "tokensmith_sign_in"
SECOND_STEP_PATH = "/login/second-step"


def ask_for_second_step(request: Request, db: Session, user: User | None, next_path: str) -> Response:
    """The password was right and the person has a second factor: no session yet, only a
    half-done sign-in (accounts/second_factors.py), and on to the second step."""
    response = RedirectResponse(SECOND_STEP_PATH, status_code=303)
    remember_sign_in(request, db, response, user, next_path)
    return response


def remember_sign_in(
    request: Request, db: Session, response: Response, user: User | None, next_path: str
) -> PendingSignIn:
    """Begin a half-done sign-in (``user`` None: a passkey sign-in) and give its cookie."""
    runtime = get_runtime(request)
    secret, row = second_factors.begin_sign_in(db, runtime.keys, user.id if user else None, next_path)
    response.set_cookie(
        SIGN_IN_COOKIE,
        secret,
        max_age=int(second_factors.PENDING_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=runtime.settings.secure_cookies,
        path="/login",
    )
    return row


def start_browser_session(
    request: Request,
    db: Session,
    user: User,
    next_path: str,
    *,
    authenticated_at: datetime | None = None,
    second_step: str | None = None,
) -> Response:
    """The answer to a sign-in that succeeded: a new session, and on to where the person
    was going."""
    runtime = get_runtime(request)
    # A sign-in over an earlier one in this browser (another account, say) ends that one.
    sessions.end_session(db, runtime.keys, session_secret(request))
    secret, _row = sessions.start_session(
        db,
        runtime.keys,
        user,
        days=runtime.settings.session_days,
        ip=client_ip(request),
        user_agent=client_agent(request),
        authenticated_at=authenticated_at,
        second_step=second_step,
    )
    sessions.purge_expired_sessions(db)  # sign-ins are rare: the right moment to tidy up
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=runtime.settings.session_days * 86400,
        httponly=True,
        samesite="lax",
        secure=runtime.settings.secure_cookies,
        path="/",
    )
    response.delete_cookie(PRESESSION_COOKIE, path="/")
    if SIGN_IN_COOKIE in request.cookies:
        response.delete_cookie(SIGN_IN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, csrf_token: FormText = "") -> Response:
    """End the session here and, for people who came through the identity provider, there too
    (where it advertises an end_session_endpoint). The Sign out button's form is bound to the
    session it was drawn for, live or since ended on the server."""
    runtime = get_runtime(request)
    if not sessions.csrf_valid(runtime.keys, session_secret(request), csrf_token):
        raise CsrfFailed()
    target = "/login"
    id_token_hint = request.cookies.get(PROVIDER_SESSION_COOKIE)
    if runtime.identity_provider is not None and id_token_hint is not None:
        at_provider = await runtime.identity_provider.end_session_url(
            id_token_hint or None,
            after=f"{runtime.settings.public_url}/login",
        )
        target = at_provider or target
    # After the provider has answered, in a unit of its own: a slow provider holds no
    # connection, and on SQLite no turn to write.
    secret = session_secret(request)
    await runtime.run_unit(lambda session: sessions.end_session(session, runtime.keys, secret))
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(PROVIDER_SESSION_COOKIE, path="/logout")
    return response


# --- My Tokens --------------------------------------------------------------------------------

MAX_ID = 2**31 - 1
TokenId = Annotated[int, Path(ge=1, le=MAX_ID)]
PRESETS = {"everything": ALL_SCOPES, "read": READ_ONLY}
FormList = Annotated[list[Annotated[str, Field(max_length=100)]], Form(max_length=200)]


def expiration_choices(max_days: int | None) -> list[tuple[str, str]]:
    """The Expiration choices; under TOKENSMITH_MAX_TOKEN_LIFETIME_DAYS only those within it,
    the longest allowed among them."""
    if max_days is None:
        return [
            ("never", "No expiration"),
            ("7", "7 days"),
            ("30", "30 days"),
            ("90", "90 days"),
            ("date", "On a date…"),
        ]
    days = [day for day in (7, 30, 90) if day < max_days] + [max_days]
    return [(str(day), f"{day} days" + (" (the longest allowed)" if day == max_days else "")) for day in days] + [
        ("date", "On a date…")
    ]


def _blank_form(max_days: int | None) -> dict[str, object]:
    return {
        "name": "",
        "expiration": expiration_choices(max_days)[0][0],
        "expires_on": "",
        "access": "everything",
        "scopes": list(ALL_SCOPES),
        "project_choice": "all",
        "projects": [],
        "allowed_ips": "",
    }


def _tokens_page(request: Request, db: Db, identity: Identity, *, status: int = 200, **context: object) -> Response:
    user = identity.user
    settings = get_runtime(request).settings
    now = datetime.now(UTC)
    live = [row for row in token_listing.list_tokens(db, user.id) if not row.expires_at or row.expires_at > now]
    inactive = token_listing.inactive_tokens(db, user.id)
    return render(
        request,
        "tokens.html",
        {
            "tokens": live,
            "inactive": inactive,
            "addresses": token_listing.addresses_of(db, (row.id for row in [*live, *inactive])),
            "events": trail.events_for_user(db, user.id, limit=15),
            "choices": expiration_choices(settings.max_token_lifetime_days),
            "max_days": settings.max_token_lifetime_days,
            "latest_day": _latest_day(now.date(), settings.max_token_lifetime_days),
            "scopes": SCOPES,
            "my_projects": [project.id for project, _role in catalog.projects_of(db, user.id)],
            "now": now,
            "form": _blank_form(settings.max_token_lifetime_days),
            **context,
        },
        status=status,
    )


def _latest_day(today: date, max_days: int | None) -> date:
    return today + timedelta(days=max_days or token_lifecycle.MAX_EXPIRY_DAYS)


@router.get("/tokens")
def tokens_page(
    request: Request, db: Db, identity: BrowserIdentity, revoked: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None
) -> Response:
    notice = None
    if revoked is not None:
        ended = token_listing.find_token(db, revoked, identity.user.id)
        named = f"The token “{ended.name}” ({ended.hint})" if ended is not None else "The token"
        notice = f"{named} was revoked. Any tool still using it will now be refused."
    filled = _form_from_query(request, get_runtime(request).settings.max_token_lifetime_days)
    if filled is None:
        return _tokens_page(request, db, identity, notice=notice)
    return _tokens_page(request, db, identity, notice=notice, form=filled, filled=True)


FORM_FIELDS = ("name", "expiration", "expires_on", "access", "scopes", "project_choice", "projects", "allowed_ips")


def _form_from_query(request: Request, max_days: int | None) -> dict[str, object] | None:
    """The create form filled from the address (/tokens?name=CI&access=read): where a person
    comes back to from the identity provider with what they had typed, or a link that
    proposes a token."""
    params = request.query_params
    if not any(field in params for field in FORM_FIELDS):
        return None
    form = _blank_form(max_days)
    for field in FORM_FIELDS:
        if field in ("scopes", "projects"):
            if field in params:
                form[field] = [value[:100] for value in params.getlist(field)[:200]]
        elif field in params:
            form[field] = params[field][:4096]
    if form["access"] == "custom" and "scopes" not in params:
        form["scopes"] = []  # none ticked, as posted
    return form


def parse_expiration(choice: str, expires_on: str, today: date, max_days: int | None = None) -> datetime | None:
    """The form's Expiration choice as a moment; a date means until the end of that day, UTC."""
    if choice != "date" and expires_on.strip():
        raise InvalidInput(
            "You filled in an expiration date but did not choose “On a date…”: choose it to "
            "use the date, or clear the date."
        )
    offered = {value for value, _label in expiration_choices(max_days)}
    if choice not in offered:
        raise InvalidInput("Choose an expiration from the list.")
    if choice == "never":
        return None
    if choice != "date":
        return token_lifecycle.expiry_in_days(int(choice))
    try:
        day = date.fromisoformat(expires_on.strip())
    except ValueError:
        raise InvalidInput("Pick the expiration date (YYYY-MM-DD).") from None
    if day <= today:
        raise InvalidInput("The expiration date must be after today.")
    if max_days is None and day > _latest_day(today, None):
        raise InvalidInput("The expiration date is more than ten years away.")
    if max_days is not None and day >= _latest_day(today, max_days):
        raise InvalidInput(
            f"Tokens on this server expire within {max_days} days: pick a date before {_latest_day(today, max_days)}."
        )
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


def chosen_scopes(access: str, scopes: list[str]) -> tuple[str, ...] | list[str]:
    """The scopes of the form's Access choice: a preset, or the boxes ticked under Custom."""
    if access in PRESETS:
        return PRESETS[access]
    if access == "custom":
        return scopes
    raise InvalidInput("Choose the token's access: Everything, Read only or Custom.")


def chosen_addresses(text: str) -> list[str] | None:
    """The Allowed addresses field: blocks separated by lines, spaces or commas; empty is anywhere."""
    blocks = text.replace(",", " ").split()
    return blocks or None


@router.post("/tokens")
def create_token(
    request: Request,
    db: Db,
    identity: BrowserIdentity,
    name: FormText = "",
    expiration: FormText = "never",
    expires_on: FormText = "",
    access: FormText = "everything",
    scopes: FormList = [],  # noqa: B006  (FastAPI copies it)
    project_choice: FormText = "all",
    projects: FormList = [],  # noqa: B006
    allowed_ips: FormText = "",
    csrf_token: FormText = "",
    reauth_password: FormText = "",
) -> Response:
    check_csrf(request, csrf_token)
    runtime = get_runtime(request)
    max_days = runtime.settings.max_token_lifetime_days
    form: dict[str, str | list[str]] = {
        "name": name,
        "expiration": expiration,
        "expires_on": expires_on,
        "access": access,
        "scopes": scopes,
        "project_choice": project_choice,
        "projects": projects,
        "allowed_ips": allowed_ips,
    }
    asked = recent_sign_in(
        request,
        db,
        identity,
        what="Creating a token",
        back="/tokens",
        fields=_posted(form),
        password=reauth_password,
        resume="/tokens?" + urlencode(_posted(form)),
    )
    if asked is not None:
        return asked
    try:
        expires_at = parse_expiration(expiration, expires_on, datetime.now(UTC).date(), max_days)
        secret, row = token_lifecycle.create_token(
            db,
            runtime.keys,
            identity.user.id,
            name,
            prefix=runtime.settings.token_prefix,
            actor=identity.username,
            expires_at=expires_at,
            scopes=chosen_scopes(access, scopes),
            projects=None if project_choice == "all" else projects,
            allowed_ips=chosen_addresses(allowed_ips),
            max_lifetime_days=max_days,
            ip=client_ip(request),
        )
    except (InvalidInput, Conflict) as error:
        status = 409 if isinstance(error, Conflict) else 422
        return _tokens_page(request, db, identity, status=status, error=error.message, form=form)
    # Committed before the page is drawn, not at the edge: on SQLite a transaction that has
    # written holds the one write lock until it ends, and drawing the page takes longer than
    # the writes themselves.
    db.commit()
    return _tokens_page(request, db, identity, status=201, new_token=secret, new_row=row)


def _posted(form: dict[str, str | list[str]]) -> list[tuple[str, str]]:
    """A form's fields as posted (a list, once per value), to post them again."""
    return [(name, item) for name, value in form.items() for item in (value if isinstance(value, list) else [value])]


@router.post("/tokens/{token_id}/regenerate")
def regenerate_token(
    token_id: TokenId,
    request: Request,
    db: Db,
    identity: BrowserIdentity,
    csrf_token: FormText = "",
    reauth_password: FormText = "",
) -> Response:
    """A new secret for one of the person's tokens, with the same name, expiry and limits: the
    rotation of the API, by its owner signed in."""
    check_csrf(request, csrf_token)
    asked = recent_sign_in(request, db, identity, what="Regenerating a token", back="/tokens", password=reauth_password)
    if asked is not None:
        return asked
    runtime = get_runtime(request)
    secret, row = token_lifecycle.rotate_token(
        db,
        runtime.keys,
        token_id,
        identity.user.id,
        prefix=runtime.settings.token_prefix,
        actor=identity.username,
        presented_token_id=None,
        signed_in=True,
        ip=client_ip(request),
    )
    db.commit()  # as for a new token: before the page is drawn
    return _tokens_page(request, db, identity, new_token=secret, new_row=row, regenerated=True)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(
    token_id: TokenId, request: Request, db: Db, identity: BrowserIdentity, csrf_token: FormText = ""
) -> Response:
    check_csrf(request, csrf_token)
    token_lifecycle.revoke_token(db, token_id, identity.user.id, actor=identity.username, ip=client_ip(request))
    return RedirectResponse(f"/tokens?revoked={token_id}", status_code=303)


# --- My Applications --------------------------------------------------------------------------


@router.get("/applications")
def show_applications(request: Request, db: Db, identity: BrowserIdentity) -> Response:
    return applications_page(request, db, identity)


def applications_page(
    request: Request, db: Session, identity: Identity, *, status: int = 200, **context: object
) -> Response:
    settings = get_runtime(request).settings
    base = settings.public_url
    mine = catalog.projects_of(db, identity.user.id)
    return render(
        request,
        "applications.html",
        {
            "projects": mine,
            "releases": {project.id: releases.released_versions(db, project.id)[::-1] for project, _role in mine},
            "git_base": f"{base}/git",
            "maven_url": f"{base}/maven/studio/",
            "server_id": MAVEN_SERVER_ID,
            # The Trusted publishers section, for the projects the person may write to (workload identity).
            "publishers": {project.id: ci_tokens.overview(db, project.id) for project, role in mine if role == "write"},
            "audience": settings.workload_audience,
            "scopes": SCOPES,
            "default_publisher_scopes": trusted_publishers.DEFAULT_SCOPES,
            **context,
        },
        status=status,
    )


# The token the settings.xml entry is filled with: reading the Studio repository, nothing else.
MAVEN_TOKEN_NAME = "Maven settings.xml"


@router.post("/applications/maven-token")
def fill_maven_token(
    request: Request, db: Db, identity: BrowserIdentity, csrf_token: FormText = "", reauth_password: FormText = ""
) -> Response:
    """A token for ~/.m2/settings.xml, made and put in its <server> entry: maven:read on every
    project of the person's (the entry is one for the whole repository), shown this once."""
    check_csrf(request, csrf_token)
    asked = recent_sign_in(
        request, db, identity, what="Creating a token", back="/applications", password=reauth_password
    )
    if asked is not None:
        return asked
    runtime = get_runtime(request)
    max_days = runtime.settings.max_token_lifetime_days
    secret, row = token_lifecycle.create_token(
        db,
        runtime.keys,
        identity.user.id,
        token_lifecycle.unused_name(db, identity.user.id, MAVEN_TOKEN_NAME),
        prefix=runtime.settings.token_prefix,
        actor=identity.username,
        scopes=["maven:read"],
        expires_at=token_lifecycle.expiry_in_days(max_days) if max_days else None,
        max_lifetime_days=max_days,
        ip=client_ip(request),
    )
    db.commit()  # as for a token made on My Tokens: before the page is drawn
    return applications_page(request, db, identity, new_token=secret, new_row=row)
