"""The token lifecycle against a real store: SQLite and PostgreSQL (each test runs on both)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from tests.support.ledger import remember
from tokensmith.accounts import users
from tokensmith.audit import trail
from tokensmith.clock import utcnow
from tokensmith.errors import (
    AccountDisabled,
    Conflict,
    CredentialMalformed,
    InvalidInput,
    NotFound,
    NotPermitted,
    TokenExpired,
    TokenReplaced,
    TokenRevoked,
    TokenUnknown,
)
from tokensmith.projects import catalog
from tokensmith.store.models import AuditEvent, PersonalToken, TokenAddress
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


def test_the_digest_depends_on_the_server_key(db, keys, make_user, make_token):
    from tokensmith.store.server_keys import parse_keys

    secret, _row = make_token(make_user())
    other_server = parse_keys("1:" + "x" * 40)
    with pytest.raises(TokenUnknown):
        verify(db, other_server, secret)


def test_a_rotated_server_key_still_verifies_old_tokens(db, keys, make_user, make_token):
    from tokensmith.store.server_keys import parse_keys

    secret, _row = make_token(make_user())
    rotated = parse_keys("2:" + "n" * 40 + ",1:" + "k" * 40)
    assert verify(db, rotated, secret)
    new_secret, new_row = token_lifecycle.create_token(db, rotated, make_user().id, "new", prefix=PREFIX, actor="tests")
    assert new_row.key_version == 2 and verify(db, rotated, new_secret)


def test_a_wrong_checksum_is_refused_without_asking_the_store(db, keys, make_user, make_token, store_engine):
    secret, _row = make_token(make_user())
    forged = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    db.flush()  # so that only the checks' own statements are counted
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(store_engine, "before_cursor_execute", listener)
    try:
        with pytest.raises(CredentialMalformed, match="checksum"):
            verify(db, keys, forged)
        assert statements == []
        verify(db, keys, secret)  # the listener does see a real check's one lookup
        assert len(statements) == 1
    finally:
        event.remove(store_engine, "before_cursor_execute", listener)


def test_an_unknown_well_formed_token_is_unknown(db, keys):
    with pytest.raises(TokenUnknown):
        verify(db, keys, token_format.generate(PREFIX))


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


def test_expiry(db, keys, make_user, make_token):
    alice = make_user()
    secret, row = make_token(alice, "short", expires_at=token_lifecycle.expiry_in_days(7))
    assert verify(db, keys, secret)
    with pytest.raises(TokenExpired, match="expired on"):
        token_check.verify_token(db, keys, secret, prefix=PREFIX, now=row.expires_at + timedelta(seconds=1))
    with pytest.raises(InvalidInput, match="in the future"):
        make_token(alice, "past", expires_at=utcnow() - timedelta(days=1))
    for days in (0, -1, 3651):
        with pytest.raises(InvalidInput):
            token_lifecycle.expiry_in_days(days)


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


def test_use_is_recorded_at_most_once_a_minute_per_address(db, keys, make_user, make_token, store_engine):
    secret, row = make_token(make_user())
    token = verify(db, keys, secret)
    token_check.record_use(db, token, ip="127.0.0.1", agent="git/2.39.5")
    db.refresh(row)
    first = row.last_used_at
    assert (row.last_used_ip, row.last_used_agent) == ("127.0.0.1", "git/2.39.5") and first is not None
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(store_engine, "before_cursor_execute", listener)
    try:
        token_check.record_use(db, verify(db, keys, secret), ip="127.0.0.1", agent="curl/8")
    finally:
        event.remove(store_engine, "before_cursor_execute", listener)
    assert len(statements) == 1 and statements[0].lstrip().startswith("SELECT")  # the check only
    db.refresh(row)
    assert row.last_used_at == first and row.last_used_agent == "git/2.39.5"
    # From another address within the minute: noted, so that every address it came from is seen.
    token_check.record_use(db, verify(db, keys, secret), ip="127.0.0.2", agent="x" * 500)
    db.refresh(row)
    assert row.last_used_ip == "127.0.0.2" and len(row.last_used_agent) == 200
    addresses = token_listing.addresses_of(db, [row.id])[row.id]
    assert [address.ip for address in addresses] == ["127.0.0.2", "127.0.0.1"]
    for number in range(3, 8):  # the five latest distinct addresses are kept, on either store
        token_check.record_use(db, verify(db, keys, secret), ip=f"127.0.0.{number}", agent="curl/8")
    addresses = token_listing.addresses_of(db, [row.id])[row.id]
    assert sorted(address.ip for address in addresses) == [f"127.0.0.{number}" for number in range(3, 8)]
    assert db.scalar(select(func.count()).where(TokenAddress.token_id == row.id)) == 5


def test_a_disabled_account_stops_every_token(db, keys, make_user, make_token):
    from tokensmith.accounts import users

    alice = make_user()
    first, _ = make_token(alice, "one")
    second, second_row = make_token(alice, "two")
    assert users.disable_user(db, alice, actor="tests") == 2
    for secret in (first, second):
        with pytest.raises(TokenRevoked, match="account was disabled"):
            verify(db, keys, secret)
    # Even a token that escaped revocation would be refused while the account is disabled.
    second_row.revoked_at = None
    db.flush()
    with pytest.raises(AccountDisabled):
        verify(db, keys, second)


def test_the_request_path_reads_a_token_exactly_as_the_orm_path_does(db, keys, make_user, make_token):
    """On SQLite a plain connection reads on the driver's cursor and converts the values
    itself; whatever a token holds, it must come out as SQLAlchemy's types would have it."""
    owner = make_user("ines", admin=True)
    fresh, _ = make_token(owner, "fresh")
    used, _used_row = make_token(owner, "used", expires_at=utcnow() + timedelta(days=3))
    token_check.record_use(
        db, token_check.verify_token(db, keys, used, prefix=PREFIX), ip="2001:db8::1", agent="git/2.47"
    )
    revoked, revoked_row = make_token(owner, "revoked")
    token_lifecycle.revoke_token(db, revoked_row.id, owner.id, actor="tests")
    db.flush()
    limited, _ = make_token(owner, "limited", scopes=["git:write"], allowed_ips=["2001:db8::/32", "192.0.2.0/24"])
    for secret in (fresh, used, revoked, limited):
        on_request_path = token_check.lookup(db.connection(), keys, secret)
        through_session = token_check.lookup(db, keys, secret)
        assert on_request_path == through_session
        assert on_request_path.created_at.tzinfo is not None and on_request_path.owner.is_admin is True
    used_token = token_check.lookup(db.connection(), keys, used)
    assert used_token.last_used_ip == "2001:db8::1" and used_token.expires_at.utcoffset() == timedelta(0)
    assert token_check.lookup(db.connection(), keys, revoked).revoked_reason == "owner"
    assert token_check.lookup(db.connection(), keys, "tks_" + "x" * 38) is None


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


def test_the_inventory_lists_live_tokens_only_and_an_administrator_revokes_any(db, make_user, make_token):
    alice, bob, admin = make_user(), make_user(), make_user(admin=True)
    _s, kept = make_token(alice, "kept")
    _s, gone = make_token(alice, "gone")
    make_token(alice, "ended", expires_at=utcnow() + timedelta(seconds=1))
    _s, theirs = make_token(bob, "theirs")
    token_lifecycle.revoke_token(db, gone.id, alice.id, actor=alice.username)
    later = utcnow() + timedelta(minutes=1)

    rows, more = token_listing.live_tokens(db, owner_id=alice.id, now=later)
    assert [row.name for row in rows] == ["kept"] and not more
    everyone, _more = token_listing.live_tokens(db, now=later, limit=100_000)
    assert {kept.id, theirs.id} <= {row.id for row in everyone} and gone.id not in {row.id for row in everyone}
    first, more = token_listing.live_tokens(db, limit=1, now=later)
    assert len(first) == 1 and more

    token_lifecycle.revoke_any_token(db, theirs.id, actor=admin.username, ip="192.0.2.1")
    event = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "token.revoked", AuditEvent.user_id == bob.id)
    ).one()
    assert (event.actor, event.details["reason"], event.details["token_id"]) == (admin.username, "admin", theirs.id)
    assert trail.describe(event) == "Token “theirs” revoked by an administrator"
    with pytest.raises(NotFound):
        token_lifecycle.revoke_any_token(db, theirs.id, actor=admin.username)
