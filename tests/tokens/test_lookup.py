"""Whose is this token: what a pasted text holds, and what each value is, on both stores. (The
shell's command: tests/cli/test_admin_tokens.py; the inventory's form: tests/web/test_security_log.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tokensmith.clock import utcnow
from tokensmith.errors import InvalidInput
from tokensmith.store.models import AuditEvent
from tokensmith.tokens import check as token_check
from tokensmith.tokens import format as token_format
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import lookup as token_lookup


def test_a_pasted_text_gives_every_token_in_it_or_its_lines(keys):
    one, two = token_format.generate("tks_"), token_format.generate("tks_")
    text = f"\n  {one}  \nexport TOKEN={two} # from the CI log\nhunter2\n\n{one}\n"
    assert token_lookup.values_in(text, "tks_") == [one, two, "hunter2", one]
    with pytest.raises(InvalidInput, match="No token given"):
        token_lookup.values_in(" \n\n", "tks_")
    with pytest.raises(InvalidInput, match="At most 1,000"):
        token_lookup.values_in("\n".join(["x"] * 1001), "tks_")


def test_each_value_says_whose_token_it_is_and_in_what_state(db, keys, make_user, make_token):
    alice, bob = make_user(), make_user()
    live, live_row = make_token(alice, "laptop", scopes=["git:read"], allowed_ips=["10.0.0.0/8"])
    token_check.record_use(db, token_check.verify_token(db, keys, live, prefix="tks_"), ip="10.1.2.3", agent="git/2")
    gone, gone_row = make_token(bob, "old ci")
    token_lifecycle.revoke_token(db, gone_row.id, bob.id, actor=bob.username)
    ended, ended_row = make_token(bob, "ended", expires_at=utcnow() + timedelta(days=1))
    ended_row.expires_at = utcnow() - timedelta(hours=1)
    db.flush()
    stranger = token_format.generate("tks_")
    typo = live[:-1] + ("A" if live[-1] != "A" else "B")
    found = token_lookup.look_up(db, keys, [live, gone, ended, stranger, typo, "hunter2"], prefix="tks_")
    assert [entry.position for entry in found] == [1, 2, 3, 4, 5, 6]
    assert [entry.token.name if entry.token else None for entry in found] == [
        "laptop",
        "old ci",
        "ended",
        None,
        None,
        None,
    ]
    assert found[0].state() == "live" and found[0].token.owner.username == alice.username
    assert [address.ip for address in found[0].addresses] == ["10.1.2.3"]
    assert found[1].state().startswith("revoked on ") and found[1].state().endswith(" by you")
    assert found[2].state().startswith("expired on ")
    assert "no token here has this value" in found[3].state()
    assert "checksum does not match" in found[4].state()
    assert "not a Tokensmith token" in found[5].state() and found[5].hint == "—"
    assert found[0].hint == live_row.hint and found[3].hint == token_format.hint(stranger, "tks_")
    assert live_row.revoked_at is None  # looking is not revoking


def test_with_revoke_every_live_token_found_is_revoked_by_the_administrator_once(db, keys, make_user, make_token):
    owner = make_user()
    live, row = make_token(owner, "pasted in a chat")
    gone, gone_row = make_token(owner, "revoked before")
    token_lifecycle.revoke_token(db, gone_row.id, owner.id, actor=owner.username)
    found = token_lookup.look_up(db, keys, [live, gone, live], prefix="tks_", revoke_by="admin (shell)")
    assert [entry.revoked_now for entry in found] == [True, False, True]
    assert found[0].state().startswith("revoked now on ") and found[0].state().endswith("by an administrator")
    db.refresh(row)
    assert row.revoked_reason == "admin"
    events = db.scalars(
        select(AuditEvent).where(AuditEvent.user_id == owner.id, AuditEvent.action == "token.revoked")
    ).all()
    assert [(event.actor, event.details["name"]) for event in events if event.details["reason"] == "admin"] == [
        ("admin (shell)", "pasted in a chat")
    ]
