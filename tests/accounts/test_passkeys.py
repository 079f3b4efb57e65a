"""Passkeys in the domain: the relying party a public URL gives, and a registration and an
assertion of a WebAuthn authenticator written in Python (tests/support/authenticator.py)."""

from __future__ import annotations

import json

import pytest

from tests.support.authenticator import SoftAuthenticator
from tokensmith.accounts import passkeys
from tokensmith.accounts.passkeys import RelyingParty
from tokensmith.errors import InvalidInput, NotFound, PasskeyRefused


@pytest.mark.parametrize(
    ("public_url", "party"),
    [
        ("http://127.0.0.1:8000", RelyingParty("localhost", "http://localhost:8000")),
        ("http://[::1]:8001", RelyingParty("localhost", "http://localhost:8001")),
        ("http://localhost:8000", RelyingParty("localhost", "http://localhost:8000")),
        ("https://tokens.example.com", RelyingParty("tokens.example.com", "https://tokens.example.com")),
        ("https://tokens.example.com:8443", RelyingParty("tokens.example.com", "https://tokens.example.com:8443")),
        ("http://192.0.2.10:8000", None),
    ],
)
def test_the_relying_party_is_the_public_urls_host_and_localhost_for_loopback(
    public_url: str, party: RelyingParty | None
) -> None:
    assert passkeys.relying_party(public_url) == party
    if party is None:
        assert "browsers refuse them on an address like 192.0.2.10" in passkeys.unavailable_reason(public_url)


PARTY = RelyingParty("localhost", "http://localhost:8000")


def registered(db, make_user):
    user = make_user()
    handle = passkeys.user_handle(db, user.id)
    challenge = passkeys.new_challenge()
    options = json.loads(passkeys.registration_options(PARTY, user, handle, challenge, []))
    assert options["authenticatorSelection"] == {
        "residentKey": "required",
        "requireResidentKey": True,
        "userVerification": "preferred",
    }
    authenticator = SoftAuthenticator(origin=PARTY.origin, rp_id=PARTY.id)
    row = passkeys.add_passkey(
        db, PARTY, user, "  My   key ", json.dumps(authenticator.register(options)), challenge, handle
    )
    return user, authenticator, row


def test_a_passkey_registered_then_used_its_counter_moving_on(db, make_user) -> None:
    user, authenticator, row = registered(db, make_user)
    assert row.name == "My key" and row.user_handle == authenticator.user_handle
    assert passkeys.user_handle(db, user.id) == row.user_handle  # the same for their next passkey
    challenge = passkeys.new_challenge()
    options = json.loads(passkeys.authentication_options(PARTY, challenge, alone=True))
    used = passkeys.verify_assertion(db, PARTY, json.dumps(authenticator.assertion(options)), challenge, alone=True)
    assert used.id == row.id and used.sign_count == 1 and used.last_used_at is not None
    with pytest.raises(PasskeyRefused, match="counter went backwards"):
        passkeys.verify_assertion(db, PARTY, json.dumps(authenticator.assertion(options, counter=1)), challenge)
    with pytest.raises(PasskeyRefused, match="not registered here for this account"):
        passkeys.verify_assertion(
            db, PARTY, json.dumps(authenticator.assertion(options)), challenge, user_id=user.id + 1000
        )


def test_a_registration_for_the_wrong_challenge_or_twice_is_refused(db, make_user) -> None:
    user, authenticator, _row = registered(db, make_user)
    challenge = passkeys.new_challenge()
    options = json.loads(passkeys.registration_options(PARTY, user, authenticator.user_handle, challenge, []))
    again = json.dumps(authenticator.register(options))
    with pytest.raises(PasskeyRefused, match="not for this request"):
        passkeys.add_passkey(db, PARTY, user, "", again, passkeys.new_challenge(), authenticator.user_handle)
    with pytest.raises(PasskeyRefused, match="already registered"):
        passkeys.add_passkey(db, PARTY, user, "", again, challenge, authenticator.user_handle)
    with pytest.raises(InvalidInput, match="at most 100"):
        passkeys.add_passkey(db, PARTY, user, "x" * 101, again, challenge, authenticator.user_handle)


def test_only_its_owner_removes_a_passkey(db, make_user) -> None:
    user, _authenticator, row = registered(db, make_user)
    with pytest.raises(NotFound):
        passkeys.remove_passkey(db, user.id + 1000, row.id)
    passkeys.remove_passkey(db, user.id, row.id)
    assert passkeys.passkeys_of(db, user.id) == []
