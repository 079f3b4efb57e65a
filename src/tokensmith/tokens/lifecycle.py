"""Personal access tokens: create, verify, use, revoke, rotate, report leaked.

The store keeps only ``HMAC-SHA256(server key, token)`` and a hint; the plain token exists
in memory while it is shown once. Every revocation, whoever asks for it, goes through
``_revoke`` so that each one is audited the same way.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypedDict, TypeVar, Unpack

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from tokensmith.audit import trail
from tokensmith.audit.trail import AuditAction, RevokeReason
from tokensmith.clock import utcnow
from tokensmith.errors import (
    Conflict,
    CredentialMalformed,
    InvalidInput,
    NotFound,
    NotPermitted,
)
from tokensmith.identity import VerifiedToken
from tokensmith.projects import publishers as trusted_publishers
from tokensmith.projects.catalog import project_ids_of
from tokensmith.scopes import ALL_SCOPES
from tokensmith.store.bulk_insert import BulkInsert
from tokensmith.store.models import PersonalToken, User
from tokensmith.store.server_keys import ServerKeys
from tokensmith.tokens import check as token_check
from tokensmith.tokens import format as token_format
from tokensmith.tokens import limits as token_limits
from tokensmith.tokens import listing as token_listing

MAX_NAME_LENGTH = 100


MAX_EXPIRY_DAYS = 3650


# What a personal token may open unless limited: the platform's own services (token_limits.py).
# Never the package repository.
DEFAULT_SCOPES = ALL_SCOPES


MAX_LEAK_REPORT = 100  # tokens in one leak report (POST /api/v1/tokens/revoke)


_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
_TOKENS = PersonalToken.__table__
# CI tokens' (mint_uniquely_named): each row's id back with its digest, which is unique (asking
# SQLAlchemy for the rows' order would cost SQLite one statement a row).
_INSERT_TOKENS = BulkInsert(
    _TOKENS,
    (
        "user_id",
        "name",
        "digest",
        "key_version",
        "hint",
        "scopes",
        "projects",
        "allowed_ips",
        "created_at",
        "expires_at",
        "parent_id",
    ),
    lambda _dialect, rows: insert(_TOKENS).values(rows).returning(_TOKENS.c.id, _TOKENS.c.digest),
)


T = TypeVar("T")


class PushedAt(TypedDict):
    """Where push protection found a token: its audit event's details and its revocation's."""

    repository: str
    commit: str
    path: str


class _LastUse(TypedDict, total=False):
    last_used_at: str | None
    last_used_ip: str | None
    last_used_agent: str | None


def readable(text: str) -> bool:
    """Whether ``text`` has no control or invisible formatting character: what a name shown to
    a person may hold."""
    return not any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in text)


def validate_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidInput("Give the token a name, so you can recognise it later.")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"A token name has at most {MAX_NAME_LENGTH} characters; this one has {len(name)}.")
    if not readable(name):
        raise InvalidInput("A token name cannot contain control or invisible formatting characters.")
    return name


def expiry_in_days(days: int, now: datetime | None = None) -> datetime:
    if not 1 <= days <= MAX_EXPIRY_DAYS:
        raise InvalidInput(f"A token expires in 1 to {MAX_EXPIRY_DAYS} days, or never.")
    return (now or utcnow()) + timedelta(days=days)


def _digest(keys: ServerKeys, secret: str) -> bytes:
    return keys.digest(token_check.PURPOSE, secret)


def create_token(
    session: Session,
    keys: ServerKeys,
    owner_id: int,
    name: str,
    *,
    prefix: str,
    actor: str,
    expires_at: datetime | None = None,
    scopes: Iterable[str] = DEFAULT_SCOPES,
    projects: Iterable[str] | None = None,
    allowed_ips: Iterable[str] | None = None,
    max_lifetime_days: int | None = None,
    ip: str | None = None,
) -> tuple[str, PersonalToken]:
    """Mint a token: ``(secret, row)``. Show the secret once, then drop it.

    Its limits (token_limits.py): ``scopes`` (default all five), ``projects`` (None: every
    project the owner can reach, now and later) and ``allowed_ips`` (None: anywhere), each
    checked here; ``max_lifetime_days`` is the deployment's TOKENSMITH_MAX_TOKEN_LIFETIME_DAYS.
    Bad input is InvalidInput, and nothing is made.
    """
    name = validate_name(name)
    owner = session.get(User, owner_id)
    if owner is not None:
        trusted_publishers.not_for_ci(owner, "a token made by hand")
    now = utcnow()
    if expires_at is not None and expires_at <= now:
        raise InvalidInput("The expiration date must be in the future.")
    token_limits.check_lifetime(expires_at, now, max_lifetime_days)
    reachable = project_ids_of(session, owner_id) if projects is not None else set()
    limits = token_limits.validate(scopes=scopes, projects=projects, allowed_ips=allowed_ips, reachable=reachable)
    return mint_checked(
        session, keys, owner_id, name, limits, prefix=prefix, actor=actor, expires_at=expires_at, now=now, ip=ip
    )


def mint_checked(
    session: Session,
    keys: ServerKeys,
    owner_id: int,
    name: str,
    limits: token_limits.Limits,
    *,
    prefix: str,
    actor: str,
    expires_at: datetime | None,
    now: datetime,
    ip: str | None,
    audited: bool = True,
    parent_id: int | None = None,
    **details: Any,
) -> tuple[str, PersonalToken]:
    """The token row and its ``token.created`` event (with ``details``), for limits checked
    already: a new token's, the ones a rotated token carries over as they were (a rotation writes
    one event of its own, ``audited=False``), or an application token's (under ``parent_id``,
    ``token.derived``), taken from its parent (application_tokens.py). CI tokens, whose names
    are unique already, are written by ``mint_uniquely_named``."""
    _ensure_name_free(session, owner_id, name, now)
    secret, values = _new_values(keys, owner_id, name, limits, prefix, expires_at, now, parent_id)
    row = PersonalToken(**values)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise Conflict(f"You already have a token named “{name}”. Choose another name.") from None
    if not audited:
        return secret, row
    trail.record(
        session,
        AuditAction.TOKEN_CREATED if parent_id is None else AuditAction.TOKEN_DERIVED,
        actor=actor,
        user_id=owner_id,
        ip=ip,
        token_id=row.id,
        name=name,
        hint=row.hint,
        expires_at=row.expires_at.isoformat() if row.expires_at else None,
        **limits_of(row),
        **details,
    )
    return secret, row


@dataclass(frozen=True)
class UniquelyNamed:
    """A token to mint under a name its caller made unique (a CI token's: its ID token's own)."""

    owner_id: int
    name: str
    limits: token_limits.Limits
    expires_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Minted:
    """A token ``mint_uniquely_named`` wrote: its secret (shown once), its id and its row's
    values, plain (a ``PersonalToken`` object for each cost a batch of exchanges a tenth of its
    CPU: docs/benchmarks.md)."""

    secret: str = field(repr=False)
    id: int
    user_id: int
    name: str
    hint: str
    scopes: list[str]
    projects: list[str] | None
    allowed_ips: list[str] | None
    created_at: datetime
    expires_at: datetime | None


def mint_uniquely_named(
    session: Session,
    keys: ServerKeys,
    wanted: Sequence[UniquelyNamed],
    *,
    prefix: str,
    parent_id: int | None = None,
) -> list[Minted]:
    """Tokens whose limits were checked and whose names are unique already, written by one
    ``INSERT … RETURNING id`` of all their rows (SQLAlchemy's insertmanyvalues) on the session's
    connection: the tokens of one CI exchange or of a batch of them (workload_identity.py,
    exchange_batches.py). No savepoint: a name taken after all fails the whole unit. No event:
    their caller writes its own. What comes back are plain values, not rows of the session (an
    ORM flush cost an exchange three times the statement: docs/benchmarks.md)."""
    made = [
        _new_values(keys, one.owner_id, one.name, one.limits, prefix, one.expires_at, one.created_at, parent_id)
        for one in wanted
    ]
    written = _INSERT_TOKENS.execute(session.connection(), [values for _secret, values in made])
    ids = {row[1]: row[0] for row in written}  # digest: id
    return [
        Minted(
            secret,
            ids[values["digest"]],
            values["user_id"],
            values["name"],
            values["hint"],
            values["scopes"],
            values["projects"],
            values["allowed_ips"],
            values["created_at"],
            values["expires_at"],
        )
        for secret, values in made
    ]


def _new_values(
    keys: ServerKeys,
    owner_id: int,
    name: str,
    limits: token_limits.Limits,
    prefix: str,
    expires_at: datetime | None,
    now: datetime,
    parent_id: int | None,
) -> tuple[str, dict[str, Any]]:
    """A new token and the values of its row."""
    secret = token_format.generate(prefix)
    values = {
        "user_id": owner_id,
        "name": name,
        "digest": _digest(keys, secret),
        "key_version": keys.current,
        "hint": token_format.hint(secret, prefix),
        "scopes": list(limits.scopes),
        "projects": _listed(limits.projects),
        "allowed_ips": _listed(limits.allowed_ips),
        "created_at": now,
        "expires_at": expires_at,
        "parent_id": parent_id,
    }
    return secret, values


def under_a_free_name(base: str, make: Callable[[str], T]) -> T:
    """``make(name)`` under ``base``, or “base (2)”, “base (3)”… while the owner has a live token
    of that name: for names a person did not type (a device's login, an application's token)."""
    base = base[: MAX_NAME_LENGTH - 5]
    for number in range(1, 100):
        try:
            return make(base if number == 1 else f"{base} ({number})")
        except Conflict:
            continue
    raise Conflict(f"You have 99 live tokens named “{base}”: revoke some on My Tokens, then try again.")


def _listed(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


def _tupled(values: list[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


def limits_of(row: PersonalToken | VerifiedToken | Minted) -> dict[str, Any]:
    """A token's limits as the audit trail keeps them."""
    return {"scopes": list(row.scopes), "projects": row.projects, "allowed_ips": row.allowed_ips}


def unused_name(session: Session, owner_id: int, wanted: str) -> str:
    """``wanted``, or ``wanted (2)``, ``wanted (3)``…: the first that none of the owner's live
    tokens holds (for a token the site names itself)."""
    taken = set(
        session.scalars(
            select(PersonalToken.name).where(PersonalToken.user_id == owner_id, PersonalToken.revoked_at.is_(None))
        )
    )
    number, name = 1, wanted
    while name in taken:
        number += 1
        name = f"{wanted} ({number})"
    return name


def _ensure_name_free(session: Session, owner_id: int, name: str, now: datetime) -> None:
    existing = session.scalars(
        select(PersonalToken).where(
            PersonalToken.user_id == owner_id,
            PersonalToken.name == name,
            PersonalToken.revoked_at.is_(None),
        )
    ).first()
    if existing is None:
        return
    if existing.expires_at is not None and existing.expires_at <= now:
        raise Conflict(f"Your expired token “{name}” still holds that name. Revoke it first, or choose another name.")
    raise Conflict(f"You already have a token named “{name}”. Choose another name.")


def revoke_any_token(session: Session, token_id: int, *, actor: str, ip: str | None = None) -> PersonalToken:
    """An administrator revokes anybody's token (the inventory): the owner's log says so."""
    row = session.get(PersonalToken, token_id)
    if row is None or row.revoked_at is not None:
        raise NotFound("That token is not live any more: it was revoked meanwhile, or never existed.")
    return revoke_token(session, token_id, row.user_id, actor=actor, reason=RevokeReason.ADMIN, ip=ip)


def _revoke(
    session: Session,
    row: PersonalToken,
    *,
    actor: str,
    reason: RevokeReason,
    ip: str | None = None,
    audited: bool = True,
    **details: Any,
) -> bool:
    """Revoke ``row`` unless someone else just did: False then, and nothing is written
    (``_revoke_each`` for one token)."""
    return bool(_revoke_each(session, [(row, details)], actor=actor, reason=reason, ip=ip, audited=audited))


REVOKE_BATCH = 1000  # tokens one revoking statement names at most


def _revoke_each(
    session: Session,
    rows: Sequence[tuple[PersonalToken, dict[str, Any]]],
    *,
    actor: str,
    reason: RevokeReason,
    ip: str | None = None,
    audited: bool = True,
) -> list[PersonalToken]:
    """Revoke each of ``rows`` (with the details its event keeps) that nobody else just revoked,
    and return those. Their application tokens (application_tokens.py) go with them, whatever the
    reason, each with its own event. ``audited=False``: the caller writes the one event that tells
    what happened (a rotation). Every revocation, whoever asks for it, comes here.

    One conditional UPDATE (a thousand tokens at a time) that returns the rows it changed, so
    that of two revocations at once (a rotation and a reuse of the rotated token, on two
    instances) only one happens and is audited; PostgreSQL re-reads the condition once the other
    transaction's lock is gone. One query then finds the live children of all of them. An
    application token being derived holds its parent's row until it is in
    (application_tokens.hold_live_parent), so that the children read here include it."""
    if not rows:
        return []
    now, by_id = utcnow(), {row.id: (row, details) for row, details in rows}
    ids, changed = list(by_id), set[int]()
    for start in range(0, len(ids), REVOKE_BATCH):
        changed.update(
            session.scalars(
                update(PersonalToken)
                .where(PersonalToken.id.in_(ids[start : start + REVOKE_BATCH]), PersonalToken.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason=reason)
                .returning(PersonalToken.id)
                .execution_options(synchronize_session=False)
            )
        )
    revoked = [by_id[token_id] for token_id in ids if token_id in changed]
    for row, details in revoked:
        set_committed_value(row, "revoked_at", now)
        set_committed_value(row, "revoked_reason", reason)
        if audited:
            _record_revocation(session, row, actor=actor, reason=reason, ip=ip, **details)
    parents = [row.id for row, _details in revoked if row.parent_id is None]
    children: list[PersonalToken] = []
    for start in range(0, len(parents), REVOKE_BATCH):
        children += session.scalars(
            select(PersonalToken)
            .where(
                PersonalToken.parent_id.in_(parents[start : start + REVOKE_BATCH]), PersonalToken.revoked_at.is_(None)
            )
            .order_by(PersonalToken.id)
        ).all()
    _revoke_each(
        session,
        [(child, {"parent_token_id": child.parent_id}) for child in children],
        actor=actor,
        reason=RevokeReason.PARENT_REVOKED,
        ip=ip,
    )
    return [row for row, _details in revoked]


# Revocations of a token found where it should not be: each has an event of its own, which tells
# the owner where they last used it.
_FOUND_ELSEWHERE = {
    RevokeReason.LEAK_REPORTED: AuditAction.TOKEN_LEAK_REPORTED,
    RevokeReason.SECRET_SCANNING: AuditAction.TOKEN_FOUND_BY_SCANNING,
}


def _record_revocation(
    session: Session, row: PersonalToken, *, actor: str, reason: RevokeReason, ip: str | None, **details: Any
) -> None:
    found = _FOUND_ELSEWHERE.get(reason)
    # A leak notice tells the owner where *they* last used the token (where to replace it),
    # not where the reporter was: that address is kept for administrators only.
    where: _LastUse = (
        {
            "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
            "last_used_ip": row.last_used_ip,
            "last_used_agent": row.last_used_agent,
        }
        if found
        else {}
    )
    trail.record(
        session,
        found or AuditAction.TOKEN_REVOKED,
        actor=actor,
        user_id=row.user_id,
        ip=ip,
        token_id=row.id,
        name=row.name,
        hint=row.hint,
        reason=reason,
        **where,
        **details,
    )


def revoke_token(
    session: Session,
    token_id: int,
    owner_id: int,
    *,
    actor: str,
    reason: RevokeReason = RevokeReason.OWNER,
    ip: str | None = None,
) -> PersonalToken:
    """Revoke one of the owner's tokens: the page, the API, the client and admins call this."""
    row = token_listing.get_live_token(session, token_id, owner_id)
    if not _revoke(session, row, actor=actor, reason=reason, ip=ip):
        raise NotFound("You have no live token with that id.")
    return row


def revoke_all_tokens(session: Session, owner_id: int, *, actor: str, reason: RevokeReason) -> int:
    """Every live token of the owner, application tokens with their parents: how many."""
    rows = session.scalars(
        select(PersonalToken)
        .where(PersonalToken.user_id == owner_id, PersonalToken.revoked_at.is_(None))
        .order_by(PersonalToken.id)
    ).all()
    parents: list[tuple[PersonalToken, dict[str, Any]]] = [(row, {}) for row in rows if row.parent_id is None]
    revoked = len(_revoke_each(session, parents, actor=actor, reason=reason))
    orphans: list[tuple[PersonalToken, dict[str, Any]]] = [
        (row, {}) for row in rows if row.parent_id is not None and row.revoked_at is None
    ]
    return revoked + len(_revoke_each(session, orphans, actor=actor, reason=reason))


def rotate_token(
    session: Session,
    keys: ServerKeys,
    token_id: int,
    owner_id: int,
    *,
    prefix: str,
    actor: str,
    presented_token_id: int | None,
    signed_in: bool = False,
    ip: str | None = None,
) -> tuple[str, PersonalToken]:
    """Replace a token's secret: same name, expiry and limits; the old secret stops at once.

    Through the API a token rotates only itself: ``presented_token_id`` is the token the request
    came with (None for a password), checked once the id is known to be the owner's, so that
    anybody else's id is a 404 as on every other route, and another of one's own tokens a 403.
    The owner ``signed_in`` to the web site (Regenerate on My Tokens) may rotate any of theirs."""
    old = token_listing.get_live_token(session, token_id, owner_id)
    trusted_publishers.not_for_ci(old.owner, "rotating a token (a CI job asks its trusted publisher for a new one)")
    if old.parent_id is not None:
        raise NotPermitted(
            "An application token cannot be rotated: revoke it, and let the application ask "
            "for a new one (link it again)."
        )
    if not signed_in and presented_token_id != token_id:
        raise NotPermitted("A token can rotate only itself: authenticate with the token you want to rotate.")
    if old.expires_at is not None and old.expires_at <= utcnow():
        raise NotPermitted("An expired token cannot be rotated: create a new one instead.")
    # One event tells the whole act (the security log, the mail): not a revocation and a new
    # token besides, which would read as if a token had been made.
    if not _revoke(session, old, actor=actor, reason=RevokeReason.ROTATED, ip=ip, audited=False):
        raise NotFound("You have no live token with that id.")
    # The limits carry over as they are: the replacement may do exactly what the old one could.
    carried = token_limits.Limits(tuple(old.scopes), _tupled(old.projects), _tupled(old.allowed_ips))
    secret, new = mint_checked(
        session,
        keys,
        owner_id,
        old.name,
        carried,
        prefix=prefix,
        actor=actor,
        expires_at=old.expires_at,
        now=utcnow(),
        ip=ip,
        audited=False,
    )
    old.replaced_by_id = new.id
    trail.record(
        session,
        AuditAction.TOKEN_ROTATED,
        actor=actor,
        user_id=owner_id,
        ip=ip,
        token_id=new.id,
        replaced_token_id=old.id,
        name=new.name,
        hint=new.hint,
        replaced_hint=old.hint,
        expires_at=new.expires_at.isoformat() if new.expires_at else None,
        **limits_of(new),
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
            token_format.parse(secret, prefix)
        except CredentialMalformed:
            continue
        found = token_check.lookup(session, keys, secret)
        if found is not None and found.revoked_at is None:
            row = session.get_one(PersonalToken, found.id)
            revoked += _revoke(session, row, actor="leak report", reason=RevokeReason.LEAK_REPORTED, ip=ip)
    return revoked


MAX_SUCCESSORS = 100  # a chain of rotations longer than this is not followed further


def revoke_successors(session: Session, replaced_token_id: int) -> int:
    """A rotated token was presented: it was copied before its rotation, so whoever copied it
    may have the replacement too. Revoke the token that replaced it, and each of that one's
    replacements if it was rotated again; each revocation is audited and tells the owner why.
    Returns how many were revoked (0 when a reuse before this one revoked them already)."""
    revoked = 0
    row = session.get(PersonalToken, replaced_token_id)
    for _ in range(MAX_SUCCESSORS):
        if row is None or row.replaced_by_id is None:
            break
        row = session.get(PersonalToken, row.replaced_by_id, populate_existing=True)
        if row is not None and row.revoked_at is None:
            if _revoke(
                session,
                row,
                actor="rotation reuse",
                reason=RevokeReason.ROTATION_REUSE,
                reused_token_id=replaced_token_id,
            ):
                revoked += 1
            else:  # revoked meanwhile, perhaps rotated once more: follow it to its newest successor
                session.refresh(row)
    return revoked


def revoke_again(session: Session, row: PersonalToken, *, actor: str, **details: Any) -> bool:
    """A token revoked after the backup a restore brought back, revoked again (the revocation
    journal's replay, backups/revocation_journal.py); ``details``: what the journal says of it."""
    return _revoke(session, row, actor=actor, reason=RevokeReason.RESTORED_REVOCATION, **details)


def revoke_pushed_token(session: Session, row: PersonalToken, *, pusher: str, **where: Unpack[PushedAt]) -> bool:
    """Push protection found ``row`` in a push (``where``: repository, commit, path): revoke it,
    with the pusher as the actor."""
    return _revoke(session, row, actor=pusher, reason=RevokeReason.PUSH_PROTECTION, **where)


def revoke_found_tokens(
    session: Session,
    found: Sequence[tuple[PersonalToken, dict[str, Any]]],
    *,
    actor: str,
    reason: RevokeReason,
    ip: str | None,
) -> int:
    """Tokens found where they should not be (GitHub's secret scanning: secret_scanning.py):
    revoke them, each with where it was found (its details: url, source...). How many."""
    return len(_revoke_each(session, found, actor=actor, reason=reason, ip=ip))


def revoke_publisher_tokens(
    session: Session, rows: Sequence[PersonalToken], *, actor: str, ip: str | None
) -> list[PersonalToken]:
    """The tokens a trusted publisher gave, as it is removed (ci_tokens.remove_publisher): revoke
    those nobody else just did, in one statement, and return them."""
    return _revoke_each(session, [(row, {}) for row in rows], actor=actor, reason=RevokeReason.PUBLISHER_REMOVED, ip=ip)


def revoke_unused_tokens(
    session: Session, unused: Sequence[tuple[PersonalToken, dict[str, Any]]], *, actor: str
) -> int:
    """Tokens nobody has used for the deployment's limit (sweep.py): revoke them, each saying
    since when (its details: unused_since, after_days). How many."""
    return len(_revoke_each(session, unused, actor=actor, reason=RevokeReason.UNUSED))
