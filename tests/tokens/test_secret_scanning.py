"""GitHub's secret scanning, in process: the published keys as a partner keeps them (fetched over
real HTTP from a key server of the tests' own on loopback: rotating, down, broken; the clock
moved by hand), and what a checked report revokes and answers, on both stores. (The endpoint
over HTTP, its body limit, the mail: tests/web/test_secret_scanning.py.)"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from tests.support.secret_scanner import KeyServer, SigningKey, report
from tokensmith.clock import utcnow
from tokensmith.errors import ScanningKeysUnavailable, SignatureRefused
from tokensmith.store.models import AuditEvent
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import secret_scanning
from tokensmith.tokens.secret_scanning import Finding, PublishedKeys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def key_server() -> Iterator[KeyServer]:
    server = KeyServer().start()
    yield server
    server.stop()


@pytest.fixture
def published(key_server: KeyServer) -> tuple[KeyServer, SigningKey, PublishedKeys, Clock]:
    """A key server publishing one key, its answers honest again, and a partner's fresh cache."""
    key = SigningKey()
    key_server.publish(key)
    key_server.answer = None
    clock = Clock()
    return key_server, key, PublishedKeys(key_server.url, clock=clock), clock


def verify(keys: PublishedKeys, body: bytes, identifier: str | None, signature: str | None) -> None:
    asyncio.run(keys.verify(body, identifier, signature))


def test_a_report_signed_by_a_published_key_verifies_and_nothing_else_does(published):
    server, key, keys, _clock = published
    body = report("tks_anything")
    verify(keys, body, key.identifier, key.sign(body))
    impostor = SigningKey()
    refusals = {
        "unsigned": (None, None),
        "no signature": (key.identifier, None),
        "not base64": (key.identifier, "not*base64!"),
        "a malformed identifier": ("key id; DROP", key.sign(body)),
        "another key's signature": (key.identifier, impostor.sign(body)),
        "a signature of another body": (key.identifier, key.sign(report("tks_other"))),
        "garbage that is base64": (key.identifier, "AAAA"),
    }
    for what, (identifier, signature) in refusals.items():
        with pytest.raises(SignatureRefused, match="Nothing was revoked"):
            verify(keys, body, identifier, signature)
        assert what
    assert server.requests >= 1


def test_an_unknown_key_has_the_list_fetched_again_at_most_once_a_minute(published):
    server, key, keys, clock = published
    body = report("tks_anything")
    verify(keys, body, key.identifier, key.sign(body))
    fetched = server.requests
    stranger = SigningKey()
    for _ in range(3):  # made-up identifiers make this server fetch GitHub's list once, not each time
        with pytest.raises(SignatureRefused, match="not among the published"):
            verify(keys, body, stranger.identifier, stranger.sign(body))
    assert server.requests == fetched  # the list was fetched less than a minute ago: not again
    clock.now += 61
    with pytest.raises(SignatureRefused):
        verify(keys, body, stranger.identifier, stranger.sign(body))
    assert server.requests == fetched + 1


def test_keys_rotate_a_new_one_verifies_and_one_no_longer_published_does_not(published):
    server, old, keys, clock = published
    body = report("tks_anything")
    verify(keys, body, old.identifier, old.sign(body))
    new = SigningKey()
    server.publish(old, new)  # GitHub adds the next key, then signs with it
    clock.now += 61
    verify(keys, body, new.identifier, new.sign(body))
    verify(keys, body, old.identifier, old.sign(body))  # still listed: still good
    server.publish(new)  # the old one withdrawn
    clock.now += 3601  # the list is kept an hour
    verify(keys, body, new.identifier, new.sign(body))
    with pytest.raises(SignatureRefused):
        verify(keys, body, old.identifier, old.sign(body))


def test_the_key_server_down_is_unavailable_never_a_refusal_and_then_it_comes_back(published):
    server, key, keys, clock = published
    body = report("tks_anything")
    server.stop()
    try:
        with pytest.raises(ScanningKeysUnavailable, match="cannot be reached"):
            verify(keys, body, key.identifier, key.sign(body))
        clock.now += 0.5  # tried again at most once a second: meanwhile, unavailable all the same
        with pytest.raises(ScanningKeysUnavailable):
            verify(keys, body, key.identifier, key.sign(body))
    finally:
        server.start()
    clock.now += 1
    verify(keys, body, key.identifier, key.sign(body))
    # Held and then stale: while the server is down, the key held still verifies what it signed,
    # and an identifier it does not hold is unavailable (the list may hold it now), not refused.
    server.stop()
    try:
        clock.now += 3601
        verify(keys, body, key.identifier, key.sign(body))
        other = SigningKey()
        with pytest.raises(ScanningKeysUnavailable):
            verify(keys, body, other.identifier, other.sign(body))
    finally:
        server.start()


@pytest.mark.parametrize(
    "answer",
    [
        (500, b"upstream exploded"),
        (200, b"<html>maintenance</html>"),
        (200, b'{"public_keys": "none"}'),
        (200, b'{"public_keys": [{"key_identifier": "abc", "key": "not a key"}]}'),
        (200, b"[" * 100_000),
    ],
)
def test_a_key_list_that_is_not_one_is_unavailable(published, answer):
    server, key, keys, _clock = published
    server.answer = answer
    body = report("tks_anything")
    with pytest.raises(ScanningKeysUnavailable, match="Nothing was revoked"):
        verify(keys, body, key.identifier, key.sign(body))


def test_only_p256_keys_count(published):
    server, _key, keys, _clock = published
    p384 = SigningKey(ec.SECP384R1())
    server.publish(p384)
    body = report("tks_anything")
    with pytest.raises(ScanningKeysUnavailable, match="no P-256"):
        verify(keys, body, p384.identifier, p384.sign(body))


# --- what a report revokes and answers ---------------------------------------------------------


def found(*tokens: str, url: str = "https://github.com/octocat/hello/blob/1a2b/app.env") -> list[Finding]:
    return [Finding(token, "tokensmith_personal_access_token", url, "content") for token in tokens]


def test_every_live_token_found_is_revoked_with_where_it_was_found_and_each_finding_labelled(
    db, keys, make_user, make_token
):
    alice, bob = make_user(), make_user()
    live, live_row = make_token(alice, "in a gist")
    bobs, bobs_row = make_token(bob, "ci")
    gone, gone_row = make_token(alice, "revoked already")
    token_lifecycle.revoke_token(db, gone_row.id, alice.id, actor=alice.username)
    expired, expired_row = make_token(alice, "expired", expires_at=utcnow() + timedelta(days=1))
    expired_row.expires_at = utcnow() - timedelta(days=1)
    db.flush()
    unknown = "tks_" + live[4:-6] + "AAAAAA"  # the right shape, a wrong checksum
    findings = found(live, bobs, gone, expired, unknown, "ghp_notours", live)
    verdicts = secret_scanning.revoke_found(db, keys, findings, prefix="tks_", ip="192.0.2.30")
    assert [v.label for v in verdicts] == [
        "true_positive",
        "true_positive",
        "true_positive",  # ours, revoked before: still a real token that was leaked
        "true_positive",
        "false_positive",
        "false_positive",
        "true_positive",
    ]
    assert verdicts[0].token_hash == hashlib.sha256(live.encode()).hexdigest()
    assert {v.token_type for v in verdicts} == {"tokensmith_personal_access_token"}
    for row in (live_row, bobs_row, expired_row):
        db.refresh(row)
    assert live_row.revoked_reason == bobs_row.revoked_reason == "secret_scanning"
    assert expired_row.revoked_at is None  # it opens nothing any more
    events = db.scalars(select(AuditEvent).where(AuditEvent.action == "token.found_by_scanning")).all()
    assert sorted(event.details["name"] for event in events) == ["ci", "in a gist"]  # the duplicate once
    event = next(event for event in events if event.user_id == alice.id)
    assert event.actor == "GitHub secret scanning" and event.ip == "192.0.2.30"
    assert event.details["url"] == "https://github.com/octocat/hello/blob/1a2b/app.env"
    assert event.details["source"] == "content" and event.details["last_used_at"] is None
    from tokensmith.audit import trail

    words = trail.describe(event)
    assert "found in public by GitHub's secret scanning at https://github.com/octocat/hello/blob/1a2b/app.env" in words
    assert trail.needs_attention(event) and not trail.shows_address(event)
    # The same report again: nothing more revoked, the same answer.
    again = secret_scanning.revoke_found(db, keys, findings, prefix="tks_", ip="192.0.2.30")
    assert again == verdicts
    assert len(db.scalars(select(AuditEvent).where(AuditEvent.action == "token.found_by_scanning")).all()) == 2


def test_what_a_finding_says_is_kept_printable_and_bounded(db, keys, make_user, make_token):
    owner = make_user()
    secret, _row = make_token(owner, "odd report")
    [finding] = found(secret, url="https://github.com/a/b\x1b[31m/" + "x" * 5000)
    secret_scanning.revoke_found(db, keys, [finding], prefix="tks_", ip=None)
    event = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "token.found_by_scanning", AuditEvent.user_id == owner.id)
    ).one()
    assert "\x1b" not in event.details["url"] and len(event.details["url"]) == 2048
