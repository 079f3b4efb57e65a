"""The audit trail: who did what to whose account, when, from where. Never a secret.

Every action recorded reads in words (``describe``) wherever it is shown: the Security log and
Recent activity pages, ``GET /api/v1/audit`` and ``tokensmith audit export``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session

from tokensmith.clock import display, utcnow
from tokensmith.errors import InvalidInput
from tokensmith.scopes import describe as describe_limits
from tokensmith.scopes import describe_scopes
from tokensmith.store.bulk_insert import BulkInsert
from tokensmith.store.models import AuditEvent, User


class AuditAction(StrEnum):
    """What an audit event records (its ``action`` column): each one has its sentence in
    ``_DESCRIPTIONS``, the words its person reads (tests/audit/test_trail.py holds them together)."""

    USER_CREATED = "user.created"
    USER_DISABLED = "user.disabled"
    USER_ENABLED = "user.enabled"
    USER_UPDATED = "user.updated"
    USER_LINKED = "user.linked"
    USER_REMOVED = "user.removed"
    USER_RENAMED = "user.renamed"
    USER_PASSWORD_SET = "user.password_set"
    TOKEN_CREATED = "token.created"
    TOKEN_REVOKED = "token.revoked"
    TOKEN_ROTATED = "token.rotated"
    TOKEN_DERIVED = "token.derived"
    TOKEN_PUSH_BLOCKED = "token.push_blocked"
    TOKEN_LEAK_REPORTED = "token.leak_reported"
    TOKEN_EXCHANGED = "token.exchanged"
    PUBLISHER_ADDED = "publisher.added"
    PUBLISHER_REMOVED = "publisher.removed"
    TOKEN_FOUND_BY_SCANNING = "token.found_by_scanning"
    TOKEN_UNUSED_WARNING = "token.unused_warning"
    AUTH_PASSWORD_USED = "auth.password_used"
    SESSION_STARTED = "session.started"
    SESSION_REAUTHENTICATED = "session.reauthenticated"
    PROJECT_CREATED = "project.created"
    PROJECT_MEMBER_ADDED = "project.member_added"
    INSTANCE_REGISTERED = "instance.registered"
    RELEASE_PUBLISHED = "release.published"
    DEVICE_APPROVED = "device.approved"
    DEVICE_DENIED = "device.denied"
    DEVICE_CODE_REJECTED = "device.code_rejected"
    SECOND_FACTOR_ADDED = "2fa.added"
    SECOND_FACTOR_REMOVED = "2fa.removed"
    RECOVERY_CODES_GENERATED = "2fa.recovery_codes_generated"
    RECOVERY_CODE_USED = "2fa.recovery_code_used"
    SECOND_FACTORS_RESET = "2fa.reset"
    SECOND_STEP_FAILED = "2fa.second_step_failed"
    BACKUP_RESTORED = "backup.restored"


class RevokeReason(StrEnum):
    """Why a token was revoked (its ``revoked_reason`` column), each with the words of its owner
    (``REVOKE_REASONS``) and of whoever presents it afterwards (``REVOKE_CAUSES``)."""

    OWNER = "owner"
    ADMIN = "admin"
    LEAK_REPORTED = "leak_reported"
    ROTATED = "rotated"
    ACCOUNT_DISABLED = "account_disabled"
    PUSH_PROTECTION = "push_protection"
    ROTATION_REUSE = "rotation_reuse"
    APPLICATION = "application"
    PARENT_REVOKED = "parent_revoked"
    PROJECT_MEMBER = "project_member"
    PUBLISHER_REMOVED = "publisher_removed"
    SECRET_SCANNING = "secret_scanning"
    UNUSED = "unused"
    RESTORED_REVOCATION = "restored_revocation"


# What a person reads about their own account on the My Tokens page. These tables are keyed by
# their enum and looked up by the stored column, a plain str (a StrEnum member is equal to its value).
_DESCRIPTIONS: dict[str, str] = {
    AuditAction.USER_CREATED: "Account created",
    AuditAction.USER_DISABLED: "Account disabled",
    AuditAction.USER_ENABLED: "Account enabled again (tokens revoked meanwhile stay revoked)",
    AuditAction.USER_UPDATED: "Profile updated by the identity provider",
    AuditAction.USER_LINKED: "Account linked to your identity at the identity provider",
    AuditAction.USER_REMOVED: "Account removed by the identity provider",
    AuditAction.USER_RENAMED: "Account renamed from {previous} to {username}",
    AuditAction.TOKEN_CREATED: "Token “{name}” created{limits_phrase}",
    AuditAction.TOKEN_REVOKED: "Token “{name}” revoked{reason_phrase}",
    AuditAction.TOKEN_ROTATED: (
        "Token “{name}” rotated: a new secret{new_phrase} replaced the old one{old_phrase}{limits_phrase}"
    ),
    AuditAction.TOKEN_DERIVED: "Application token “{name}” made from your token “{parent_name}” for {application}"
    "{limits_phrase}",
    AuditAction.TOKEN_PUSH_BLOCKED: "Token “{name}” was found in a git push by {pusher} to project {repository} "
    "(commit {short_commit}, {path}); the push was refused and the token revoked. Replace it "
    "wherever it was used",
    AuditAction.TOKEN_LEAK_REPORTED: "Token “{name}” was reported leaked and has been revoked. "
    "Replace it wherever it was used{where_phrase}",
    AuditAction.TOKEN_EXCHANGED: "CI token “{name}” made for project {project} by the trusted publisher "
    "“{publisher}”, for an ID token of {issuer} ({subject}){limits_phrase}",
    AuditAction.PUBLISHER_ADDED: "Trusted publisher “{name}” added to project {project}: ID tokens of {issuer} "
    "with {claims_phrase} get a short-lived token ({scopes_phrase})",
    AuditAction.PUBLISHER_REMOVED: "Trusted publisher “{name}” removed from project {project}; "
    "{revoked} live token(s) it had given revoked",
    AuditAction.TOKEN_FOUND_BY_SCANNING: "Token “{name}” was found in public by GitHub's secret scanning{found_phrase} "
    "and has been revoked. Remove it from there, and replace it wherever it was used{where_phrase}",
    AuditAction.TOKEN_UNUSED_WARNING: "Token “{name}” has not been used since {unused_since}: it will be revoked "
    "on {revoke_on} unless it is used before then (tokens unused for {after_days} days are revoked)",
    AuditAction.AUTH_PASSWORD_USED: "Your password was used by a non-browser client ({agent}); "
    "switch it to a personal access token",
    AuditAction.SESSION_STARTED: "Signed in to the web site{with_phrase}",
    AuditAction.SESSION_REAUTHENTICATED: "Confirmed your {confirmed_with} again to create or change a token",
    AuditAction.PROJECT_CREATED: "Project {project} created, with you as its owner",
    AuditAction.PROJECT_MEMBER_ADDED: "Given {role} access to project {project}",
    AuditAction.INSTANCE_REGISTERED: "Instance registered for project {project} ({hint})",
    AuditAction.RELEASE_PUBLISHED: "Released version {version} of project {project}",
    AuditAction.DEVICE_APPROVED: "Approved a login of the {client} on {device} (from {requested_ip})",
    AuditAction.DEVICE_DENIED: "Denied a login of the {client} on {device} (from {requested_ip})",
    AuditAction.DEVICE_CODE_REJECTED: "Entered a device login code that was not waiting for approval",
    AuditAction.USER_PASSWORD_SET: "Password set by an administrator; your browser sessions were ended",
    AuditAction.SECOND_FACTOR_ADDED: "Second factor added: {factor_phrase}",
    AuditAction.SECOND_FACTOR_REMOVED: "Second factor removed: {factor_phrase}",
    AuditAction.RECOVERY_CODES_GENERATED: "New recovery codes made; the earlier ones no longer work",
    AuditAction.RECOVERY_CODE_USED: "A recovery code was used to sign in ({remaining} left)",
    AuditAction.SECOND_FACTORS_RESET: "Every second factor removed by an administrator ({removed}); "
    "sign-in asks for your password alone until you add one",
    AuditAction.SECOND_STEP_FAILED: "A wrong code was typed at the second step, after your password: if it was not "
    "you, someone knows your password; change it",
    AuditAction.BACKUP_RESTORED: "Tokensmith was restored from a backup taken {taken_at}; everyone signs in again",
}

# Why a token was revoked, as its owner reads it on the page ...
REVOKE_REASONS: dict[str, str] = {
    RevokeReason.OWNER: " by you",
    RevokeReason.ADMIN: " by an administrator",
    RevokeReason.LEAK_REPORTED: " after it was reported leaked",
    RevokeReason.ROTATED: " when it was rotated",
    RevokeReason.ACCOUNT_DISABLED: " when the account was disabled",
    RevokeReason.PUSH_PROTECTION: " by push protection (found in a git push)",
    RevokeReason.ROTATION_REUSE: (
        " after the token it replaced was used again (it had been copied before it was rotated)"
    ),
    RevokeReason.APPLICATION: " by the application that held it (it signed out)",
    RevokeReason.PARENT_REVOKED: " with the token it was made from",
    RevokeReason.PROJECT_MEMBER: " by a member of its project",
    RevokeReason.PUBLISHER_REMOVED: " when the trusted publisher it was made for was removed",
    RevokeReason.SECRET_SCANNING: " after GitHub's secret scanning found it in public",
    RevokeReason.UNUSED: " because it had not been used for too long",
    RevokeReason.RESTORED_REVOCATION: (
        " again after Tokensmith was restored from a backup (it had been revoked after that backup was taken)"
    ),
}
# ... and as whoever holds the token reads it in a refusal.
REVOKE_CAUSES: dict[str, str] = {
    RevokeReason.OWNER: "by its owner",
    RevokeReason.ADMIN: "by an administrator",
    RevokeReason.LEAK_REPORTED: "it was reported leaked",
    RevokeReason.ROTATED: "it was rotated; use the new token",
    RevokeReason.ACCOUNT_DISABLED: "the account was disabled",
    RevokeReason.PUSH_PROTECTION: "it was found in a git push",
    RevokeReason.ROTATION_REUSE: (
        "the token it replaced was used after its rotation, so this one may have been copied too"
    ),
    RevokeReason.APPLICATION: "by the application that held it, which signed out",
    RevokeReason.PARENT_REVOKED: "with the personal token it was made from",
    RevokeReason.PROJECT_MEMBER: "by a member of its project",
    RevokeReason.PUBLISHER_REMOVED: "the trusted publisher it was made for was removed",
    RevokeReason.SECRET_SCANNING: "GitHub's secret scanning found it in public",
    RevokeReason.UNUSED: "it had not been used for too long: this server revokes unused tokens",
    RevokeReason.RESTORED_REVOCATION: "it had been revoked after the backup Tokensmith was restored from",
}


def record(
    session: Session,
    action: AuditAction,
    *,
    actor: str,
    user_id: int | None = None,
    ip: str | None = None,
    at: datetime | None = None,
    **details: Any,
) -> AuditEvent:
    """The event, written with the unit of work's commit (the ORM's flush), so that a unit that
    writes nothing else before takes SQLite's one writer turn only as it ends (``record_now``
    writes events at once, for the CI exchanges)."""
    event = AuditEvent(**event_values(action, actor=actor, user_id=user_id, ip=ip, at=at, **details))
    session.add(event)
    _tell_listeners(session, event)
    return event


def event_values(
    action: AuditAction,
    *,
    actor: str,
    user_id: int | None = None,
    ip: str | None = None,
    at: datetime | None = None,
    **details: Any,
) -> dict[str, Any]:
    """An event's row, as ``record`` writes it: for ``record_now``."""
    return {"at": at or utcnow(), "action": action, "actor": actor, "user_id": user_id, "ip": ip, "details": details}


def record_now(session: Session, rows: list[dict[str, Any]]) -> None:
    """Events (``event_values``) written now by one executemany INSERT on the unit's connection,
    for a hot path whose unit writes already (the CI exchanges, one or a batch of them,
    tokens/workload_identity.py: an ORM flush costs several times the statement), each told to
    the listeners as ``record`` tells them — without its id, as an event ``record`` keeps for the
    flush (no listener needs it; a RETURNING of ids in order would cost SQLite a statement a row)."""
    _INSERT_EVENTS.execute(session.connection(), rows)
    if _listeners:
        for values in rows:
            _tell_listeners(session, Recorded(**values))


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event ``record_now`` wrote, as its listeners are told of it: an ``AuditEvent``'s
    fields, plain (an ORM object for each cost as much as the event's share of its INSERT), and
    no id, as an event ``record`` keeps for the flush."""

    at: datetime
    action: str
    actor: str
    user_id: int | None
    ip: str | None
    details: dict[str, Any]
    id: None = None


Event = AuditEvent | Recorded  # what a listener is told of


def _tell_listeners(session: Session, event: Event) -> None:
    for listener in _listeners:  # notices.py: the owner may be told by mail, in this same transaction
        listener(session, event)


_EVENTS = AuditEvent.__table__
_INSERT_EVENTS = BulkInsert(
    _EVENTS, ("at", "action", "actor", "user_id", "ip", "details"), lambda _dialect, rows: insert(_EVENTS).values(rows)
)


Listener = Callable[[Session, Event], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> None:
    """Call ``listener(session, event)`` for every event recorded from now on, in the event's
    own transaction: what reacts to events (mail to owners) listens here, rather than being
    called by the trail."""
    if listener not in _listeners:
        _listeners.append(listener)


def unsubscribe(listener: Listener) -> None:
    with contextlib.suppress(ValueError):
        _listeners.remove(listener)


MAX_PAGE = 200


def encode_cursor(event: AuditEvent) -> str:
    """Where the next page starts: after this event. Opaque to whoever holds it."""
    raw = json.dumps([event.at.isoformat(), event.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The moment (in UTC) and event id a cursor of ``encode_cursor`` holds. Anything else — a
    cursor edited by hand, forged, or of another server — is InvalidInput, never a crash: JSON
    of another shape, ``true`` where the id goes (a bool is an int to Python), an offset that
    takes the moment past year 9999 or before year 1 once in UTC."""
    try:
        at, event_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(at, str) or type(event_id) is not int or not 0 <= event_id < 2**31:
            raise ValueError
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:
            raise ValueError
        return moment.astimezone(UTC), event_id
    except (ValueError, TypeError, OverflowError, RecursionError, binascii.Error):
        raise InvalidInput("The cursor is not one this server gave: start again without it.") from None


def events_page(
    session: Session, user_id: int, *, limit: int = 50, cursor: str | None = None, token_id: int | None = None
) -> tuple[list[AuditEvent], str | None]:
    """One page of a person's events, newest first, and the cursor of the next page (None on
    the last). ``token_id``: only that token's events (its rotation's too)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit is from 1 to {MAX_PAGE}.")
    query = select(AuditEvent).where(AuditEvent.user_id == user_id)
    if token_id is not None:
        query = query.where(
            or_(
                AuditEvent.details["token_id"].as_integer() == token_id,
                AuditEvent.details["replaced_token_id"].as_integer() == token_id,
            )
        )
    if cursor:
        at, event_id = _decode_cursor(cursor)
        query = query.where(or_(AuditEvent.at < at, (AuditEvent.at == at) & (AuditEvent.id < event_id)))
    rows = list(session.scalars(query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    return rows[:limit], encode_cursor(rows[limit - 1]) if more else None


def all_events(session: Session, since: datetime | None = None) -> Iterator[tuple[AuditEvent, str | None]]:
    """Every event with the username of the person it concerns, oldest first, read in
    batches: the export of the whole trail."""
    query = select(AuditEvent, User.username).outerjoin(User, User.id == AuditEvent.user_id)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    query = query.order_by(AuditEvent.at, AuditEvent.id).execution_options(yield_per=500)
    yield from session.execute(query)


def public_fields(event: AuditEvent, *, for_admin: bool = False) -> dict[str, Any]:
    """An event as the API and the export write it: the code and the words. The address a leak
    report came from is the reporter's: for administrators only."""
    details = dict(event.details or {})
    return {
        "id": event.id,
        "at": event.at.isoformat(),
        "action": event.action,
        "description": describe(event),
        "actor": event.actor,
        "ip": event.ip if for_admin or shows_address(event) else None,
        "token_id": details.get("token_id"),
        "details": details,
    }


def events_for_user(session: Session, user_id: int, limit: int = 20) -> list[AuditEvent]:
    query = (
        select(AuditEvent)
        .where(AuditEvent.user_id == user_id)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


class _Details(dict[str, Any]):
    """An event's details for its sentence: a detail an old event lacks reads as "?"."""

    def __missing__(self, key: str) -> str:
        return "?"


def describe(event: Event) -> str:
    template = _DESCRIPTIONS.get(event.action)
    if template is None:
        # An action without a sentence yet (tests/audit/test_trail.py fails on one): its words at least.
        return event.action.replace(".", " ").replace("_", " ").capitalize()
    details = _Details(event.details or {})
    details.setdefault("agent", "unknown client")
    details["reason_phrase"] = REVOKE_REASONS.get(details.get("reason", ""), "")
    details["limits_phrase"] = _limits_phrase(details)
    details["where_phrase"] = _where_phrase(details)
    details["found_phrase"] = f" at {details['url']}" if details.get("url") else ""
    # A rotation's two secrets by their hints (events from before they were kept have neither).
    rotated = "replaced_hint" in details and "hint" in details
    details["new_phrase"] = f" ({details['hint']})" if rotated else ""
    details["old_phrase"] = f" ({details['replaced_hint']}), which no longer works" if rotated else ""
    details["short_commit"] = str(details.get("commit", "?"))[:12]
    details["claims_phrase"] = _claims_phrase(details.get("claims"))
    details["scopes_phrase"] = describe_scopes(details.get("scopes") or ["?"])
    details["factor_phrase"] = f"{details.get('kind', '?')}" + (f" “{details['name']}”" if details.get("name") else "")
    details["confirmed_with"] = details.get("confirmed_with") or "password"
    details["with_phrase"] = f" ({details['second_step']})" if details.get("second_step") else ""
    return string.Formatter().vformat(template, (), details)


def _limits_phrase(details: dict[str, Any]) -> str:
    if "scopes" not in details:  # events from before tokens had limits
        return ""
    return f" ({describe_limits(details['scopes'], details.get('projects'), details.get('allowed_ips'))})"


def _claims_phrase(claims: object) -> str:
    """A trusted publisher's claims as its events say them: ``repository = acme/app, ref = …``."""
    if not isinstance(claims, dict) or not claims:
        return "?"
    return ", ".join(f"{name} = {value}" for name, value in claims.items())


def _where_phrase(details: dict[str, Any]) -> str:
    """Where the owner last used a token reported leaked: where to go and replace it."""
    if "last_used_ip" not in details and "last_used_at" not in details:
        return ""
    if not details.get("last_used_at"):
        return "; it had never been used"
    when = display(datetime.fromisoformat(details["last_used_at"]))
    where = details.get("last_used_ip") or "an unknown address"
    agent = f" by {details['last_used_agent']}" if details.get("last_used_agent") else ""
    return f"; you last used it on {when} from {where}{agent}"


def shows_address(event: AuditEvent) -> bool:
    """Whether the owner sees the address an event came from. Not a leak report's nor secret
    scanning's: that is the reporter's, which tells the owner nothing about where the token was."""
    return event.ip is not None and event.action not in (
        AuditAction.TOKEN_LEAK_REPORTED,
        AuditAction.TOKEN_FOUND_BY_SCANNING,
    )


def needs_attention(event: AuditEvent) -> bool:
    """Events the owner should notice without asking: someone else acted on their tokens."""
    return event.action in (
        AuditAction.TOKEN_LEAK_REPORTED,
        AuditAction.TOKEN_FOUND_BY_SCANNING,
        AuditAction.TOKEN_PUSH_BLOCKED,
        AuditAction.AUTH_PASSWORD_USED,
        AuditAction.USER_PASSWORD_SET,
        AuditAction.TOKEN_UNUSED_WARNING,
        AuditAction.SECOND_FACTORS_RESET,
        AuditAction.SECOND_STEP_FAILED,
    ) or (event.action == "token.revoked" and event.details.get("reason") in ("admin", "rotation_reuse", "unused"))
