"""A token's limits: choosing them (bad input creates nothing), enforcing them, showing them.

The same rules over real HTTP and real git: tests/web/test_token_limits.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tokensmith.audit import trail
from tokensmith.clock import utcnow
from tokensmith.errors import AddressNotAllowed, InsufficientScope, InvalidInput, NotFound
from tokensmith.projects import catalog
from tokensmith.scopes import ALL_SCOPES
from tokensmith.store.models import AuditEvent, PersonalToken
from tokensmith.tokens import check as token_check
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import limits as token_limits
from tokensmith.tokens import listing as token_listing
from tokensmith.tokens.limits import Need


def test_scopes_are_known_non_empty_and_bring_what_they_imply():
    assert token_limits.validate_scopes(["maven:read", " api:read "]) == ("api:read", "maven:read")
    assert token_limits.validate_scopes(["git:write"]) == ("git:read", "git:write")
    assert token_limits.validate_scopes(ALL_SCOPES) == ALL_SCOPES
    with pytest.raises(InvalidInput, match="Unknown scope 'git'"):
        token_limits.validate_scopes(["git"])
    with pytest.raises(InvalidInput, match="Unknown scope 'admin'"):
        token_limits.validate_scopes(["api:read", "admin"])
    for empty in ([], [""], ["  "]):
        with pytest.raises(InvalidInput, match="Choose at least one scope"):
            token_limits.validate_scopes(empty)


def test_address_blocks_are_checked_and_written_in_their_normal_form():
    assert token_limits.validate_allowed_ips(None) is None
    assert token_limits.validate_allowed_ips(["203.0.113.0/24", "198.51.100.7", "2001:DB8::/32", "203.0.113.0/24"]) == (
        "203.0.113.0/24",
        "198.51.100.7/32",
        "2001:db8::/32",
    )
    with pytest.raises(InvalidInput, match=r"did you mean 10\.0\.0\.0/8\?"):
        token_limits.validate_allowed_ips(["10.0.0.1/8"])
    for bad in ("10.0.0.0/33", "300.1.2.3", "example.com", "10.0.0.0/8/8", "::g"):
        with pytest.raises(InvalidInput, match="is not an address or a CIDR block"):
            token_limits.validate_allowed_ips([bad])
    with pytest.raises(InvalidInput, match="at least one address block"):
        token_limits.validate_allowed_ips([" "])
    with pytest.raises(InvalidInput, match="at most 50"):
        token_limits.validate_allowed_ips([f"10.0.{n}.0/24" for n in range(51)])


def test_an_address_is_judged_against_the_blocks():
    blocks = ["203.0.113.0/24", "2001:db8::/32"]
    assert token_limits.address_allowed(blocks, "203.0.113.200")
    assert token_limits.address_allowed(blocks, "::ffff:203.0.113.5")  # IPv4 on a dual-stack socket
    assert token_limits.address_allowed(blocks, "2001:db8:ffff::1")
    for elsewhere in ("203.0.114.1", "2001:db9::1", None, "", "not an address"):
        assert not token_limits.address_allowed(blocks, elsewhere)


def test_enforcement_refuses_the_address_first_then_the_scope_then_the_project():
    scopes, listed, blocks = ("git:read",), ("acme",), ("203.0.113.0/24",)
    with pytest.raises(AddressNotAllowed) as refused:
        token_limits.enforce(scopes, listed, blocks, Need("api:write", "other"), "198.51.100.1")
    assert refused.value.address == "198.51.100.1" and "198.51.100.1" in refused.value.message
    with pytest.raises(InsufficientScope) as refused:
        token_limits.enforce(scopes, listed, blocks, Need("api:write", "other"), "203.0.113.1")
    assert (refused.value.needed, refused.value.held) == ("api:write", ("git:read",))
    with pytest.raises(NotFound, match="There is no project 'other', or you are not a member of it"):
        token_limits.enforce(scopes, listed, blocks, Need("git:read", "other"), "203.0.113.1")
    token_limits.enforce(scopes, listed, blocks, Need("git:read", "acme"), "203.0.113.1")
    token_limits.enforce(scopes, None, None, Need(None, "anything"), None)  # no limits: anything, from anywhere


def test_the_lifetime_is_held_to_the_servers_maximum():
    now = utcnow()
    token_limits.check_lifetime(None, now, None)
    token_limits.check_lifetime(now + timedelta(days=30), now, 30)
    with pytest.raises(InvalidInput, match="expire within 30 days"):
        token_limits.check_lifetime(None, now, 30)
    with pytest.raises(InvalidInput, match="expire within 30 days"):
        token_limits.check_lifetime(now + timedelta(days=31), now, 30)


@pytest.fixture
def member(db, make_user, tmp_path):
    user = make_user()
    project = catalog.create_project(db, tmp_path, f"lim-{user.id}", "com.acme", user.id, actor="tests")
    return user, project.id


@pytest.mark.parametrize(
    "limits, words",
    [
        ({"scopes": ["api:read", "sudo"]}, "Unknown scope 'sudo'"),
        ({"scopes": []}, "Choose at least one scope"),
        ({"allowed_ips": ["10.0.0.0/99"]}, "is not an address or a CIDR block"),
        ({"projects": ["somebody-elses"]}, "You are not a member of 'somebody-elses'"),
        ({"projects": []}, "Choose at least one project"),
        ({"max_lifetime_days": 30}, "expire within 30 days"),
        ({"max_lifetime_days": 30, "expires_at": utcnow() + timedelta(days=45)}, "expire within 30 days"),
    ],
    ids=[
        "unknown-scope",
        "no-scope",
        "bad-cidr",
        "unreachable-project",
        "no-project",
        "no-expiry-under-max",
        "beyond-max",
    ],
)
def test_bad_limits_create_nothing(db, keys, member, limits, words):
    user, _project = member
    before = db.scalar(select(func.count()).select_from(PersonalToken))
    events = db.scalar(select(func.count()).select_from(AuditEvent))
    with pytest.raises(InvalidInput, match=words):
        token_lifecycle.create_token(db, keys, user.id, "narrow", prefix="tks_", actor="tests", **limits)
    assert db.scalar(select(func.count()).select_from(PersonalToken)) == before
    assert db.scalar(select(func.count()).select_from(AuditEvent)) == events


def test_the_limits_are_stored_read_back_by_the_check_and_audited(db, keys, member, make_token):
    user, project = member
    secret, _row = make_token(
        user, "narrow", scopes=["git:write", "maven:read"], projects=[project], allowed_ips=["2001:db8::/32"]
    )
    found = token_check.verify_token(db, keys, secret, prefix="tks_")
    assert (found.scopes, found.projects, found.allowed_ips) == (
        ["git:read", "git:write", "maven:read"],
        [project],
        ["2001:db8::/32"],
    )
    created = next(e for e in trail.events_for_user(db, user.id) if e.action == "token.created")
    assert trail.describe(created) == (
        f"Token “narrow” created (scopes: git:read, git:write, maven:read; projects: {project}; from: 2001:db8::/32)"
    )


def test_inactive_tokens_are_those_revoked_in_the_last_30_days_and_the_expired(db, keys, make_user, make_token):
    user = make_user()
    _s, recent = make_token(user, "recent")
    _s, old = make_token(user, "old")
    _s, live = make_token(user, "live")
    _s, expired = make_token(user, "expired", expires_at=utcnow() + timedelta(days=1))
    token_lifecycle.revoke_token(db, recent.id, user.id, actor="tests")
    token_lifecycle.revoke_token(db, old.id, user.id, actor="tests")
    old.revoked_at = utcnow() - timedelta(days=31)
    expired.expires_at = utcnow() - timedelta(hours=1)
    db.flush()
    assert [row.name for row in token_listing.inactive_tokens(db, user.id)] == ["recent", "expired"]
    assert token_listing.find_token(db, old.id, user.id) is old
    assert token_listing.find_token(db, live.id, user.id + 1000) is None


def test_a_leak_notice_says_where_the_owner_last_used_the_token_not_where_the_reporter_was(
    db, keys, make_user, make_token
):
    user = make_user()
    secret, _row = make_token(user, "leaky")
    used = token_check.verify_token(db, keys, secret, prefix="tks_")
    token_check.record_use(db, used, ip="192.0.2.44", agent="git/2.47.0")
    db.expire_all()  # the use was written by its own statement, as the server's writer does
    token_lifecycle.revoke_reported_tokens(db, keys, [secret], prefix="tks_", ip="198.51.100.66")
    event = next(e for e in trail.events_for_user(db, user.id) if e.action == "token.leak_reported")
    words = trail.describe(event)
    assert "you last used it on" in words and "from 192.0.2.44 by git/2.47.0" in words
    assert "198.51.100.66" not in words and not trail.shows_address(event)
    assert event.ip == "198.51.100.66"  # kept for administrators
    _s, _never = make_token(user, "never used")
    token_lifecycle.revoke_reported_tokens(db, keys, [_s], prefix="tks_", ip="198.51.100.66")
    assert trail.describe(trail.events_for_user(db, user.id)[0]).endswith("it had never been used")
