"""The audit trail read back: every action in words, a person's events a page at a time."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from tokensmith import audit, personal_tokens, sessions
from tokensmith.clock import utcnow
from tokensmith.errors import InvalidInput
from tokensmith.models import AuditEvent

SOURCE = Path(audit.__file__).parent
ACTION = re.compile(r'"([a-z_]+\.[a-z_]+)"')


def recorded_actions() -> set[str]:
    """Every action code a call of audit.record anywhere in the server can write."""
    found = set()
    for path in SOURCE.rglob("*.py"):
        text = path.read_text()
        for call in re.finditer(r"audit\.record\(", text):
            head = text[call.end(): call.end() + 160].split("actor=")[0]
            found.update(ACTION.findall(head))
    return found


def test_every_recorded_action_reads_in_words() -> None:
    actions = recorded_actions()
    assert {"project.created", "release.published", "token.created", "session.reauthenticated"} <= actions
    assert sorted(actions - set(audit._DESCRIPTIONS)) == []


@pytest.mark.parametrize("action", sorted(audit._DESCRIPTIONS))
def test_an_event_missing_its_details_still_reads_in_words(action: str) -> None:
    words = audit.describe(AuditEvent(action=action, details={}, actor="x", at=utcnow()))
    assert words and action not in words and "{" not in words


def test_a_project_created_reads_in_words() -> None:
    event = AuditEvent(action="project.created", details={"project": "acme"}, actor="admin (shell)", at=utcnow())
    assert audit.describe(event) == "Project acme created, with you as its owner"
    assert audit.public_fields(event)["description"] == audit.describe(event)


def test_a_persons_events_come_a_page_at_a_time_and_by_token(db, make_user, make_token) -> None:
    owner, other = make_user(), make_user()
    _secret, laptop = make_token(owner, "laptop")
    _secret, ci = make_token(owner, "ci")
    make_token(other, "theirs")
    personal_tokens.revoke_token(db, laptop.id, owner.id, actor=owner.username)
    base = utcnow() - timedelta(hours=1)
    for minute in range(7):
        audit.record(db, "session.started", actor=owner.username, user_id=owner.id, at=base + timedelta(minutes=minute))
    db.flush()

    seen, cursor = [], None
    while True:
        page, cursor = audit.events_page(db, owner.id, limit=4, cursor=cursor)
        seen.extend(page)
        if cursor is None:
            break
    # user.created, two token.created, token.revoked, seven session.started; nothing of the other's
    assert len(seen) == 11 and {event.user_id for event in seen} == {owner.id}
    assert len({event.id for event in seen}) == 11
    assert [(e.at, e.id) for e in seen] == sorted(((e.at, e.id) for e in seen), reverse=True)

    laptop_events, more = audit.events_page(db, owner.id, token_id=laptop.id)
    assert [event.action for event in laptop_events] == ["token.revoked", "token.created"] and more is None
    assert audit.events_page(db, other.id, token_id=ci.id) == ([], None)

    with pytest.raises(InvalidInput, match="cursor"):
        audit.events_page(db, owner.id, cursor="not-a-cursor")


def test_a_session_counts_as_recent_for_fifteen_minutes(db, make_user, keys) -> None:
    user = make_user()
    _secret, row = sessions.start_session(db, keys, user, days=1, ip=None, user_agent=None)
    assert sessions.recently_authenticated(row)
    assert not sessions.recently_authenticated(row, utcnow() + sessions.REAUTHENTICATION_WINDOW + timedelta(seconds=1))
    _secret, old = sessions.start_session(db, keys, user, days=1, ip=None, user_agent=None,
                                          authenticated_at=utcnow() - timedelta(hours=2))
    assert not sessions.recently_authenticated(old)
    sessions.reauthenticated(db, old, ip="127.0.0.1")
    assert sessions.recently_authenticated(old)
