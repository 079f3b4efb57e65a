"""Finding and listing tokens: a person's (My Tokens, the API, the client), everybody's live
ones (the administrators' inventory), and the live ones among strings found somewhere (push
protection, leak reports). Reads only.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from tokensmith.clock import utcnow
from tokensmith.errors import (
    NotFound,
)
from tokensmith.store.models import PersonalToken, TokenAddress
from tokensmith.store.server_keys import ServerKeys
from tokensmith.tokens import check as token_check
from tokensmith.tokens.usage import MAX_ADDRESSES


def list_tokens(session: Session, owner_id: int) -> list[PersonalToken]:
    """The owner's tokens that are not revoked, expired ones included, newest first, each
    application token right under the token it was derived from."""
    query = (
        select(PersonalToken)
        .where(PersonalToken.user_id == owner_id, PersonalToken.revoked_at.is_(None))
        .order_by(PersonalToken.created_at.desc(), PersonalToken.id.desc())
    )
    return under_their_parents(list(session.scalars(query)))


def addresses_of(session: Session, token_ids: Iterable[int]) -> dict[int, list[TokenAddress]]:
    """Where each of these tokens was used: its last five distinct addresses (usage.py), the most
    recently seen first, in one query."""
    ids = sorted(set(token_ids))
    found: dict[int, list[TokenAddress]] = {token_id: [] for token_id in ids}
    for start in range(0, len(ids), LOOKUP_BATCH):
        rows = session.scalars(
            select(TokenAddress)
            .where(TokenAddress.token_id.in_(ids[start : start + LOOKUP_BATCH]))
            .order_by(TokenAddress.last_seen_at.desc(), TokenAddress.id.desc())
        )
        for row in rows:
            if len(found[row.token_id]) < MAX_ADDRESSES:  # two writers at once may leave a sixth a moment
                found[row.token_id].append(row)
    return found


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
        (PersonalToken.revoked_at >= since) | (PersonalToken.revoked_at.is_(None) & (PersonalToken.expires_at <= now)),
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


def live_tokens_among(session: Session, keys: ServerKeys, secrets: Iterable[str]) -> dict[str, PersonalToken]:
    """Which of ``secrets`` (checksums checked by the caller) are live tokens: one statement for
    all of them (a push's scan finds a few at most), one per thousand digests past that."""
    return tokens_among(session, keys, secrets, live=True)


def tokens_among(
    session: Session, keys: ServerKeys, secrets: Iterable[str], *, live: bool = False
) -> dict[str, PersonalToken]:
    """Which of ``secrets`` (checksums checked by the caller) are tokens of this server, revoked
    and expired ones too unless ``live``, each with its row: a statement per thousand digests."""
    by_digest: dict[bytes, str] = {}
    for secret in set(secrets):
        for digest in keys.all_digests(token_check.PURPOSE, secret):
            by_digest[digest] = secret
    digests, now = list(by_digest), utcnow()
    found: dict[str, PersonalToken] = {}
    for start in range(0, len(digests), LOOKUP_BATCH):
        query = select(PersonalToken).where(PersonalToken.digest.in_(digests[start : start + LOOKUP_BATCH]))
        if live:
            query = query.where(
                PersonalToken.revoked_at.is_(None),
                (PersonalToken.expires_at.is_(None)) | (PersonalToken.expires_at > now),
            )
        found.update((by_digest[row.digest], row) for row in session.scalars(query))
    return found


LOOKUP_BATCH = 1000
