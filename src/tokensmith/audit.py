"""The audit trail: who did what to whose account, when, from where. Never a secret."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tokensmith.clock import utcnow
from tokensmith.models import AuditEvent

# What a person reads about their own account on the My Tokens page.
_DESCRIPTIONS = {
    "user.created": "Account created",
    "user.disabled": "Account disabled",
    "user.enabled": "Account enabled again (tokens revoked meanwhile stay revoked)",
    "user.updated": "Profile updated by the identity provider",
    "user.linked": "Account linked to your identity at the identity provider",
    "user.removed": "Account removed by the identity provider",
    "user.renamed": "Account renamed from {previous} to {username}",
    "token.created": "Token “{name}” created",
    "token.revoked": "Token “{name}” revoked{reason_phrase}",
    "token.rotated": "Token “{name}” rotated: a new secret replaced the old one",
    "token.leak_reported": "Token “{name}” was reported leaked and has been revoked. "
    "Replace it wherever it was used",
    "auth.password_used": "Your password was used by a non-browser client ({agent}); "
    "switch it to a personal access token",
    "session.started": "Signed in to the web site",
    "device.approved": "Approved a login of the {client} on {device} (from {requested_ip})",
    "device.denied": "Denied a login of the {client} on {device} (from {requested_ip})",
    "device.code_rejected": "Entered a device login code that was not waiting for approval",
    "user.password_set": "Password set by an administrator; your browser sessions were ended",
}

# Why a token was revoked, as its owner reads it on the page ...
REVOKE_REASONS = {
    "owner": " by you",
    "admin": " by an administrator",
    "leak_reported": " after it was reported leaked",
    "rotated": " when it was rotated",
    "account_disabled": " when the account was disabled",
}
# ... and as whoever holds the token reads it in a refusal.
REVOKE_CAUSES = {
    "owner": "by its owner",
    "admin": "by an administrator",
    "leak_reported": "it was reported leaked",
    "rotated": "it was rotated; use the new token",
    "account_disabled": "the account was disabled",
}


def record(
    session: Session,
    action: str,
    *,
    actor: str,
    user_id: int | None = None,
    ip: str | None = None,
    at: datetime | None = None,
    **details: Any,
) -> AuditEvent:
    event = AuditEvent(
        at=at or utcnow(), action=action, actor=actor, user_id=user_id, ip=ip, details=details
    )
    session.add(event)
    return event


def events_for_user(session: Session, user_id: int, limit: int = 20) -> list[AuditEvent]:
    query = (
        select(AuditEvent)
        .where(AuditEvent.user_id == user_id)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def describe(event: AuditEvent) -> str:
    template = _DESCRIPTIONS.get(event.action)
    if template is None:
        return event.action
    details = dict(event.details or {})
    details.setdefault("name", "?")
    details.setdefault("agent", "unknown client")
    details["reason_phrase"] = REVOKE_REASONS.get(details.get("reason", ""), "")
    return template.format(**details)


def needs_attention(event: AuditEvent) -> bool:
    """Events the owner should notice without asking: someone else acted on their tokens."""
    return event.action in ("token.leak_reported", "auth.password_used", "user.password_set") or (
        event.action == "token.revoked" and event.details.get("reason") == "admin"
    )
