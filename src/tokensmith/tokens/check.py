"""The token check: the one piece of work every API, git and Maven request does (the hot path).

Parse and checksum (format: tokens.py), one HMAC per key version, one indexed lookup (the
owner joined), a constant-time compare, then revoked / expired / account disabled, each with its
own words. Nothing else: no cleanup, no write (``record_use`` hands *last used* to the writer
behind the requests, at most once a minute per token and address). Runs on a plain connection, the one
statement on the driver's own cursor: docs/architecture.md, "Tokens".
"""

from __future__ import annotations

import functools
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, any_, bindparam, select
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from tokensmith.audit import trail
from tokensmith.audit.trail import RevokeReason
from tokensmith.clock import display, utcnow
from tokensmith.errors import (
    AccountDisabled,
    TokenExpired,
    TokenReplaced,
    TokenRevoked,
    TokenUnknown,
)
from tokensmith.identity import Account, VerifiedToken
from tokensmith.store.database import Connectable, fetch_one_on_driver
from tokensmith.store.models import PersonalToken, User
from tokensmith.store.server_keys import ServerKeys
from tokensmith.tokens import format as token_format
from tokensmith.tokens.usage import RECORD_INLINE, TokenUse, UsageRecorder

PURPOSE = "token"
USE_RECORD_INTERVAL = timedelta(minutes=1)

# What the one lookup reads, by name: the token's own columns (VerifiedToken's fields after its
# owner's two), then the owner's, labelled as VerifiedToken and Account name them. Built once.
_TOKENS = PersonalToken.__table__
_USERS = User.__table__
_TOKEN_FIELDS = tuple(name for name in VerifiedToken.__slots__ if name not in ("owner", "owner_active"))
_LOOKUP = select(
    *(_TOKENS.c[name] for name in _TOKEN_FIELDS),
    _TOKENS.c.digest,
    _TOKENS.c.user_id,
    _USERS.c.username.label("owner_username"),
    _USERS.c.email.label("owner_email"),
    _USERS.c.is_admin.label("owner_is_admin"),
    _USERS.c.is_active.label("owner_active"),
).join(_USERS, _USERS.c.id == _TOKENS.c.user_id)
_BY_DIGEST = _LOOKUP.where(_TOKENS.c.digest == bindparam("digest"))
_BY_ANY_DIGEST = _LOOKUP.where(_TOKENS.c.digest.in_(bindparam("digests", expanding=True)))
# The same SELECT as each driver reads it, for the driver's cursor: see lookup.
_BY_DIGEST_SQLITE = str(_BY_DIGEST.compile(dialect=sqlite_dialect.dialect()))
_BY_DIGEST_POSTGRESQL = str(_BY_DIGEST.compile(dialect=postgresql_dialect.dialect()))

# Where each column is in a row of that SELECT: a row is read by these names, never by a number.
_AT = {column.name: index for index, column in enumerate(_LOOKUP.selected_columns)}
_FIELDS_AT = tuple(_AT[name] for name in _TOKEN_FIELDS)
_JSON_AT = tuple(_AT[name] for name in ("scopes", "projects", "allowed_ips"))  # projects, allowed_ips: NULL for most
_TIMES_AT = tuple(_AT[name] for name in ("created_at", "expires_at", "last_used_at", "revoked_at"))
_FLAGS_AT = tuple(_AT[name] for name in ("owner_is_admin", "owner_active"))
DIGEST_AT = _AT["digest"]
_OWNER_AT = tuple(_AT[name] for name in ("user_id", "owner_username", "owner_email", "owner_is_admin"))
_OWNER_ACTIVE_AT = _AT["owner_active"]


@functools.lru_cache(maxsize=4096)
def _json_list(text: str) -> tuple[Any, ...]:
    """A stored JSON list, decoded once per process: a pure function of the stored text (the
    scopes of most tokens read alike), which nothing anywhere can make stale."""
    return tuple(json.loads(text))


def _json_decoded(values: list[Any]) -> list[Any]:
    """The row's JSON lists decoded, where its driver returns them as their text."""
    for index in _JSON_AT:
        if values[index] is not None:
            values[index] = list(_json_list(values[index]))
    return values


def _from_sqlite(row: tuple[Any, ...]) -> list[Any]:
    """A row as SQLite's driver returns it, typed as SQLAlchemy would type it."""
    values = _json_decoded(list(row))
    for index in _TIMES_AT:
        if values[index] is not None:
            values[index] = datetime.fromisoformat(values[index] + "+00:00")  # stored in UTC
    for index in _FLAGS_AT:
        values[index] = bool(values[index])
    return values


def _from_postgresql(row: Sequence[Any]) -> list[Any]:
    """A row as psycopg returns it (typed already), with timestamps in UTC as UTCDateTime has them."""
    values = list(row)
    for index in _TIMES_AT:
        if values[index] is not None:
            values[index] = values[index].astimezone(UTC)
    return values


def _from_asyncpg(row: tuple[Any, ...]) -> list[Any]:
    """A row as asyncpg returns it: as psycopg's, but for JSON, which it leaves as text."""
    return _from_postgresql(_json_decoded(list(row)))


def _verified(row: Sequence[Any]) -> VerifiedToken:
    owner = Account(*(row[index] for index in _OWNER_AT))
    return VerifiedToken(owner, row[_OWNER_ACTIVE_AT], *(row[index] for index in _FIELDS_AT))


_DRIVER_READS = ("sqlite", "postgresql")
# The lookup as asyncpg reads it for the event loop's reads on PostgreSQL: the rows of an array
# of digests ($1), the digests of several requests read together (store/postgresql.AsyncReads),
# each request's row found by its digest, at DIGEST_AT.
ASYNCPG_BY_DIGESTS = str(
    _LOOKUP.where(_TOKENS.c.digest == any_(bindparam("digests"))).compile(dialect=asyncpg_dialect.dialect())
)


@dataclass(frozen=True, slots=True)
class Fetched:
    """The lookup's answer, read by the caller before the check: on PostgreSQL the server reads
    it on the event loop (store/postgresql.AsyncReads) with ``ASYNCPG_BY_DIGESTS``, then runs
    the check on this in place of a connection. ``row`` is asyncpg's (None: no such token)."""

    digests: list[bytes]
    row: tuple[Any, ...] | None


def _read_on_driver(store: Connection, digest: bytes) -> list[Any] | None:
    if store.dialect.name == "sqlite":
        found = fetch_one_on_driver(store, _BY_DIGEST_SQLITE, (digest,))
        return None if found is None else _from_sqlite(found)
    found = fetch_one_on_driver(store, _BY_DIGEST_POSTGRESQL, {"digest": digest})
    return None if found is None else _from_postgresql(found)


def lookup(store: Connectable | Fetched, keys: ServerKeys, secret: str) -> VerifiedToken | None:
    """The token whose digest matches: one indexed lookup, one constant-time compare.

    Revoked and expired tokens are found too: the caller says why they are refused. On a
    plain connection (the request path) the one statement runs on the driver's cursor,
    which halves the cost of every authenticated request.
    """
    digests = keys.all_digests(PURPOSE, secret)
    row: Sequence[Any] | None
    if isinstance(store, Fetched):
        if digests != store.digests:
            raise ValueError("the row fetched is not this token's lookup")
        row = None if store.row is None else _from_asyncpg(store.row)
    elif len(digests) == 1 and isinstance(store, Connection) and store.dialect.name in _DRIVER_READS:
        row = _read_on_driver(store, digests[0])
    elif len(digests) == 1:
        row = store.execute(_BY_DIGEST, {"digest": digests[0]}).one_or_none()
    else:
        row = store.execute(_BY_ANY_DIGEST, {"digests": digests}).one_or_none()
    if row is None:
        return None
    if not any(hmac.compare_digest(row[DIGEST_AT], candidate) for candidate in digests):
        return None
    return _verified(row)


def verify_token(
    store: Connectable, keys: ServerKeys, secret: str, *, prefix: str, now: datetime | None = None
) -> VerifiedToken:
    """The live token behind ``secret``, or the reason it is refused.

    A token whose checksum is wrong is refused here, before the store is asked. Runs on a
    plain connection (Core only), so the hot path pays for no ORM session.
    """
    token_format.parse(secret, prefix)
    return verify_checksummed(store, keys, secret, now=now)


def verify_checksummed(
    store: Connectable | Fetched, keys: ServerKeys, secret: str, *, now: datetime | None = None
) -> VerifiedToken:
    """``verify_token`` for a secret whose shape and checksum its caller checked already."""
    token = lookup(store, keys, secret)
    if token is None:
        raise TokenUnknown("Unknown or mistyped token.")
    if token.revoked_at is not None:
        if token.revoked_reason == RevokeReason.ROTATED:
            # Still in use after its rotation: it was copied before. The caller revokes what
            # replaced it (revoke_successors) and says so with these words.
            raise TokenReplaced(
                f"This token was replaced when it was rotated on {display(token.revoked_at)}, and has "
                "been used since: somebody copied it before the rotation, so the token that "
                "replaced it has been revoked as well.",
                token.id,
            )
        cause = trail.REVOKE_CAUSES.get(token.revoked_reason or "")
        because = f" ({cause})" if cause else ""
        raise TokenRevoked(f"This token was revoked on {display(token.revoked_at)}{because}.")
    if token.expires_at is not None and token.expires_at <= (now or utcnow()):
        raise TokenExpired(f"This token expired on {display(token.expires_at)}.")
    if not token.owner_active:
        raise AccountDisabled("The account this token belongs to is disabled.")
    return token


def record_use(
    store: Connectable | Fetched,
    token: VerifiedToken,
    *,
    ip: str | None,
    agent: str | None,
    usage: UsageRecorder = RECORD_INLINE,
) -> None:
    """Note when and from where a token was used: at most once a minute per token, unless from
    another address than the last one written (usage.py keeps each token's last five), handed to
    ``usage`` (in the server, the writer behind the requests; see usage.py)."""
    now = utcnow()
    if token.last_used_at is not None and now - token.last_used_at < USE_RECORD_INTERVAL and ip == token.last_used_ip:
        return
    token.last_used_at, token.last_used_ip = now, ip
    token.last_used_agent = agent[:200] if agent else None
    usage.token_used(None if isinstance(store, Fetched) else store, TokenUse(token.id, now, ip, token.last_used_agent))
