"""The tokens a project's trusted publishers gave (workload identity): what its write members
see on My Applications and revoke, and what goes with a publisher when it is removed.

Each such token is a row of ``personal_tokens`` owned by the project's CI account
(projects/publishers.py), tied to its publisher by ``publisher_tokens``; revoking one goes
through token_lifecycle like every revocation. The exchange that makes them is
workload_identity.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tokensmith.audit import trail
from tokensmith.audit.trail import RevokeReason
from tokensmith.clock import utcnow
from tokensmith.errors import NotFound
from tokensmith.projects import publishers as trusted_publishers
from tokensmith.store.models import AuditEvent, PersonalToken, PublisherToken, TrustedPublisher
from tokensmith.tokens import lifecycle as token_lifecycle


def live_tokens(session: Session, project_id: str, now: datetime | None = None) -> dict[int, list[PersonalToken]]:
    """The project's CI tokens that still work, by the publisher that gave them, newest first."""
    now = now or utcnow()
    rows = session.execute(
        select(PublisherToken.publisher_id, PersonalToken)
        .join(PersonalToken, PersonalToken.id == PublisherToken.token_id)
        .join(TrustedPublisher, TrustedPublisher.id == PublisherToken.publisher_id)
        .where(
            TrustedPublisher.project_id == project_id,
            PersonalToken.revoked_at.is_(None),
            PersonalToken.expires_at > now,
        )
        .order_by(PersonalToken.created_at.desc(), PersonalToken.id.desc())
    ).all()
    found: dict[int, list[PersonalToken]] = {}
    for publisher_id, token in rows:
        found.setdefault(publisher_id, []).append(token)
    return found


def revoke_ci_token(
    session: Session, project_id: str, publisher_id: int, token_id: int, *, actor: str, ip: str | None = None
) -> PersonalToken:
    """A write member revokes a token one of the project's publishers gave (the caller checked
    who they are: publishers.require_manager). Anything else is NotFound."""
    publisher = trusted_publishers.get_publisher(session, publisher_id, project_id)
    link = session.get(PublisherToken, token_id)
    if link is None or link.publisher_id != publisher.id:
        raise NotFound(f"Trusted publisher “{publisher.name}” gave no live token {token_id}.")
    return token_lifecycle.revoke_token(
        session, token_id, publisher.account_id, actor=actor, reason=RevokeReason.PROJECT_MEMBER, ip=ip
    )


def remove_publisher(
    session: Session, publisher_id: int, *, project_id: str | None = None, actor: str, ip: str | None = None
) -> tuple[TrustedPublisher, int]:
    """Remove a trusted publisher and revoke every live token it gave: none outlives it."""
    publisher = trusted_publishers.get_publisher(session, publisher_id, project_id)
    tokens = session.scalars(
        select(PersonalToken)
        .join(PublisherToken, PublisherToken.token_id == PersonalToken.id)
        .where(PublisherToken.publisher_id == publisher.id, PersonalToken.revoked_at.is_(None))
    ).all()
    # Expired ones too (they hold their names): nothing of the publisher stays. Live ones counted.
    now = utcnow()
    ended = token_lifecycle.revoke_publisher_tokens(session, tokens, actor=actor, ip=ip)
    revoked = sum(token.expires_at is None or token.expires_at > now for token in ended)
    trusted_publishers.delete_publisher(session, publisher, actor=actor, revoked=revoked)
    return publisher, revoked


@dataclass(frozen=True)
class Overview:
    """A project's trusted publishers as its write members see them: each with its live tokens,
    and the CI account's latest events (exchanges, revocations, publishers added or removed)."""

    project: str
    username: str
    publishers: list[TrustedPublisher]
    tokens: dict[int, list[PersonalToken]]
    events: list[AuditEvent]


def overview(session: Session, project_id: str, *, events: int = 10) -> Overview:
    found = trusted_publishers.publishers_of(session, project_id)
    username = trusted_publishers.ci_username(project_id)
    recent: list[AuditEvent] = []
    if found:
        recent = trail.events_for_user(session, found[0].account_id, limit=events)
    return Overview(project_id, username, found, live_tokens(session, project_id), recent)
