"""Personal access tokens: create, verify, use, revoke, rotate, report leaked.

The store keeps only ``HMAC-SHA256(server key, token)`` and a hint; the plain token exists
in memory while it is shown once. Every revocation, whoever asks for it, goes through
``_revoke`` so that each one is audited the same way.
"""

from __future__ import annotations

import hmac
import unicodedata
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from tokensmith import audit, tokens
from tokensmith.clock import display, utcnow
from tokensmith.errors import (
    AccountDisabled,
    Conflict,
    CredentialMalformed,
    InvalidInput,
    NotFound,
    NotPermitted,
    TokenExpired,
    TokenRevoked,
    TokenUnknown,
)
from tokensmith.models import PersonalToken, User
from tokensmith.server_keys import ServerKeys

PURPOSE = "token"
MAX_NAME_LENGTH = 100
MAX_EXPIRY_DAYS = 3650
# What a personal token may open: the platform's own services. Never the package repository.
DEFAULT_SCOPES = ("api", "git", "maven")
USE_RECORD_INTERVAL = timedelta(minutes=1)
MAX_LEAK_REPORT = 100
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}


def validate_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidInput("Give the token a name, so you can recognise it later.")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"A token name has at most {MAX_NAME_LENGTH} characters; this one has {len(name)}."
        )
    if any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in name):
        raise InvalidInput("A token name cannot contain control or invisible formatting characters.")
    return name


def expiry_in_days(days: int, now: datetime | None = None) -> datetime:
    if not 1 <= days <= MAX_EXPIRY_DAYS:
        raise InvalidInput(f"A token expires in 1 to {MAX_EXPIRY_DAYS} days, or never.")
    return (now or utcnow()) + timedelta(days=days)


def _digest(keys: ServerKeys, secret: str) -> bytes:
    return keys.digest(PURPOSE, secret)


def create_token(
    session: Session,
    keys: ServerKeys,
    owner: User,
    name: str,
    *,
    prefix: str,
    actor: str,
    expires_at: datetime | None = None,
    scopes: Iterable[str] = DEFAULT_SCOPES,
    ip: str | None = None,
) -> tuple[str, PersonalToken]:
    """Mint a token: ``(secret, row)``. Show the secret once, then drop it."""
    name = validate_name(name)
    now = utcnow()
    if expires_at is not None and expires_at <= now:
        raise InvalidInput("The expiration date must be in the future.")
    _ensure_name_free(session, owner, name, now)
    secret = tokens.generate(prefix)
    row = PersonalToken(
        user_id=owner.id,
        name=name,
        digest=_digest(keys, secret),
        key_version=keys.current,
        hint=tokens.hint(secret, prefix),
        scopes=list(scopes),
        created_at=now,
        expires_at=expires_at,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise Conflict(f"You already have a token named “{name}”. Choose another name.") from None
    row.owner = owner
    audit.record(
        session,
        "token.created",
        actor=actor,
        user_id=owner.id,
        ip=ip,
        token_id=row.id,
        name=name,
        hint=row.hint,
        expires_at=row.expires_at.isoformat() if row.expires_at else None,
    )
    return secret, row


def _ensure_name_free(session: Session, owner: User, name: str, now: datetime) -> None:
    existing = session.scalars(
        select(PersonalToken).where(
            PersonalToken.user_id == owner.id,
            PersonalToken.name == name,
            PersonalToken.revoked_at.is_(None),
        )
    ).first()
    if existing is None:
        return
    if existing.expires_at is not None and existing.expires_at <= now:
        raise Conflict(
            f"Your expired token “{name}” still holds that name. Revoke it first, or choose "
            "another name."
        )
    raise Conflict(f"You already have a token named “{name}”. Choose another name.")


def find_by_secret(session: Session, keys: ServerKeys, secret: str) -> PersonalToken | None:
    """The token row whose digest matches: one indexed lookup, one constant-time compare."""
    digests = keys.all_digests(PURPOSE, secret)
    column = PersonalToken.digest
    condition = column == digests[0] if len(digests) == 1 else column.in_(digests)
    row = session.scalars(select(PersonalToken).where(condition)).one_or_none()
    if row is None or not any(hmac.compare_digest(row.digest, digest) for digest in digests):
        return None
    return row


def verify_token(
    session: Session, keys: ServerKeys, secret: str, *, prefix: str, now: datetime | None = None
) -> PersonalToken:
    """The live token behind ``secret``, or the reason it is refused.

    A token whose checksum is wrong is refused here, before the store is asked.
    """
    tokens.parse(secret, prefix)
    row = find_by_secret(session, keys, secret)
    if row is None:
        raise TokenUnknown("Unknown or mistyped token.")
    if row.revoked_at is not None:
        cause = audit.REVOKE_CAUSES.get(row.revoked_reason or "")
        because = f" ({cause})" if cause else ""
        raise TokenRevoked(f"This token was revoked on {display(row.revoked_at)}{because}.")
    if row.expires_at is not None and row.expires_at <= (now or utcnow()):
        raise TokenExpired(f"This token expired on {display(row.expires_at)}.")
    if not row.owner.is_active:
        raise AccountDisabled("The account this token belongs to is disabled.")
    return row


def record_use(
    session: Session, row: PersonalToken, *, ip: str | None, agent: str | None
) -> None:
    """Note when and from where a token was used: at most one targeted write a minute."""
    now = utcnow()
    if row.last_used_at is not None and now - row.last_used_at < USE_RECORD_INTERVAL:
        return
    values = {"last_used_at": now, "last_used_ip": ip, "last_used_agent": agent[:200] if agent else None}
    session.execute(
        update(PersonalToken).where(PersonalToken.id == row.id).values(**values),
        execution_options={"synchronize_session": False},
    )
    for key, value in values.items():  # what was just written, without marking the row dirty
        set_committed_value(row, key, value)


def list_tokens(session: Session, owner: User) -> list[PersonalToken]:
    """The owner's tokens that are not revoked, expired ones included, newest first."""
    query = (
        select(PersonalToken)
        .where(PersonalToken.user_id == owner.id, PersonalToken.revoked_at.is_(None))
        .order_by(PersonalToken.created_at.desc(), PersonalToken.id.desc())
    )
    return list(session.scalars(query))


def get_live_token(session: Session, token_id: int, owner: User) -> PersonalToken:
    """One of the owner's unrevoked tokens. Anybody else's is NotFound, never NotPermitted."""
    row = session.scalars(
        select(PersonalToken).where(
            PersonalToken.id == token_id,
            PersonalToken.user_id == owner.id,
            PersonalToken.revoked_at.is_(None),
        )
    ).one_or_none()
    if row is None:
        raise NotFound("You have no live token with that id.")
    return row


def _revoke(
    session: Session, row: PersonalToken, *, actor: str, reason: str, ip: str | None = None
) -> None:
    row.revoked_at = utcnow()
    row.revoked_reason = reason
    session.flush()
    action = "token.leak_reported" if reason == "leak_reported" else "token.revoked"
    audit.record(
        session,
        action,
        actor=actor,
        user_id=row.user_id,
        ip=ip,
        token_id=row.id,
        name=row.name,
        hint=row.hint,
        reason=reason,
    )


def revoke_token(
    session: Session,
    token_id: int,
    owner: User,
    *,
    actor: str,
    reason: str = "owner",
    ip: str | None = None,
) -> PersonalToken:
    """Revoke one of ``owner``'s tokens: the page, the API, the client and admins call this."""
    row = get_live_token(session, token_id, owner)
    _revoke(session, row, actor=actor, reason=reason, ip=ip)
    return row


def revoke_all_tokens(session: Session, owner: User, *, actor: str, reason: str) -> int:
    rows = session.scalars(
        select(PersonalToken).where(
            PersonalToken.user_id == owner.id, PersonalToken.revoked_at.is_(None)
        )
    ).all()
    for row in rows:
        _revoke(session, row, actor=actor, reason=reason)
    return len(rows)


def rotate_token(
    session: Session,
    keys: ServerKeys,
    token_id: int,
    owner: User,
    *,
    prefix: str,
    actor: str,
    ip: str | None = None,
) -> tuple[str, PersonalToken]:
    """Replace a token's secret: same name, expiry and scopes; the old secret stops at once."""
    old = get_live_token(session, token_id, owner)
    if old.expires_at is not None and old.expires_at <= utcnow():
        raise NotPermitted("An expired token cannot be rotated: create a new one instead.")
    _revoke(session, old, actor=actor, reason="rotated", ip=ip)
    secret, new = create_token(
        session,
        keys,
        owner,
        old.name,
        prefix=prefix,
        actor=actor,
        expires_at=old.expires_at,
        scopes=old.scopes,
        ip=ip,
    )
    audit.record(
        session,
        "token.rotated",
        actor=actor,
        user_id=owner.id,
        ip=ip,
        token_id=new.id,
        replaced_token_id=old.id,
        name=new.name,
        hint=new.hint,
    )
    return secret, new


def revoke_reported_tokens(
    session: Session, keys: ServerKeys, reported: Iterable[str], *, prefix: str, ip: str | None
) -> int:
    """Revoke every live token among ``reported`` and tell each owner. Returns the count,
    which callers must not reveal to the reporter."""
    revoked = 0
    for secret in set(reported):
        try:
            tokens.parse(secret, prefix)
        except CredentialMalformed:
            continue
        row = find_by_secret(session, keys, secret)
        if row is not None and row.revoked_at is None:
            _revoke(session, row, actor="leak report", reason="leak_reported", ip=ip)
            revoked += 1
    return revoked
