"""Application tokens against a real store, SQLite and PostgreSQL: derived from a personal token,
never wider than it, one level deep, revoked with it whatever revokes it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.support.ledger import remember
from tokensmith.audit import trail
from tokensmith.clock import utcnow
from tokensmith.errors import Conflict, InsufficientScope, InvalidInput, NotPermitted, TokenRevoked
from tokensmith.projects import catalog
from tokensmith.store.models import AuditEvent
from tokensmith.tokens import application_tokens
from tokensmith.tokens import check as token_check
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import listing as token_listing
from tokensmith.tokens.application_tokens import Application

PREFIX = "tks_"
CLI = Application("nuxeo-cli", "1", "AMIREAD")


def derive(db, keys, parent, asked=CLI, **kwargs):
    secret, row = application_tokens.derive_token(
        db, keys, parent.id, parent.user_id, asked, prefix=PREFIX, actor="tests", ip="192.0.2.1", **kwargs
    )
    return remember(secret), row


def verify(db, keys, secret):
    return token_check.verify_token(db, keys, secret, prefix=PREFIX)


@pytest.fixture
def alice(make_user):
    return make_user()


def test_an_application_token_has_its_parents_limits_and_expiry_and_a_name_saying_what_it_is(
    db, keys, alice, make_token, tmp_path
):
    catalog.create_project(db, tmp_path, "acme", "com.acme", alice.id, actor="tests")
    expiry = utcnow() + timedelta(days=30)
    _secret, parent = make_token(
        alice,
        "Laptop",
        scopes=["api:read", "git:read"],
        projects=["acme"],
        allowed_ips=["192.0.2.0/24"],
        expires_at=expiry,
    )
    secret, row = derive(db, keys, parent)
    checked = verify(db, keys, secret)
    assert (checked.scopes, checked.projects, checked.allowed_ips, checked.expires_at) == (
        ["api:read", "git:read"],
        ["acme"],
        ["192.0.2.0/24"],
        expiry,
    )
    assert (row.name, row.parent_id, checked.parent_id) == ("nuxeo-cli on device 1", parent.id, parent.id)
    event = db.scalars(select(AuditEvent).where(AuditEvent.action == "token.derived")).one()
    assert trail.describe(event).startswith(
        "Application token “nuxeo-cli on device 1” made from your token “Laptop” "
        "for nuxeo-cli (scopes: api:read, git:read; projects: acme;"
    )
    assert event.details["permission"] == "AMIREAD" and event.details["device"] == "1"


def test_each_request_makes_a_new_one_numbered_and_listed_under_its_parent(db, keys, alice, make_token):
    _secret, _older = make_token(alice, "Older")
    _secret, parent = make_token(alice, "Laptop")
    made = [derive(db, keys, parent)[1] for _ in range(3)]
    assert [row.name for row in made] == [
        "nuxeo-cli on device 1",
        "nuxeo-cli on device 1 (2)",
        "nuxeo-cli on device 1 (3)",
    ]
    listed = [row.name for row in token_listing.list_tokens(db, alice.id)]
    assert listed == [
        "Laptop",
        "nuxeo-cli on device 1 (3)",
        "nuxeo-cli on device 1 (2)",
        "nuxeo-cli on device 1",
        "Older",
    ]


def test_permission_naming_scopes_narrows_and_cannot_widen(db, keys, alice, make_token):
    _secret, parent = make_token(alice, "Laptop", scopes=["api:read", "git:write"])
    secret, _row = derive(db, keys, parent, Application("ci", "runner-7", "git:read, api:read"))
    assert verify(db, keys, secret).scopes == ["api:read", "git:read"]
    with pytest.raises(InsufficientScope) as refused:
        derive(db, keys, parent, Application("ci", "runner-7", "git:read maven:read"))
    assert (refused.value.needed, refused.value.held) == ("maven:read", ("api:read", "git:read", "git:write"))
    with pytest.raises(InvalidInput, match="Unknown scope 'git:everything'"):
        derive(db, keys, parent, Application("ci", "runner-7", "git:everything"))
    secret, _row = derive(db, keys, parent, Application("ci", "runner-7", None))
    assert verify(db, keys, secret).scopes == ["api:read", "git:read", "git:write"]


def test_an_application_token_can_neither_derive_another_nor_be_rotated(db, keys, alice, make_token):
    _secret, parent = make_token(alice, "Laptop")
    _secret, child = derive(db, keys, parent)
    with pytest.raises(NotPermitted, match="cannot make another"):
        derive(db, keys, child)
    with pytest.raises(NotPermitted, match="cannot be rotated"):
        token_lifecycle.rotate_token(
            db, keys, child.id, alice.id, prefix=PREFIX, actor="tests", presented_token_id=child.id
        )


@pytest.mark.parametrize("how", ["owner", "admin", "leak report", "rotation", "account disabled"])
def test_whatever_revokes_the_parent_revokes_its_application_tokens(db, keys, alice, make_token, how):
    parent_secret, parent = make_token(alice, "Laptop")
    children = [derive(db, keys, parent) for _ in range(2)]
    _secret, other = make_token(alice, "Other")
    _cousin_secret, cousin = derive(db, keys, other)
    if how == "owner":
        token_lifecycle.revoke_token(db, parent.id, alice.id, actor=alice.username)
    elif how == "admin":
        token_lifecycle.revoke_any_token(db, parent.id, actor="root")
    elif how == "leak report":
        assert token_lifecycle.revoke_reported_tokens(db, keys, [parent_secret], prefix=PREFIX, ip=None) == 1
    elif how == "rotation":
        token_lifecycle.rotate_token(
            db, keys, parent.id, alice.id, prefix=PREFIX, actor="tests", presented_token_id=parent.id
        )
    else:
        token_lifecycle.revoke_all_tokens(db, alice.id, actor="root", reason="account_disabled")
    for secret, row in children:
        with pytest.raises(TokenRevoked) as refused:
            verify(db, keys, secret)
        if how != "account disabled":  # (there the child may come first, revoked for that reason)
            assert "(with the personal token it was made from)" in refused.value.message
            assert row.revoked_reason == "parent_revoked"
    db.refresh(cousin)
    assert (cousin.revoked_at is None) == (how != "account disabled")  # another parent's child: untouched


def test_revoking_the_parent_is_one_event_each_and_no_mail_of_the_childrens_own(db, keys, alice, make_token):
    _secret, parent = make_token(alice, "Laptop")
    _secret, child = derive(db, keys, parent)
    token_lifecycle.revoke_token(db, parent.id, alice.id, actor=alice.username)
    events = db.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == "token.revoked", AuditEvent.user_id == alice.id)
        .order_by(AuditEvent.id)
    ).all()
    assert [(event.details["token_id"], event.details["reason"]) for event in events] == [
        (parent.id, "owner"),
        (child.id, "parent_revoked"),
    ]
    assert trail.describe(events[1]) == "Token “nuxeo-cli on device 1” revoked with the token it was made from"


def test_a_parent_revoked_before_the_derivation_holds_it_is_refused(db, keys, alice, make_token):
    _secret, parent = make_token(alice, "Laptop")
    token_lifecycle.revoke_token(db, parent.id, alice.id, actor=alice.username)
    with pytest.raises(TokenRevoked):
        derive(db, keys, parent)


def test_a_parent_has_at_most_so_many_live_application_tokens(db, keys, alice, make_token, monkeypatch):
    monkeypatch.setattr(application_tokens, "MAX_PER_PARENT", 2)
    _secret, parent = make_token(alice, "Laptop")
    first = derive(db, keys, parent)[1]
    derive(db, keys, parent)
    with pytest.raises(Conflict, match="has 2 live application tokens already"):
        derive(db, keys, parent)
    application_tokens.sign_out(db, first.id, alice.id, actor="tests", ip=None)
    derive(db, keys, parent)


def test_the_deployments_longest_lifetime_bounds_a_parent_that_never_expires(db, keys, alice, make_token):
    _secret, parent = make_token(alice, "Laptop")
    secret, _row = derive(db, keys, parent, max_lifetime_days=7)
    expiry = verify(db, keys, secret).expires_at
    assert timedelta(days=6) < expiry - utcnow() <= timedelta(days=7)


def test_signing_out_revokes_an_application_token_and_refuses_a_personal_one(db, keys, alice, make_token):
    parent_secret, parent = make_token(alice, "Laptop")
    secret, child = derive(db, keys, parent)
    with pytest.raises(NotPermitted, match="this is a personal token"):
        application_tokens.sign_out(db, parent.id, alice.id, actor="tests", ip=None)
    application_tokens.sign_out(db, child.id, alice.id, actor="tests", ip=None)
    with pytest.raises(TokenRevoked, match="by the application that held it, which signed out"):
        verify(db, keys, secret)
    assert verify(db, keys, parent_secret).id == parent.id


@pytest.mark.parametrize(
    "application, device, permission, words",
    [
        (None, "1", None, "applicationName is missing"),
        ("nuxeo-cli", "  ", None, "deviceId is missing"),
        ("n" * 51, "1", None, "applicationName has at most 50 characters; this one has 51"),
        ("nuxeo-cli", "d" * 10_000, None, "deviceId has at most 100 characters; this one has 10,000"),
        ("nuxeo\x1b[31m-cli", "1", None, "applicationName cannot contain control"),
        ("nuxeo-cli", "1\u202e", None, "deviceId cannot contain control"),
        ("nuxeo-cli", "1", "p" * 201, "permission has at most 200 characters"),
    ],
)
def test_what_an_application_asks_is_checked_before_anything_else(application, device, permission, words):
    with pytest.raises(InvalidInput, match=words.replace("(", r"\(")):
        Application.of(application, device, permission)


def test_a_long_device_id_is_shortened_in_the_name_only():
    asked = Application.of("Nuxeo Drive", "f" * 100, None)
    assert len(asked.name) <= token_lifecycle.MAX_NAME_LENGTH - 5 and asked.name.endswith("f…")
    assert asked.device == "f" * 100
