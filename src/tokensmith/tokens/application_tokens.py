"""Application tokens: what the reference's ``/authentication/token`` gives an application.

An application (the reference's command-line tool, say) is handed a person's personal token
once, and asks for a token of its own, derived from it, which it keeps instead. The rules:

- **Never wider than its parent**: the parent's scopes, or fewer (``permission``, below); the
  same projects and allowed addresses; expiring when the parent does, or sooner (the
  deployment's longest lifetime).
- **One level**: an application token cannot derive another, nor be rotated; it can do what its
  scopes allow on every route, like any token.
- **Revoked with its parent**, whatever revokes the parent (its owner, an administrator, a leak
  report, push protection, a rotation, a disabled account): ``token_lifecycle._revoke``, the
  one revocation path, revokes a token's live children with it.
- Named “APPLICATION on device DEVICE” (numbered when taken), listed under its parent; each
  request makes a new one, at most ``MAX_PER_PARENT`` live under one parent.
- ``revoke=true``: the application signs out, revoking the application token it presents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tokensmith.audit.trail import RevokeReason
from tokensmith.clock import utcnow
from tokensmith.errors import Conflict, InsufficientScope, InvalidInput, NotPermitted, TokenExpired, TokenRevoked
from tokensmith.projects import publishers as trusted_publishers
from tokensmith.store.database import rows_changed
from tokensmith.store.models import PersonalToken
from tokensmith.store.server_keys import ServerKeys
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import limits as token_limits
from tokensmith.tokens import listing as token_listing

MAX_APPLICATION = 50
MAX_DEVICE = 100
MAX_PERMISSION = 200
MAX_PER_PARENT = 50
# Signed out by the application itself, and revoked with its parent: what the owner did, through
# a tool or on the parent, and so told by no mail of its own (notices.py).
SIGNED_OUT = RevokeReason.APPLICATION


@dataclass(frozen=True)
class Application:
    """An application asking for a token: its name, the device it runs on, and ``permission``."""

    application: str
    device: str
    permission: str | None = None

    @classmethod
    def of(cls, application: str | None, device: str | None, permission: str | None) -> Application:
        """The request's parameters checked, or InvalidInput saying which is wrong."""
        return cls(
            _label(application, "applicationName", MAX_APPLICATION, "the application's name, like nuxeo-cli"),
            _label(device, "deviceId", MAX_DEVICE, "an identifier of the device it runs on"),
            _label(permission, "permission", MAX_PERMISSION) if permission and permission.strip() else None,
        )

    @property
    def name(self) -> str:
        """The token's name, as a person finds it on My Tokens."""
        application = self.application
        room = token_lifecycle.MAX_NAME_LENGTH - 5 - len(f"{application} on device ")
        device = self.device if len(self.device) <= room else self.device[: room - 1] + "…"
        return f"{application} on device {device}"


def _label(value: str | None, parameter: str, limit: int, what: str = "") -> str:
    if value is None or not value.strip():
        raise InvalidInput(f"{parameter} is missing: give {what}.")
    value = value.strip()
    if len(value) > limit:
        raise InvalidInput(f"{parameter} has at most {limit} characters; this one has {len(value):,}.")
    if not token_lifecycle.readable(value):
        raise InvalidInput(f"{parameter} cannot contain control or invisible formatting characters.")
    return value


def scopes_for(permission: str | None, held: tuple[str, ...]) -> tuple[str, ...]:
    """The scopes an application token gets.

    ``permission`` naming Tokensmith scopes (``git:read maven:read``, separated by spaces or
    commas) narrows it to those, each of which the parent must hold. Anything else is the
    reference's own word for it (its command-line tool sends ``AMIREAD`` and then releases
    with the token, so the word cannot mean read-only): recorded, and the parent's scopes kept.
    """
    if permission is None or ":" not in permission:
        return held
    asked = token_limits.validate_scopes(re.split(r"[\s,]+", permission))
    for scope in asked:
        if scope not in held:
            raise InsufficientScope(scope, held)
    return asked


def derive_token(
    session: Session,
    keys: ServerKeys,
    parent_id: int,
    owner_id: int,
    asked: Application,
    *,
    prefix: str,
    actor: str,
    ip: str | None,
    max_lifetime_days: int | None = None,
) -> tuple[str, PersonalToken]:
    """A new application token under ``parent_id``, one of ``owner_id``'s live personal tokens:
    ``(secret, row)``. Show the secret once, then drop it."""
    parent = hold_live_parent(session, parent_id, owner_id)
    trusted_publishers.not_for_ci(parent.owner, "an application token")
    if parent.parent_id is not None:
        raise NotPermitted(
            "An application token cannot make another: present the personal token it was made "
            "from (your username and a personal access token)."
        )
    live_children = session.scalars(
        select(func.count())
        .select_from(PersonalToken)
        .where(PersonalToken.parent_id == parent.id, PersonalToken.revoked_at.is_(None))
    ).one()
    if live_children >= MAX_PER_PARENT:
        raise Conflict(
            f"The token “{parent.name}” has {MAX_PER_PARENT} live application tokens already: revoke "
            "those no longer used (My Tokens lists them under it), then try again."
        )
    now = utcnow()
    limits = token_limits.Limits(
        scopes_for(asked.permission, tuple(parent.scopes)),
        None if parent.projects is None else tuple(parent.projects),
        None if parent.allowed_ips is None else tuple(parent.allowed_ips),
    )
    return token_lifecycle.under_a_free_name(
        asked.name,
        lambda name: token_lifecycle.mint_checked(
            session,
            keys,
            owner_id,
            name,
            limits,
            prefix=prefix,
            actor=actor,
            now=now,
            ip=ip,
            parent_id=parent.id,
            expires_at=_expiry(parent.expires_at, now, max_lifetime_days),
            parent_token_id=parent.id,
            parent_name=parent.name,
            application=asked.application,
            device=asked.device,
            permission=asked.permission,
        ),
    )


def hold_live_parent(session: Session, token_id: int, owner_id: int) -> PersonalToken:
    """The parent-to-be, live, held until this transaction ends: its revocation, in another
    transaction, waits for this one and then finds the child it makes (token_lifecycle._revoke);
    or this one waits for that revocation and finds the parent revoked.

    A write that changes nothing holds the row: PostgreSQL's row lock, SQLite's writer's turn
    (taken before anything is read, so nothing read here is from before the revocation)."""
    held = rows_changed(
        session,
        update(PersonalToken)
        .where(PersonalToken.id == token_id, PersonalToken.user_id == owner_id, PersonalToken.revoked_at.is_(None))
        .values(name=PersonalToken.name)
        .execution_options(synchronize_session=False),
    )
    parent = session.get(PersonalToken, token_id, populate_existing=True) if held else None
    if parent is None:
        raise TokenRevoked("This token was revoked just now.")
    if parent.expires_at is not None and parent.expires_at <= utcnow():
        raise TokenExpired("This token expired just now.")
    return parent


def _expiry(parent_expiry: datetime | None, now: datetime, max_lifetime_days: int | None) -> datetime | None:
    """The parent's expiry, or the deployment's longest lifetime from now when that comes first."""
    if max_lifetime_days is None:
        return parent_expiry
    latest = now + timedelta(days=max_lifetime_days)
    return latest if parent_expiry is None else min(parent_expiry, latest)


def sign_out(session: Session, token_id: int, owner_id: int, *, actor: str, ip: str | None) -> PersonalToken:
    """``revoke=true``: the application token presented revokes itself."""
    row = token_listing.get_live_token(session, token_id, owner_id)
    if row.parent_id is None:
        raise NotPermitted(
            "revoke=true signs an application out: it revokes the application token presented, "
            "and this is a personal token. Revoke a personal token on My Tokens, or with "
            "DELETE /api/v1/tokens/{id}."
        )
    return token_lifecycle.revoke_token(session, token_id, owner_id, actor=actor, reason=SIGNED_OUT, ip=ip)
