"""Browser sessions and CSRF tokens, on both stores."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from tokensmith.accounts import sessions, users
from tokensmith.store.models import BrowserSession


def test_a_session_is_found_by_its_cookie_and_stored_as_a_digest(db, keys, make_user):
    user = make_user()
    secret, row = sessions.start_session(db, keys, user, days=7, ip="127.0.0.1", user_agent="Chromium")
    assert sessions.find_session(db, keys, secret).user_id == user.id
    stored = db.scalars(select(BrowserSession.digest).where(BrowserSession.id == row.id)).one()
    assert secret.encode() not in stored
    assert sessions.find_session(db, keys, secret + "x") is None
    assert sessions.find_session(db, keys, "") is None
    assert sessions.find_session(db, keys, "x" * 5000) is None


def test_sign_out_and_expiry_end_a_session(db, keys, make_user):
    user = make_user()
    secret, row = sessions.start_session(db, keys, user, days=7, ip=None, user_agent=None)
    sessions.end_session(db, keys, secret)
    assert sessions.find_session(db, keys, secret) is None
    secret, row = sessions.start_session(db, keys, user, days=7, ip=None, user_agent=None)
    row.expires_at = row.created_at - timedelta(seconds=1)
    db.flush()
    assert sessions.find_session(db, keys, secret) is None
    assert sessions.purge_expired_sessions(db) == 1


def test_disabling_the_user_ends_their_sessions(db, keys, make_user):
    user = make_user()
    secret, _row = sessions.start_session(db, keys, user, days=7, ip=None, user_agent=None)
    users.disable_user(db, user, actor="tests")
    assert sessions.find_session(db, keys, secret) is None


def test_csrf_tokens_are_bound_to_their_session(keys):
    token = sessions.csrf_token(keys, "session-a")
    assert sessions.csrf_valid(keys, "session-a", token)
    assert not sessions.csrf_valid(keys, "session-b", token)
    assert not sessions.csrf_valid(keys, "session-a", "")
    assert not sessions.csrf_valid(keys, None, token)
    assert not sessions.csrf_valid(keys, "session-a", "é" * 64)
