"""Browser sessions: server-side records, so that sign-out and disabling end them at once.

The cookie holds a random secret; the store holds only its keyed digest, so a copy of the
database cannot be used to ride a session. CSRF tokens are derived from the same secret.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tokensmith.audit import trail
from tokensmith.audit.trail import AuditAction
from tokensmith.clock import utcnow
from tokensmith.store.database import rows_changed
from tokensmith.store.models import BrowserSession, User
from tokensmith.store.server_keys import ServerKeys
from tokensmith.tokens.usage import RECORD_INLINE, SessionSeen, UsageRecorder

PURPOSE = "session"
CSRF_PURPOSE = "csrf"
TOUCH_INTERVAL = timedelta(minutes=1)
# Creating or changing a token in the browser needs a sign-in at most this old (GitHub's
# "sudo mode"): a session left open on a shared machine cannot mint a token on its own.
REAUTHENTICATION_WINDOW = timedelta(minutes=15)


def start_session(
    session: Session,
    keys: ServerKeys,
    user: User,
    *,
    days: int,
    ip: str | None,
    user_agent: str | None,
    authenticated_at: datetime | None = None,
    second_step: str | None = None,
) -> tuple[str, BrowserSession]:
    """A new session for a user who just proved who they are: ``(cookie secret, row)``.

    ``authenticated_at``: when they did, if earlier than now (the identity provider's
    ``auth_time``: its own session may be hours old); ``second_step``: how, beside or instead of
    their password (a passkey, an authenticator app, a recovery code), for their log."""
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    row = BrowserSession(
        digest=keys.digest(PURPOSE, secret),
        key_version=keys.current,
        user_id=user.id,
        created_at=now,
        expires_at=now + timedelta(days=days),
        last_seen_at=now,
        authenticated_at=min(authenticated_at or now, now),
        ip=ip,
        user_agent=user_agent,
    )
    session.add(row)
    session.flush()
    step: dict[str, Any] = {"second_step": second_step} if second_step else {}
    trail.record(session, AuditAction.SESSION_STARTED, actor=user.username, user_id=user.id, ip=ip, **step)
    return secret, row


def find_session(
    session: Session, keys: ServerKeys, secret: str, *, usage: UsageRecorder = RECORD_INLINE
) -> BrowserSession | None:
    """The live session behind a cookie, or None (expired, ended, or never existed).

    Its *last seen* moves at most once a minute, handed to ``usage`` (in the server, the writer
    behind the requests): showing a page writes nothing itself."""
    if not secret or len(secret) > 128:
        return None
    digests = keys.all_digests(PURPOSE, secret)
    row = session.scalars(select(BrowserSession).where(BrowserSession.digest.in_(digests))).one_or_none()
    now = utcnow()
    if row is None or row.expires_at <= now or not row.user.is_active:
        return None
    if now - row.last_seen_at > TOUCH_INTERVAL:
        usage.session_seen(session, SessionSeen(row.id, now))
    return row


def recently_authenticated(row: BrowserSession, now: datetime | None = None) -> bool:
    """Whether the person proved who they are within the re-authentication window."""
    return (now or utcnow()) - row.authenticated_at <= REAUTHENTICATION_WINDOW


def reauthenticated(session: Session, row: BrowserSession, *, ip: str | None, confirmed_with: str = "password") -> None:
    """The person just proved who they are again (their password, a passkey, an authenticator
    app's code or a recovery code): the session counts as freshly signed in."""
    row.authenticated_at = utcnow()
    with_what: dict[str, Any] = {} if confirmed_with == "password" else {"confirmed_with": confirmed_with}
    trail.record(
        session, AuditAction.SESSION_REAUTHENTICATED, actor=row.user.username, user_id=row.user_id, ip=ip, **with_what
    )


def end_session(session: Session, keys: ServerKeys, secret: str) -> None:
    if secret:
        digests = keys.all_digests(PURPOSE, secret)
        session.execute(delete(BrowserSession).where(BrowserSession.digest.in_(digests)))


def purge_expired_sessions(session: Session, now: datetime | None = None) -> int:
    return rows_changed(session, delete(BrowserSession).where(BrowserSession.expires_at <= (now or utcnow())))


def csrf_token(keys: ServerKeys, binding: str) -> str:
    """The CSRF token for forms shown to the holder of ``binding`` (a session secret, or
    the pre-sign-in nonce cookie)."""
    return keys.digest(CSRF_PURPOSE, binding).hex()


def csrf_valid(keys: ServerKeys, binding: str | None, submitted: str | None) -> bool:
    if not binding or not submitted:
        return False
    return hmac.compare_digest(csrf_token(keys, binding).encode(), submitted.encode())
