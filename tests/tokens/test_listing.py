"""Listing tokens against a real store, SQLite and PostgreSQL: the administrators' inventory."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tokensmith.audit import trail
from tokensmith.clock import utcnow
from tokensmith.errors import (
    NotFound,
)
from tokensmith.store.models import AuditEvent
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import listing as token_listing


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
