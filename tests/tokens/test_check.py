"""The token check against a real store, SQLite and PostgreSQL (each test runs on both): what it
finds, what it refuses and with which words, what it notes of a use, and that the request path
reads a token exactly as the ORM does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from tokensmith.accounts import users
from tokensmith.clock import utcnow
from tokensmith.errors import (
    AccountDisabled,
    CredentialMalformed,
    InvalidInput,
    TokenExpired,
    TokenRevoked,
    TokenUnknown,
)
from tokensmith.store.models import TokenAddress
from tokensmith.tokens import check as token_check
from tokensmith.tokens import format as token_format
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import listing as token_listing

PREFIX = "tks_"


def verify(db, keys, secret):
    return token_check.verify_token(db, keys, secret, prefix=PREFIX)


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
