"""Whose account a person coming from the identity provider gets (on SQLite and PostgreSQL)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from tokensmith.accounts import provider_accounts, users
from tokensmith.accounts.identity_provider import VerifiedIdentity
from tokensmith.audit import trail
from tokensmith.errors import SignInRejected, TokenRevoked
from tokensmith.store.models import AuditEvent
from tokensmith.tokens import check as token_check
from tokensmith.tokens import lifecycle as token_lifecycle

ISSUER = "https://idp.example.test"


def person(sub: str = "00u1", *, issuer: str = ISSUER, **claims: str) -> VerifiedIdentity:
    defaults = {"preferred_username": "jane", "email": "jane@example.test", "name": "Jane Doe"}
    return VerifiedIdentity(
        issuer=issuer, subject=sub, claims={**defaults, **claims, "sub": sub}, id_token="not-used-here"
    )


def sign_in(db, identity: VerifiedIdentity):
    return provider_accounts.account_for(db, identity, provider_name="Okta")


def test_a_first_sign_in_creates_the_account_from_the_claims(db):
    user = sign_in(db, person())
    assert (user.username, user.email, user.display_name, user.origin) == (
        "jane",
        "jane@example.test",
        "Jane Doe",
        "oidc",
    )
    assert (user.oidc_issuer, user.oidc_subject) == (ISSUER, "00u1")
    assert user.password_hash is None


def test_later_sign_ins_find_the_person_by_subject_whatever_their_name_and_email_became(db):
    first = sign_in(db, person())
    again = sign_in(db, person(preferred_username="jane.renamed", email="jane.new@example.test", name="Jane R."))
    assert again.id == first.id
    assert again.username == "jane"  # the username is what tokens and URLs use: it stays
    assert (again.email, again.display_name) == ("jane.new@example.test", "Jane R.")


def test_an_email_alone_never_opens_an_account(db):
    sign_in(db, person())
    with pytest.raises(SignInRejected, match=re.escape("email address jane@example.test already exists")) as refusal:
        sign_in(db, person("someone-else", preferred_username="jane2"))
    assert "tokensmith users link USERNAME --subject someone-else" in refusal.value.message


def test_the_same_subject_at_another_issuer_is_another_person(db):
    sign_in(db, person())
    with pytest.raises(SignInRejected, match="account named 'jane' already exists"):
        sign_in(db, person(issuer="https://other-idp.example.test"))


def test_a_local_account_with_the_same_name_is_not_merged_but_the_person_is_told_what_to_do(db, make_user):
    local = make_user("dave")
    with pytest.raises(SignInRejected) as refusal:
        sign_in(db, person("00u9", preferred_username="Dave", email="dave.idp@example.test"))
    message = refusal.value.message
    assert "An account named 'dave' already exists" in message and "not merged" in message
    assert "tokensmith users link dave --subject 00u9" in message
    assert local.oidc_subject is None

    provider_accounts.link(db, local, issuer=ISSUER, subject="00u9", actor="tests")
    assert sign_in(db, person("00u9", preferred_username="Dave", email="dave.idp@example.test")).id == local.id


def test_an_identity_links_to_one_account_only(db, make_user):
    jane = sign_in(db, person())
    other = make_user("other")
    with pytest.raises(Exception, match="already linked to the account 'jane'"):
        provider_accounts.link(db, other, issuer=ISSUER, subject="00u1", actor="tests")
    assert jane.oidc_subject == "00u1" and other.oidc_subject is None


def test_an_account_provisioned_over_scim_is_taken_over_at_its_first_sign_in(db):
    provisioned = users.create_user(db, "jane", "jane@example.test", origin="scim", actor="scim")
    assert sign_in(db, person()).id == provisioned.id
    assert provisioned.oidc_subject == "00u1"


def test_an_email_shaped_login_becomes_the_username_and_a_missing_one_falls_back_to_the_email(db):
    assert (
        sign_in(db, person("a", preferred_username="ann@corp.example.test", email="ann@corp.example.test")).username
        == "ann@corp.example.test"
    )
    claims = person("b", email="bob@corp.example.test")
    del claims.claims["preferred_username"]
    assert sign_in(db, claims).username == "bob@corp.example.test"


@pytest.mark.parametrize(
    "claims, words",
    [
        ({"email": ""}, "did not share a valid email address"),
        ({"email": "not an email"}, "did not share a valid email address"),
        ({"preferred_username": "Jane Doe (Sales)", "email": "x" * 70 + "@example.test"}, "did not send a login name"),
    ],
)
def test_unusable_claims_are_refused_with_the_reason(db, claims, words):
    with pytest.raises(SignInRejected, match=words):
        sign_in(db, person(**claims))
    assert users.find_user(db, "jane") is None


def test_a_disabled_account_cannot_sign_in_and_its_tokens_stay_dead(db, keys):
    user = sign_in(db, person())
    secret, _row = token_lifecycle.create_token(db, keys, user.id, "laptop", prefix="tks_", actor="tests")
    users.disable_user(db, user, actor="tests")
    with pytest.raises(SignInRejected, match="'jane' is disabled"):
        sign_in(db, person())
    users.enable_user(db, user, actor="tests")
    assert sign_in(db, person()).id == user.id
    with pytest.raises(TokenRevoked):
        token_check.verify_token(db.connection(), keys, secret, prefix="tks_")


def test_what_the_provider_did_reads_as_words_on_my_tokens(db):
    user = sign_in(db, person())
    users.disable_user(db, user, actor="scim")
    users.enable_user(db, user, actor="scim")
    db.flush()
    events = db.scalars(select(AuditEvent).where(AuditEvent.user_id == user.id).order_by(AuditEvent.id)).all()
    described = [trail.describe(event) for event in events]
    assert described == [
        "Account created",
        "Account linked to your identity at the identity provider",
        "Account disabled",
        "Account enabled again (tokens revoked meanwhile stay revoked)",
    ]
