"""Ten single-use recovery codes: the way through the second step when the phone or the
passkey is lost.

A code is 10 characters of an alphabet without look-alikes (about 50 bits), shown as
``xxxxx-xxxxx`` once, when made. The store keeps only a keyed digest of each (HMAC-SHA256 under
the server key, purpose ``recovery-code``, as tokens are kept): a copy of the database cannot
test guesses offline, and 50 random bits need no slow hash behind the sign-in throttle. Using
one marks it used; making new ones removes the old.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from tokensmith.clock import utcnow
from tokensmith.store.models import RecoveryCode
from tokensmith.store.server_keys import ServerKeys

PURPOSE = "recovery-code"
COUNT = 10
# No look-alikes (i, l, o, 0, 1): 31 characters, so ten of them are about 50 bits.
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
LENGTH = 10


def _canonical(code: str) -> str:
    """What a typed code stands for: case, spaces and dashes aside."""
    return "".join(code.split()).replace("-", "").lower()


def _shown(raw: str) -> str:
    return f"{raw[:5]}-{raw[5:]}"


def generate(session: Session, keys: ServerKeys, user_id: int) -> list[str]:
    """Ten new codes for the person, replacing every earlier one; returned to be shown once."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    now = utcnow()
    codes = ["".join(secrets.choice(ALPHABET) for _ in range(LENGTH)) for _ in range(COUNT)]
    session.add_all(
        RecoveryCode(
            user_id=user_id, digest=keys.digest(PURPOSE, raw), key_version=keys.current, created_at=now, used_at=None
        )
        for raw in codes
    )
    session.flush()
    return [_shown(raw) for raw in codes]


def looks_like_one(code: str) -> bool:
    raw = _canonical(code)
    return len(raw) == LENGTH and all(char in ALPHABET for char in raw)


def use(session: Session, keys: ServerKeys, user_id: int, code: str) -> int | None:
    """Spend one of the person's unused codes: how many remain after it, or None when ``code``
    is none of them (or was used already). The UPDATE is conditional: a code used at once on
    two instances works on one."""
    if not looks_like_one(code):
        return None
    raw = _canonical(code)
    digests = keys.all_digests(PURPOSE, raw)
    candidates = session.scalars(
        select(RecoveryCode).where(
            RecoveryCode.user_id == user_id, RecoveryCode.digest.in_(digests), RecoveryCode.used_at.is_(None)
        )
    ).all()
    match = next(
        (row for row in candidates if hmac.compare_digest(row.digest, keys.digest(PURPOSE, raw, row.key_version))),
        None,
    )
    if match is None:
        return None
    spent = session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.id == match.id, RecoveryCode.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], spent).rowcount != 1:
        return None
    return remaining(session, user_id)


def remaining(session: Session, user_id: int) -> int:
    return (
        session.scalar(select(func.count()).where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))) or 0
    )


def remove_all(session: Session, user_id: int) -> None:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
