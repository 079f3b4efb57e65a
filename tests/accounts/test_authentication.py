"""Credentials to identities under the password policy, on both stores."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from tokensmith.accounts.authentication import Authenticator
from tokensmith.audit import trail
from tokensmith.config import PasswordPolicy, Settings
from tokensmith.errors import (
    CredentialMalformed,
    PasswordIncorrect,
    PasswordRefused,
    TokenNotForSignIn,
    TokenUnknown,
)
from tokensmith.identity import BasicCredentials, BearerCredentials
from tokensmith.metrics import AUTHENTICATIONS

PASSWORD = "a long enough password"


def authenticator(keys, policy=PasswordPolicy.DENY) -> Authenticator:
    return Authenticator(Settings(password_policy=policy, public_url="http://127.0.0.1:9"), keys)


def counted(method: str, outcome: str) -> float:
    return AUTHENTICATIONS.labels(method, outcome)._value.get()


def test_basic_and_bearer_tokens_identify_the_owner_and_the_token(db, keys, make_user, make_token):
    alice = make_user("alice", password=PASSWORD)
    secret, row = make_token(alice, "CI Chain")
    before = counted("token", "ok")
    for credentials in (
        BasicCredentials("alice", secret),
        BasicCredentials("ALICE", secret),
        BearerCredentials(secret),
    ):
        identity = authenticator(keys).authenticate(db, credentials, ip="127.0.0.1", agent="curl/8")
        assert (identity.user.id, identity.method, identity.token.id) == (alice.id, "token", row.id)
    assert counted("token", "ok") == before + 3
    db.refresh(row)
    assert row.last_used_agent == "curl/8"


def test_a_token_under_someone_elses_username_is_refused_like_an_unknown_one(db, keys, make_user, make_token):
    make_user("alice")
    bob = make_user("bob")
    secret, _row = make_token(bob)
    with pytest.raises(TokenUnknown) as refused:
        authenticator(keys).authenticate(db, BasicCredentials("alice", secret), ip=None, agent=None)
    assert refused.value.reason == "wrong_user"
    assert "Unknown or mistyped token" in refused.value.full_message
    assert "http://127.0.0.1:9/tokens" in refused.value.full_message


def test_deny_refuses_a_password_without_checking_it(db, keys, make_user, store_engine):
    make_user("alice", password=PASSWORD)
    db.flush()
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(store_engine, "before_cursor_execute", listener)
    try:
        for username, password in (("alice", PASSWORD), ("alice", "wrong one entirely"), ("nobody", "x")):
            with pytest.raises(PasswordRefused) as refused:
                authenticator(keys).authenticate(db, BasicCredentials(username, password), ip=None, agent=None)
            assert "Passwords are not accepted here" in refused.value.full_message
            assert "http://127.0.0.1:9/tokens" in refused.value.full_message
    finally:
        event.remove(store_engine, "before_cursor_execute", listener)
    assert statements == []  # the same answer for every username: nothing to learn


def test_warn_accepts_the_password_with_a_warning_and_audits_it(db, keys, make_user):
    alice = make_user("alice", password=PASSWORD)
    identity = authenticator(keys, PasswordPolicy.WARN).authenticate(
        db, BasicCredentials("alice", PASSWORD), ip="127.0.0.1", agent="Apache-Maven/3.8.7"
    )
    assert identity.method == "password" and identity.token is None
    assert "deprecated" in identity.warning and "/tokens" in identity.warning
    events = [e for e in trail.events_for_user(db, alice.id) if e.action == "auth.password_used"]
    assert events[0].details["agent"] == "Apache-Maven/3.8.7" and events[0].ip == "127.0.0.1"
    with pytest.raises(PasswordIncorrect):
        authenticator(keys, PasswordPolicy.WARN).authenticate(
            db, BasicCredentials("alice", "not the password"), ip=None, agent=None
        )


def test_bearer_must_be_a_token(db, keys):
    with pytest.raises(CredentialMalformed, match="Bearer"):
        authenticator(keys).authenticate(db, BearerCredentials("a password"), ip=None, agent=None)


def test_the_sign_in_form_takes_a_password_never_a_token(db, keys, make_user, make_token):
    alice = make_user("alice", password=PASSWORD)
    secret, _row = make_token(alice)
    assert authenticator(keys).sign_in(db, "alice", PASSWORD, ip="127.0.0.1").id == alice.id
    before = counted("sign_in", "token_in_browser")
    with pytest.raises(TokenNotForSignIn, match="cannot sign in"):
        authenticator(keys).sign_in(db, "alice", secret, ip="127.0.0.1")
    assert counted("sign_in", "token_in_browser") == before + 1


def test_password_guessing_on_the_api_is_throttled_under_warn(db, keys, make_user):
    from tokensmith.accounts.throttle import SignInThrottle
    from tokensmith.errors import TooManyAttempts

    make_user("alice", password=PASSWORD)
    checker = Authenticator(Settings(password_policy=PasswordPolicy.WARN), keys, SignInThrottle(keys, per_account=2))
    for _ in range(2):
        with pytest.raises(PasswordIncorrect):
            checker.authenticate(db, BasicCredentials("alice", "a wrong guess!"), ip="192.0.2.1", agent=None)
    with pytest.raises(TooManyAttempts):
        checker.authenticate(db, BasicCredentials("alice", PASSWORD), ip="192.0.2.1", agent=None)
    assert counted("password", "throttled") >= 1
