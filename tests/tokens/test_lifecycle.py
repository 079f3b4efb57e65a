"""The token lifecycle against a real store: SQLite and PostgreSQL (each test runs on both)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.support.ledger import remember
from tokensmith.accounts import users
from tokensmith.audit import trail
from tokensmith.clock import utcnow
from tokensmith.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    NotPermitted,
    TokenReplaced,
    TokenRevoked,
)
from tokensmith.projects import catalog
from tokensmith.store.models import AuditEvent, PersonalToken
from tokensmith.tokens import check as token_check
from tokensmith.tokens import format as token_format
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import listing as token_listing

PREFIX = "tks_"


def verify(db, keys, secret):
    return token_check.verify_token(db, keys, secret, prefix=PREFIX)


def test_a_created_token_verifies_and_is_stored_only_as_a_digest(db, keys, make_user, make_token):
    alice = make_user("alice")
    secret, row = make_token(alice, "CI Chain")
    assert verify(db, keys, secret).id == row.id
    stored = db.scalars(select(PersonalToken).where(PersonalToken.id == row.id)).one()
    assert stored.digest == keys.digest("token", secret) and len(stored.digest) == 32
    assert secret.encode() not in stored.digest and secret not in stored.hint
    assert stored.hint == f"tks_…{secret[-4:]}"
    assert stored.expires_at is None and stored.scopes == [
        "api:read",
        "api:write",
        "git:read",
        "git:write",
        "maven:read",
    ]
    assert stored.projects is None and stored.allowed_ips is None


@pytest.mark.parametrize(
    "name, words",
    [
        ("", "Give the token a name"),
        ("   ", "Give the token a name"),
        ("x" * 101, "at most 100"),
        ("bad\x07name", "control"),
        ("tab\tname", "control"),
        ("line\nbreak", "control"),
        ("bidi\u202etrick", "control"),
    ],
)
def test_bad_names_are_refused_and_nothing_is_created(db, keys, make_user, name, words):
    alice = make_user()
    with pytest.raises(InvalidInput, match=words):
        token_lifecycle.create_token(db, keys, alice.id, name, prefix=PREFIX, actor="tests")
    assert token_listing.list_tokens(db, alice.id) == []


def test_a_name_of_100_characters_and_markup_are_fine(db, keys, make_user, make_token):
    alice = make_user()
    make_token(alice, "x" * 100)
    _secret, row = make_token(alice, "<script>alert(1)</script>")
    assert row.name == "<script>alert(1)</script>"


def test_names_are_unique_among_live_tokens_only(db, keys, make_user, make_token):
    alice, bob = make_user(), make_user()
    _secret, first = make_token(alice, "laptop")
    with pytest.raises(Conflict, match="already have a token named"):
        make_token(alice, "laptop")
    make_token(bob, "laptop")  # another person's names are theirs
    token_lifecycle.revoke_token(db, first.id, alice.id, actor="tests")
    make_token(alice, "laptop")  # a revoked token gives its name back


def test_an_expired_token_keeps_its_name_until_revoked(db, keys, make_user, make_token):
    alice = make_user()
    _secret, row = make_token(alice, "old")
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    with pytest.raises(Conflict, match="expired token"):
        make_token(alice, "old")


def test_revoking_stops_that_token_only_and_is_audited(db, keys, make_user, make_token):
    alice = make_user()
    lost, lost_row = make_token(alice, "lost laptop")
    kept, _kept_row = make_token(alice, "desktop")
    token_lifecycle.revoke_token(db, lost_row.id, alice.id, actor=alice.username)
    with pytest.raises(TokenRevoked, match=r"revoked on .* \(by its owner\)"):
        verify(db, keys, lost)
    assert verify(db, keys, kept)
    assert [row.name for row in token_listing.list_tokens(db, alice.id)] == ["desktop"]
    events = [e for e in trail.events_for_user(db, alice.id) if e.action == "token.revoked"]
    assert events[0].details["token_id"] == lost_row.id and events[0].details["reason"] == "owner"


def test_nobody_revokes_someone_elses_token(db, keys, make_user, make_token):
    alice, mallory = make_user(), make_user()
    secret, row = make_token(alice)
    with pytest.raises(NotFound):
        token_lifecycle.revoke_token(db, row.id, mallory.id, actor=mallory.username)
    assert verify(db, keys, secret)
    token_lifecycle.revoke_token(db, row.id, alice.id, actor="tests")
    with pytest.raises(NotFound):  # twice is not found either: it is no longer live
        token_lifecycle.revoke_token(db, row.id, alice.id, actor="tests")


def test_rotation_keeps_name_expiry_and_limits_and_kills_the_old_secret(db, keys, make_user, make_token, tmp_path):
    alice = make_user()
    project = catalog.create_project(db, tmp_path, f"rot-{alice.id}", "com.acme", alice.id, actor="tests").id
    expires = token_lifecycle.expiry_in_days(30)
    old_secret, old = make_token(
        alice, "CI Chain", expires_at=expires, scopes=["git:write"], projects=[project], allowed_ips=["192.0.2.0/24"]
    )
    new_secret, new = token_lifecycle.rotate_token(
        db, keys, old.id, alice.id, prefix=PREFIX, actor="tests", presented_token_id=old.id
    )
    assert new_secret != old_secret and new.id != old.id
    assert (new.name, new.expires_at, new.scopes, new.projects, new.allowed_ips) == (
        "CI Chain",
        expires,
        ["git:read", "git:write"],
        [project],
        ["192.0.2.0/24"],
    )
    rotated = next(e for e in trail.events_for_user(db, alice.id) if e.action == "token.rotated")
    assert rotated.details["projects"] == [project] and rotated.details["allowed_ips"] == ["192.0.2.0/24"]
    with pytest.raises(TokenRevoked, match="rotated"):
        verify(db, keys, old_secret)
    assert verify(db, keys, new_secret).id == new.id
    # One event tells the rotation (issue 18: three, one reading like a new token was made).
    before_rotation = [e.action for e in trail.events_for_user(db, alice.id)][1:]
    assert next(e.action for e in trail.events_for_user(db, alice.id)) == "token.rotated"
    assert before_rotation[0] == "token.created" and before_rotation.count("token.created") == 1
    assert "token.revoked" not in before_rotation
    assert trail.describe(rotated) == (
        f"Token “CI Chain” rotated: a new secret ({new.hint}) replaced the old one ({old.hint}), which no longer "
        f"works (scopes: git:read, git:write; projects: {project}; from: 192.0.2.0/24)"
    )
    assert rotated.details["expires_at"] == expires.isoformat()


def test_an_expired_token_cannot_be_rotated(db, keys, make_user, make_token):
    alice = make_user()
    _secret, row = make_token(alice)
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    with pytest.raises(NotPermitted, match="expired"):
        token_lifecycle.rotate_token(
            db, keys, row.id, alice.id, prefix=PREFIX, actor="tests", presented_token_id=row.id
        )


def test_reported_leaks_are_revoked_and_their_owners_told(db, keys, make_user, make_token):
    alice, bob = make_user(), make_user()
    leaked, _leaked_row = make_token(alice, "pasted in a gist")
    safe, _safe_row = make_token(alice, "safe")
    bobs, _bobs_row = make_token(bob, "also leaked")
    reported = [leaked, bobs, leaked, token_format.generate(PREFIX), "not a token", leaked[:-1] + "x"]
    count = token_lifecycle.revoke_reported_tokens(db, keys, reported, prefix=PREFIX, ip="192.0.2.1")
    assert count == 2
    for secret in (leaked, bobs):
        with pytest.raises(TokenRevoked, match="reported leaked"):
            verify(db, keys, secret)
    assert verify(db, keys, safe)
    event_ = db.scalars(
        select(AuditEvent).where(AuditEvent.user_id == alice.id, AuditEvent.action == "token.leak_reported")
    ).one()
    assert event_.details["name"] == "pasted in a gist" and event_.actor == "leak report"
    assert trail.needs_attention(event_)
    assert "reported leaked" in trail.describe(event_)
    # Reporting again changes nothing and says nothing different.
    assert token_lifecycle.revoke_reported_tokens(db, keys, [leaked], prefix=PREFIX, ip=None) == 0


def _rotate(db, keys, row):
    return token_lifecycle.rotate_token(
        db, keys, row.id, row.user_id, prefix=PREFIX, actor="tests", presented_token_id=row.id
    )


def test_a_rotated_token_used_again_revokes_its_successors_and_tells_the_owner(db, keys, make_user, make_token):
    alice = make_user()
    first, first_row = make_token(alice, "deploy")
    second, second_row = _rotate(db, keys, first_row)
    third, third_row = _rotate(db, keys, second_row)
    remember(second), remember(third)
    with pytest.raises(TokenReplaced, match="somebody copied it before the rotation") as caught:
        verify(db, keys, first)
    assert caught.value.token_id == first_row.id
    assert token_lifecycle.revoke_successors(db, first_row.id) == 1  # the live end of the chain
    assert token_lifecycle.revoke_successors(db, first_row.id) == 0  # once only
    with pytest.raises(TokenRevoked, match="the token it replaced was used after its rotation"):
        verify(db, keys, third)
    reuse = [e for e in trail.events_for_user(db, alice.id) if e.details.get("reason") == "rotation_reuse"]
    assert [(e.action, e.details["token_id"], e.actor) for e in reuse] == [
        ("token.revoked", third_row.id, "rotation reuse")
    ]
    assert "had been copied before it was rotated" in trail.describe(reuse[0]) and trail.needs_attention(reuse[0])
    assert db.get(PersonalToken, first_row.id).replaced_by_id == second_row.id


def test_two_reuses_at_once_revoke_the_successor_once(store_engine, keys):
    """Two instances see the rotated token at the same moment: the conditional UPDATE lets one
    revoke (and audit); the other, once the first commits, finds nothing left to revoke."""
    import threading

    from tokensmith.store.database import session_factory, unit_of_work

    sessions = session_factory(store_engine)
    with unit_of_work(sessions) as setup:
        owner = users.create_user(setup, f"reuse-{store_engine.dialect.name}", "reuse@example.test", actor="tests")
        _secret, old = token_lifecycle.create_token(setup, keys, owner.id, "ci", prefix=PREFIX, actor="tests")
        remember(_secret)
        secret, new = _rotate(setup, keys, old)
        remember(secret)
        old_id, new_id, owner_id = old.id, new.id, owner.id
    first = sessions()
    assert token_lifecycle.revoke_successors(first, old_id) == 1  # holds the row's lock, uncommitted
    counted: list[int] = []

    def second() -> None:
        with unit_of_work(sessions) as session:
            counted.append(token_lifecycle.revoke_successors(session, old_id))

    other = threading.Thread(target=second)
    other.start()
    other.join(0.3)  # waiting on the lock (PostgreSQL) or on the writer (SQLite)
    first.commit()
    first.close()
    other.join(10)
    assert counted == [0]
    with unit_of_work(sessions) as session:
        assert session.get(PersonalToken, new_id).revoked_reason == "rotation_reuse"
        assert (
            len(
                [
                    e
                    for e in trail.events_for_user(session, owner_id, limit=50)
                    if e.details.get("reason") == "rotation_reuse"
                ]
            )
            == 1
        )
