"""Whose is this token? An administrator handed a suspicious string looks it up by its value.

``look_up`` is what ``tokensmith tokens lookup [--revoke]`` (the server's shell, values on stdin)
and the credentials inventory's "Find a token" form (a POST, never an address) both call: for
each value, whether it is a token of this server, and if so its owner, name, state, limits and
last use; with ``revoke_by``, every live one found is revoked by that administrator (the owner's
log and mail say so). The values themselves are never kept, logged or shown back: a finding is
named by its position and its hint.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy.orm import Session

from tokensmith.audit import trail
from tokensmith.audit.trail import RevokeReason
from tokensmith.clock import display, utcnow
from tokensmith.errors import CredentialMalformed, InvalidInput
from tokensmith.store.models import PersonalToken, TokenAddress
from tokensmith.store.server_keys import ServerKeys
from tokensmith.tokens import format as token_format
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import listing as token_listing

MAX_VALUES = 1000


@dataclass
class LookedUp:
    """One value looked up: ``token`` when it is one of this server's (any state), else
    ``problem`` says what it is not; ``revoked_now`` when this lookup revoked it."""

    position: int
    hint: str
    token: PersonalToken | None = None
    problem: str | None = None
    revoked_now: bool = False
    addresses: list[TokenAddress] = field(default_factory=list)

    def state(self, now: datetime | None = None) -> str:
        """The token's state in words: live, revoked (when, why, by whom now) or expired."""
        row = self.token
        if row is None:
            return self.problem or "Not a token of this server."
        if row.revoked_at is not None:
            why = trail.REVOKE_REASONS.get(cast(RevokeReason, row.revoked_reason), "")
            return f"{'revoked now' if self.revoked_now else 'revoked'} on {display(row.revoked_at)}{why}"
        if row.expires_at is not None and row.expires_at <= (now or utcnow()):
            return f"expired on {display(row.expires_at)}"
        return "live"


def values_in(text: str, prefix: str) -> list[str]:
    """The values a person pasted: on each line every token-shaped string (a line like
    ``TOKEN=tks_…`` or a log line holding one), or else the line itself, trimmed."""
    shaped = re.compile(rf"{re.escape(prefix)}[0-9A-Za-z]{{{token_format.BODY_LENGTH}}}")
    values: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            values.extend(shaped.findall(line) or [line])
    if not values:
        raise InvalidInput("No token given: paste one or more, one a line.")
    if len(values) > MAX_VALUES:
        raise InvalidInput(f"At most {MAX_VALUES:,} tokens at a time; {len(values):,} were given.")
    return values


def _hint_of(value: str, prefix: str) -> str:
    """A token's hint (its prefix and last four characters); nothing of any other value, which
    could be somebody's password."""
    return token_format.hint(value, prefix) if value.startswith(prefix) and len(value) > len(prefix) + 4 else "—"


def look_up(
    session: Session,
    keys: ServerKeys,
    values: Iterable[str],
    *,
    prefix: str,
    revoke_by: str | None = None,
    ip: str | None = None,
) -> list[LookedUp]:
    """Each value, looked up (one query for all); with ``revoke_by``, each live token found is
    revoked by that administrator, reason ``admin``."""
    values = list(values)
    found: list[LookedUp] = []
    shaped: list[str] = []
    for position, value in enumerate(values, start=1):
        entry = LookedUp(position, _hint_of(value, prefix))
        try:
            token_format.parse(value, prefix)
            shaped.append(value)
        except CredentialMalformed as malformed:
            entry.problem = malformed.message
        found.append(entry)
    rows = token_listing.tokens_among(session, keys, shaped)
    for entry in found:
        if entry.problem is None:
            entry.token = rows.get(values[entry.position - 1])
            if entry.token is None:
                entry.problem = (
                    "Not a token of this server: its checksum is right, but no token here has this value "
                    "(another deployment's, or made up)."
                )
    if revoke_by is not None:
        _revoke_live(session, found, revoke_by, ip)
    addresses = token_listing.addresses_of(session, (entry.token.id for entry in found if entry.token))
    for entry in found:
        if entry.token is not None:
            entry.addresses = addresses[entry.token.id]
    return found


def _revoke_live(session: Session, found: list[LookedUp], actor: str, ip: str | None) -> None:
    now, done = utcnow(), set()
    for entry in found:
        row = entry.token
        if row is None or row.id in done or row.revoked_at is not None:
            continue
        if row.expires_at is not None and row.expires_at <= now:
            continue
        done.add(row.id)
        token_lifecycle.revoke_any_token(session, row.id, actor=actor, ip=ip)
        entry.revoked_now = True
    for entry in found:  # a value given twice: revoked by its first
        if entry.token is not None and entry.token.id in done:
            entry.revoked_now = True
