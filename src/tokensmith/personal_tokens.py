"""Personal access tokens: create, verify, use, revoke, rotate, report leaked.

The store keeps only ``HMAC-SHA256(server key, token)`` and a hint; the plain token exists
in memory while it is shown once. Every revocation, whoever asks for it, goes through
``_revoke`` so that each one is audited the same way.
"""

from __future__ import annotations

import functools
import hmac
import json
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects import postgresql as postgresql_dialect, sqlite as sqlite_dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from tokensmith import audit, token_limits, tokens
from tokensmith.accounts import Account
from tokensmith.clock import display, utcnow
from tokensmith.db import Connectable, fetch_one_on_driver
from tokensmith.errors import (
    AccountDisabled,
    Conflict,
    CredentialMalformed,
    InvalidInput,
    NotFound,
    NotPermitted,
    TokenExpired,
    TokenReplaced,
    TokenRevoked,
    TokenUnknown,
)
from tokensmith.models import PersonalToken, User
from tokensmith.server_keys import ServerKeys
from tokensmith.usage import RECORD_INLINE, TokenUse, UsageRecorder

PURPOSE = "token"
MAX_NAME_LENGTH = 100
MAX_EXPIRY_DAYS = 3650
# What a personal token may open unless limited: the platform's own services (token_limits.py).
# Never the package repository.
DEFAULT_SCOPES = token_limits.ALL_SCOPES
USE_RECORD_INTERVAL = timedelta(minutes=1)
MAX_LEAK_REPORT = 100
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
T = TypeVar("T")


def readable(text: str) -> bool:
    """Whether ``text`` has no control or invisible formatting character: what a name shown to
    a person may hold."""
    return not any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in text)


def validate_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidInput("Give the token a name, so you can recognise it later.")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"A token name has at most {MAX_NAME_LENGTH} characters; this one has {len(name)}."
        )
    if not readable(name):
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
    now = utcnow()
    if expires_at is not None and expires_at <= now:
        raise InvalidInput("The expiration date must be in the future.")
    token_limits.check_lifetime(expires_at, now, max_lifetime_days)
    limits = token_limits.validate(session, owner_id, scopes=scopes, projects=projects, allowed_ips=allowed_ips)
    return mint_checked(session, keys, owner_id, name, limits, prefix=prefix, actor=actor, expires_at=expires_at,
                        now=now, ip=ip)


def mint_checked(
    session: Session, keys: ServerKeys, owner_id: int, name: str, limits: token_limits.Limits, *, prefix: str,
    actor: str, expires_at: datetime | None, now: datetime, ip: str | None, audited: bool = True,
    parent_id: int | None = None, **details: Any,
) -> tuple[str, PersonalToken]:
    """The token row and its ``token.created`` event (with ``details``), for limits checked
    already: a new token's, the ones a rotated token carries over as they were (a rotation writes
    one event of its own, ``audited=False``), or an application token's (under ``parent_id``,
    ``token.derived``), taken from its parent (application_tokens.py)."""
    _ensure_name_free(session, owner_id, name, now)
    secret = tokens.generate(prefix)
    row = PersonalToken(
        user_id=owner_id,
        name=name,
        digest=_digest(keys, secret),
        key_version=keys.current,
        hint=tokens.hint(secret, prefix),
        scopes=list(limits.scopes),
        projects=_listed(limits.projects),
        allowed_ips=_listed(limits.allowed_ips),
        created_at=now,
        expires_at=expires_at,
        parent_id=parent_id,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise Conflict(f"You already have a token named “{name}”. Choose another name.") from None
    if not audited:
        return secret, row
    audit.record(
        session,
        "token.created" if parent_id is None else "token.derived",
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


def limits_of(row: PersonalToken | VerifiedToken) -> dict[str, Any]:
    """A token's limits as the audit trail keeps them."""
    return {"scopes": list(row.scopes), "projects": row.projects, "allowed_ips": row.allowed_ips}


def unused_name(session: Session, owner_id: int, wanted: str) -> str:
    """``wanted``, or ``wanted (2)``, ``wanted (3)``…: the first that none of the owner's live
    tokens holds (for a token the site names itself)."""
    taken = set(session.scalars(select(PersonalToken.name).where(
        PersonalToken.user_id == owner_id, PersonalToken.revoked_at.is_(None))))
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
        raise Conflict(
            f"Your expired token “{name}” still holds that name. Revoke it first, or choose "
            "another name."
        )
    raise Conflict(f"You already have a token named “{name}”. Choose another name.")


@dataclass(slots=True)
class VerifiedToken:
    """A token the credential check found, with its owner: plain values, no ORM on the hot path.

    The first fourteen fields are in the order of ``_LOOKUP``'s first columns.
    """

    id: int
    name: str
    hint: str
    scopes: list[str]
    projects: list[str] | None
    allowed_ips: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    last_used_agent: str | None
    revoked_at: datetime | None
    revoked_reason: str | None
    parent_id: int | None  # an application token's: the personal token it was derived from
    owner: Account
    owner_active: bool

    def enforce(self, need: token_limits.Need, ip: str | None) -> None:
        """Refuse what this token may not do (token_limits.enforce): its limits came with the
        lookup, so this costs no query."""
        token_limits.enforce(self.scopes, self.projects, self.allowed_ips, need, ip)


_COLUMNS = 14  # VerifiedToken's fields read from the token's row
_TOKENS = PersonalToken.__table__
_USERS = User.__table__
_LOOKUP = select(
    *(_TOKENS.c[name] for name in VerifiedToken.__slots__[:_COLUMNS]),
    _TOKENS.c.digest,
    _TOKENS.c.user_id,
    _USERS.c.username,
    _USERS.c.email,
    _USERS.c.is_admin,
    _USERS.c.is_active,
).join(_USERS, _USERS.c.id == _TOKENS.c.user_id)
# Built once: the token check runs on every request.
_BY_DIGEST = _LOOKUP.where(_TOKENS.c.digest == bindparam("digest"))
_BY_ANY_DIGEST = _LOOKUP.where(_TOKENS.c.digest.in_(bindparam("digests", expanding=True)))


# The same SELECT as each driver reads it, for the driver's cursor: see _lookup.
_BY_DIGEST_SQLITE = str(_BY_DIGEST.compile(dialect=sqlite_dialect.dialect()))
_BY_DIGEST_POSTGRESQL = str(_BY_DIGEST.compile(dialect=postgresql_dialect.dialect()))
_TIMES = tuple(VerifiedToken.__slots__.index(name) for name in (
    "created_at", "expires_at", "last_used_at", "revoked_at"))


@functools.lru_cache(maxsize=4096)
def _json_list(text: str) -> tuple[Any, ...]:
    """A stored JSON list, decoded once per process: a pure function of the stored text (the
    scopes of most tokens read alike), which nothing anywhere can make stale."""
    return tuple(json.loads(text))


def _from_sqlite(row: tuple[Any, ...]) -> list[Any]:
    """A row as SQLite's driver returns it, typed as SQLAlchemy would type it."""
    values = list(row)
    for index in (3, 4, 5):  # scopes; projects, allowed_ips: NULL for most tokens
        if values[index] is not None:
            values[index] = list(_json_list(values[index]))
    for index in _TIMES:
        if values[index] is not None:
            values[index] = datetime.fromisoformat(values[index] + "+00:00")  # stored in UTC
    values[-2], values[-1] = bool(values[-2]), bool(values[-1])  # is_admin, is_active
    return values


def _from_postgresql(row: tuple[Any, ...]) -> list[Any]:
    """A row as psycopg returns it (typed already), with timestamps in UTC as UTCDateTime has them."""
    values = list(row)
    for index in _TIMES:
        if values[index] is not None:
            values[index] = values[index].astimezone(timezone.utc)
    return values


_DRIVER_READS = ("sqlite", "postgresql")


def _read_on_driver(store: Connection, digest: bytes) -> list[Any] | None:
    if store.dialect.name == "sqlite":
        found = fetch_one_on_driver(store, _BY_DIGEST_SQLITE, (digest,))
        return None if found is None else _from_sqlite(found)
    found = fetch_one_on_driver(store, _BY_DIGEST_POSTGRESQL, {"digest": digest})
    return None if found is None else _from_postgresql(found)


def _lookup(store: Connectable, keys: ServerKeys, secret: str) -> VerifiedToken | None:
    """The token whose digest matches: one indexed lookup, one constant-time compare.

    Revoked and expired tokens are found too: the caller says why they are refused. On a
    plain connection (the request path) the one statement runs on the driver's cursor,
    which halves the cost of every authenticated request.
    """
    digests = keys.all_digests(PURPOSE, secret)
    if len(digests) == 1 and isinstance(store, Connection) and store.dialect.name in _DRIVER_READS:
        row = _read_on_driver(store, digests[0])
    elif len(digests) == 1:
        row = store.execute(_BY_DIGEST, {"digest": digests[0]}).one_or_none()
    else:
        row = store.execute(_BY_ANY_DIGEST, {"digests": digests}).one_or_none()
    if row is None:
        return None
    *fields, digest, user_id, username, email, is_admin, is_active = row
    if not any(hmac.compare_digest(digest, candidate) for candidate in digests):
        return None
    return VerifiedToken(*fields, Account(user_id, username, email, is_admin), is_active)


def verify_token(
    store: Connectable, keys: ServerKeys, secret: str, *, prefix: str, now: datetime | None = None
) -> VerifiedToken:
    """The live token behind ``secret``, or the reason it is refused.

    A token whose checksum is wrong is refused here, before the store is asked. Runs on a
    plain connection (Core only), so the hot path pays for no ORM session.
    """
    tokens.parse(secret, prefix)
    return verify_checksummed(store, keys, secret, now=now)


def verify_checksummed(
    store: Connectable, keys: ServerKeys, secret: str, *, now: datetime | None = None
) -> VerifiedToken:
    """``verify_token`` for a secret whose shape and checksum its caller checked already."""
    token = _lookup(store, keys, secret)
    if token is None:
        raise TokenUnknown("Unknown or mistyped token.")
    if token.revoked_at is not None:
        if token.revoked_reason == "rotated":
            # Still in use after its rotation: it was copied before. The caller revokes what
            # replaced it (revoke_successors) and says so with these words.
            raise TokenReplaced(
                f"This token was replaced when it was rotated on {display(token.revoked_at)}, and has "
                "been used since: somebody copied it before the rotation, so the token that "
                "replaced it has been revoked as well.", token.id)
        cause = audit.REVOKE_CAUSES.get(token.revoked_reason or "")
        because = f" ({cause})" if cause else ""
        raise TokenRevoked(f"This token was revoked on {display(token.revoked_at)}{because}.")
    if token.expires_at is not None and token.expires_at <= (now or utcnow()):
        raise TokenExpired(f"This token expired on {display(token.expires_at)}.")
    if not token.owner_active:
        raise AccountDisabled("The account this token belongs to is disabled.")
    return token


def record_use(
    store: Connectable, token: VerifiedToken, *, ip: str | None, agent: str | None,
    usage: UsageRecorder = RECORD_INLINE,
) -> None:
    """Note when and from where a token was used: at most once a minute per token, handed to
    ``usage`` (in the server, the writer behind the requests; see usage.py)."""
    now = utcnow()
    if token.last_used_at is not None and now - token.last_used_at < USE_RECORD_INTERVAL:
        return
    token.last_used_at, token.last_used_ip = now, ip
    token.last_used_agent = agent[:200] if agent else None
    usage.token_used(store, TokenUse(token.id, now, ip, token.last_used_agent))


def list_tokens(session: Session, owner_id: int) -> list[PersonalToken]:
    """The owner's tokens that are not revoked, expired ones included, newest first, each
    application token right under the token it was derived from."""
    query = (
        select(PersonalToken)
        .where(PersonalToken.user_id == owner_id, PersonalToken.revoked_at.is_(None))
        .order_by(PersonalToken.created_at.desc(), PersonalToken.id.desc())
    )
    return under_their_parents(list(session.scalars(query)))


def under_their_parents(rows: list[PersonalToken]) -> list[PersonalToken]:
    """``rows`` in their order, except that each token's children follow it (in their order)."""
    listed = {row.id for row in rows}
    children: dict[int, list[PersonalToken]] = {}
    for row in rows:
        if row.parent_id in listed:
            children.setdefault(row.parent_id, []).append(row)
    ordered = []
    for row in rows:
        if row.parent_id not in listed:
            ordered += [row, *children.get(row.id, [])]
    return ordered


INACTIVE_DAYS = 30


def inactive_tokens(session: Session, owner_id: int, now: datetime | None = None) -> list[PersonalToken]:
    """The owner's tokens revoked in the last 30 days, and those expired and not revoked (they
    keep their names until revoked), most recently ended first."""
    now = now or utcnow()
    since = now - timedelta(days=INACTIVE_DAYS)
    query = select(PersonalToken).where(
        PersonalToken.user_id == owner_id,
        (PersonalToken.revoked_at >= since)
        | (PersonalToken.revoked_at.is_(None) & (PersonalToken.expires_at <= now)),
    )
    rows = list(session.scalars(query))
    return sorted(rows, key=lambda row: (row.revoked_at or row.expires_at, row.id), reverse=True)


def every_token_of(session: Session, owner_id: int) -> list[PersonalToken]:
    """All the owner's tokens, revoked ones too, newest first: what their security log is about."""
    query = (
        select(PersonalToken)
        .where(PersonalToken.user_id == owner_id)
        .order_by(PersonalToken.created_at.desc(), PersonalToken.id.desc())
    )
    return list(session.scalars(query))


def live_tokens(
    session: Session, *, owner_id: int | None = None, offset: int = 0, limit: int = 50, now: datetime | None = None
) -> tuple[list[PersonalToken], bool]:
    """Everybody's tokens that still work (not revoked, not expired), newest first, for the
    administrators' inventory: one page of them, and whether another follows."""
    now = now or utcnow()
    query = select(PersonalToken).where(
        PersonalToken.revoked_at.is_(None),
        PersonalToken.expires_at.is_(None) | (PersonalToken.expires_at > now),
    )
    if owner_id is not None:
        query = query.where(PersonalToken.user_id == owner_id)
    query = query.order_by(PersonalToken.created_at.desc(), PersonalToken.id.desc()).offset(offset).limit(limit + 1)
    rows = list(session.scalars(query))
    return rows[:limit], len(rows) > limit


def revoke_any_token(session: Session, token_id: int, *, actor: str, ip: str | None = None) -> PersonalToken:
    """An administrator revokes anybody's token (the inventory): the owner's log says so."""
    row = session.get(PersonalToken, token_id)
    if row is None or row.revoked_at is not None:
        raise NotFound("That token is not live any more: it was revoked meanwhile, or never existed.")
    return revoke_token(session, token_id, row.user_id, actor=actor, reason="admin", ip=ip)


def find_token(session: Session, token_id: int, owner_id: int) -> PersonalToken | None:
    """One of the owner's tokens, live or not; None for anybody else's."""
    token = session.get(PersonalToken, token_id)
    return token if token is not None and token.user_id == owner_id else None


def get_live_token(session: Session, token_id: int, owner_id: int) -> PersonalToken:
    """One of the owner's unrevoked tokens. Anybody else's is NotFound, never NotPermitted."""
    row = session.scalars(
        select(PersonalToken).where(
            PersonalToken.id == token_id,
            PersonalToken.user_id == owner_id,
            PersonalToken.revoked_at.is_(None),
        )
    ).one_or_none()
    if row is None:
        raise NotFound("You have no live token with that id.")
    return row


def _revoke(
    session: Session, row: PersonalToken, *, actor: str, reason: str, ip: str | None = None,
    audited: bool = True, **details: Any,
) -> bool:
    """Revoke ``row`` unless someone else just did: False then, and nothing is written. Its
    application tokens (application_tokens.py) go with it, whatever the reason, each with its
    own event. ``audited=False``: the caller writes the one event that tells what happened to
    ``row`` (a rotation).

    One conditional UPDATE, so that of two revocations at once (a rotation and a reuse of the
    rotated token, on two instances) only one happens and is audited; PostgreSQL re-reads the
    condition once the other transaction's lock is gone. An application token being derived
    holds its parent's row until it is in (application_tokens.hold_live_parent), so that the
    children read here include it."""
    now = utcnow()
    changed = session.execute(
        update(PersonalToken)
        .where(PersonalToken.id == row.id, PersonalToken.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        return False
    set_committed_value(row, "revoked_at", now)
    set_committed_value(row, "revoked_reason", reason)
    if audited:
        _record_revocation(session, row, actor=actor, reason=reason, ip=ip, **details)
    children = [] if row.parent_id is not None else session.scalars(select(PersonalToken).where(
        PersonalToken.parent_id == row.id, PersonalToken.revoked_at.is_(None))).all()
    for child in children:
        _revoke(session, child, actor=actor, reason="parent_revoked", ip=ip, parent_token_id=row.id)
    return True


def _record_revocation(session: Session, row: PersonalToken, *, actor: str, reason: str, ip: str | None,
                       **details: Any) -> None:
    leaked = reason == "leak_reported"
    # A leak notice tells the owner where *they* last used the token (where to replace it),
    # not where the reporter was: that address is kept for administrators only.
    where = {"last_used_at": row.last_used_at and row.last_used_at.isoformat(),
             "last_used_ip": row.last_used_ip, "last_used_agent": row.last_used_agent} if leaked else {}
    audit.record(
        session,
        "token.leak_reported" if leaked else "token.revoked",
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
    reason: str = "owner",
    ip: str | None = None,
) -> PersonalToken:
    """Revoke one of the owner's tokens: the page, the API, the client and admins call this."""
    row = get_live_token(session, token_id, owner_id)
    if not _revoke(session, row, actor=actor, reason=reason, ip=ip):
        raise NotFound("You have no live token with that id.")
    return row


def revoke_all_tokens(session: Session, owner_id: int, *, actor: str, reason: str) -> int:
    rows = session.scalars(
        select(PersonalToken).where(
            PersonalToken.user_id == owner_id, PersonalToken.revoked_at.is_(None)
        )
    ).all()
    return sum(_revoke(session, row, actor=actor, reason=reason) for row in rows)


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
    old = get_live_token(session, token_id, owner_id)
    if old.parent_id is not None:
        raise NotPermitted("An application token cannot be rotated: revoke it, and let the application ask "
                           "for a new one (link it again).")
    if not signed_in and presented_token_id != token_id:
        raise NotPermitted("A token can rotate only itself: authenticate with the token you want to rotate.")
    if old.expires_at is not None and old.expires_at <= utcnow():
        raise NotPermitted("An expired token cannot be rotated: create a new one instead.")
    # One event tells the whole act (the security log, the mail): not a revocation and a new
    # token besides, which would read as if a token had been made.
    if not _revoke(session, old, actor=actor, reason="rotated", ip=ip, audited=False):
        raise NotFound("You have no live token with that id.")
    # The limits carry over as they are: the replacement may do exactly what the old one could.
    carried = token_limits.Limits(tuple(old.scopes), _tupled(old.projects), _tupled(old.allowed_ips))
    secret, new = mint_checked(session, keys, owner_id, old.name, carried, prefix=prefix, actor=actor,
                               expires_at=old.expires_at, now=utcnow(), ip=ip, audited=False)
    old.replaced_by_id = new.id
    audit.record(
        session,
        "token.rotated",
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
            tokens.parse(secret, prefix)
        except CredentialMalformed:
            continue
        found = _lookup(session, keys, secret)
        if found is not None and found.revoked_at is None:
            row = session.get(PersonalToken, found.id)
            revoked += _revoke(session, row, actor="leak report", reason="leak_reported", ip=ip)
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
            if _revoke(session, row, actor="rotation reuse", reason="rotation_reuse",
                       reused_token_id=replaced_token_id):
                revoked += 1
            else:  # revoked meanwhile, perhaps rotated once more: follow it to its newest successor
                session.refresh(row)
    return revoked


def live_tokens_among(session: Session, keys: ServerKeys, secrets: Iterable[str]) -> dict[str, PersonalToken]:
    """Which of ``secrets`` (checksums checked by the caller) are live tokens: one statement for
    all of them (a push's scan finds a few at most), one per thousand digests past that."""
    by_digest: dict[bytes, str] = {}
    for secret in set(secrets):
        for digest in keys.all_digests(PURPOSE, secret):
            by_digest[digest] = secret
    digests, now, live = list(by_digest), utcnow(), {}
    for start in range(0, len(digests), LOOKUP_BATCH):
        rows = session.scalars(select(PersonalToken).where(
            PersonalToken.digest.in_(digests[start:start + LOOKUP_BATCH]),
            PersonalToken.revoked_at.is_(None),
            (PersonalToken.expires_at.is_(None)) | (PersonalToken.expires_at > now),
        ))
        live.update((by_digest[row.digest], row) for row in rows)
    return live


LOOKUP_BATCH = 1000


def revoke_pushed_token(session: Session, row: PersonalToken, *, pusher: str, **where: str) -> bool:
    """Push protection found ``row`` in a push (``where``: repository, commit, path): revoke it,
    with the pusher as the actor."""
    return _revoke(session, row, actor=pusher, reason="push_protection", **where)
