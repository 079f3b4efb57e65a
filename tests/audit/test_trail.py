"""The audit trail read back: every action in words, a person's events a page at a time."""

from __future__ import annotations

import base64
import json
import random
from datetime import timedelta

import pytest

from tokensmith.accounts import sessions
from tokensmith.audit import trail
from tokensmith.clock import utcnow
from tokensmith.errors import InvalidInput
from tokensmith.store.models import AuditEvent
from tokensmith.tokens import lifecycle as token_lifecycle


def test_every_action_reads_in_words() -> None:
    """trail.record takes an AuditAction (the type checker holds every call to it); each has its
    sentence, and no sentence is left for an action that is gone."""
    assert set(trail._DESCRIPTIONS) == set(trail.AuditAction)


def test_every_revoke_reason_reads_in_words_for_its_owner_and_for_whoever_presents_the_token() -> None:
    assert set(trail.REVOKE_REASONS) == set(trail.REVOKE_CAUSES) == set(trail.RevokeReason)


@pytest.mark.parametrize("action", sorted(trail._DESCRIPTIONS))
def test_an_event_missing_its_details_still_reads_in_words(action: str) -> None:
    words = trail.describe(AuditEvent(action=action, details={}, actor="x", at=utcnow()))
    assert words and action not in words and "{" not in words


def test_a_project_created_reads_in_words() -> None:
    event = AuditEvent(action="project.created", details={"project": "acme"}, actor="admin (shell)", at=utcnow())
    assert trail.describe(event) == "Project acme created, with you as its owner"
    assert trail.public_fields(event)["description"] == trail.describe(event)


def test_a_persons_events_come_a_page_at_a_time_and_by_token(db, make_user, make_token) -> None:
    owner, other = make_user(), make_user()
    _secret, laptop = make_token(owner, "laptop")
    _secret, ci = make_token(owner, "ci")
    make_token(other, "theirs")
    token_lifecycle.revoke_token(db, laptop.id, owner.id, actor=owner.username)
    base = utcnow() - timedelta(hours=1)
    for minute in range(7):
        trail.record(db, "session.started", actor=owner.username, user_id=owner.id, at=base + timedelta(minutes=minute))
    db.flush()

    seen, cursor = [], None
    while True:
        page, cursor = trail.events_page(db, owner.id, limit=4, cursor=cursor)
        seen.extend(page)
        if cursor is None:
            break
    # user.created, two token.created, token.revoked, seven session.started; nothing of the other's
    assert len(seen) == 11 and {event.user_id for event in seen} == {owner.id}
    assert len({event.id for event in seen}) == 11
    assert [(e.at, e.id) for e in seen] == sorted(((e.at, e.id) for e in seen), reverse=True)

    laptop_events, more = trail.events_page(db, owner.id, token_id=laptop.id)
    assert [event.action for event in laptop_events] == ["token.revoked", "token.created"] and more is None
    assert trail.events_page(db, other.id, token_id=ci.id) == ([], None)

    with pytest.raises(InvalidInput, match="cursor"):
        trail.events_page(db, owner.id, cursor="not-a-cursor")


def test_a_session_counts_as_recent_for_fifteen_minutes(db, make_user, keys) -> None:
    user = make_user()
    _secret, row = sessions.start_session(db, keys, user, days=1, ip=None, user_agent=None)
    assert sessions.recently_authenticated(row)
    assert not sessions.recently_authenticated(row, utcnow() + sessions.REAUTHENTICATION_WINDOW + timedelta(seconds=1))
    _secret, old = sessions.start_session(
        db, keys, user, days=1, ip=None, user_agent=None, authenticated_at=utcnow() - timedelta(hours=2)
    )
    assert not sessions.recently_authenticated(old)
    sessions.reauthenticated(db, old, ip="127.0.0.1")
    assert sessions.recently_authenticated(old)


def forged(value: object) -> str:
    """A cursor as ``encode_cursor`` writes one, around any JSON value."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# The two forged cursors of issue 18, which answered 500: a boolean where the event id goes, and
# a moment that overflows once converted to UTC.
ISSUE_18_CURSORS = [forged(["2999-01-01T00:00:00+00:00", True]), forged(["9999-12-31T23:59:59-23:59", 5])]


def fuzzed_cursors(seed: int, count: int) -> list[str]:
    """Cursors of every shape: random bytes, JSON of the wrong shape or types, moments at the
    edges of the calendar and of UTC offsets, valid cursors with characters changed."""
    rng = random.Random(seed)
    moments = [
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59+00:00",
        "0001-01-01T00:00:00+00:00",
        "2026-01-01T00:00:00",
        "2026-01-01",
        "2026-13-01T00:00:00+00:00",
        "2026-01-01T00:00:00+24:00",
        "",
        "now",
        "2026-01-01T00:00:00.123456789+00:00",
    ]
    values = [True, False, None, 0, -1, 2**31, 2**63, 10**400, 1.5, float("inf"), "5", [], {}, [5], {"id": 5}]
    cases = [*ISSUE_18_CURSORS, "", "=", "====", "%%%", "é", "\x00", "a" * 200]
    valid = forged(["2026-01-01T00:00:00+00:00", 5])
    while len(cases) < count:
        kind = rng.randrange(5)
        if kind == 0:
            cases.append(base64.urlsafe_b64encode(rng.randbytes(rng.randrange(1, 150))).decode().rstrip("="))
        elif kind == 1:
            cases.append(forged([rng.choice(moments + values), rng.choice(values + moments)]))
        elif kind == 2:
            cases.append(
                forged(
                    rng.choice(
                        [values, moments, {"at": moments[0], "id": 5}, [moments[0], 5, 6], [[moments[0], 5]], "x" * 50]
                    )
                )
            )
        elif kind == 3:
            chars = list(valid)
            for _ in range(rng.randrange(1, 4)):
                chars[rng.randrange(len(chars))] = rng.choice("AZaz09-_=+/.é ")
            cases.append("".join(chars))
        else:
            cases.append(forged("[" * rng.randrange(1, 140)) if rng.random() < 0.5 else "W" * rng.randrange(1, 200))
    return cases


def test_a_forged_cursor_is_refused_in_words_never_a_crash(db, make_user):
    """Issue 18's two forged cursors, and a few hundred more of every shape: each either reads
    a page or is InvalidInput, on SQLite and PostgreSQL (whose driver met the moment too)."""
    owner = make_user()
    for cursor in fuzzed_cursors(seed=18, count=400):
        try:
            trail.events_page(db, owner.id, cursor=cursor)
        except InvalidInput as refused:
            assert "cursor" in refused.message
    for cursor in ISSUE_18_CURSORS:
        with pytest.raises(InvalidInput, match="cursor"):
            trail.events_page(db, owner.id, cursor=cursor)
    # A cursor this server gave still works, whatever offset its moment was written with.
    page, more = trail.events_page(db, owner.id, cursor=forged(["2999-01-01T02:00:00+02:00", 5]))
    assert [event.action for event in page] == ["user.created"] and more is None
