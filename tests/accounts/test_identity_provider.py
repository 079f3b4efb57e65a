"""The pieces of the OpenID Connect sign-in that need no provider: the sealed pending
sign-in and the settings. The flow itself is tested against real providers over HTTP
(tests/web/test_oidc_*.py)."""

from __future__ import annotations

import pytest

from tokensmith.accounts.identity_provider import PENDING_SECONDS, PendingSignIn
from tokensmith.config import load_settings
from tokensmith.errors import ConfigurationError, SignInRejected
from tokensmith.store.server_keys import parse_keys

KEYS = parse_keys("1:" + "a" * 40)
PENDING = PendingSignIn(state="s" * 43, nonce="n" * 43, code_verifier="v" * 86, next_path="/tokens", started=1_000_000)


def test_a_pending_sign_in_survives_the_round_trip_through_the_browser():
    sealed = PENDING.seal(KEYS)
    assert PendingSignIn.unseal(KEYS, sealed, now=PENDING.started + 5) == PENDING


@pytest.mark.parametrize(
    "tamper",
    [
        lambda sealed: sealed[:-1] + ("0" if sealed[-1] != "0" else "1"),  # the MAC
        lambda sealed: sealed.replace(".", ".x", 1),  # the payload
        lambda sealed: "7" + sealed[1:],  # an unknown key version
        lambda sealed: "",
        lambda sealed: "garbage",
        lambda sealed: sealed * 200,  # too long to be ours
    ],
)
def test_a_tampered_pending_sign_in_is_refused(tamper):
    with pytest.raises(SignInRejected, match="not started from this browser"):
        PendingSignIn.unseal(KEYS, tamper(PENDING.seal(KEYS)), now=PENDING.started + 5)


def test_a_pending_sign_in_sealed_with_another_key_or_too_old_is_refused():
    sealed = PENDING.seal(parse_keys("1:" + "b" * 40))
    with pytest.raises(SignInRejected):
        PendingSignIn.unseal(KEYS, sealed, now=PENDING.started + 5)
    with pytest.raises(SignInRejected, match="took longer than 10 minutes"):
        PendingSignIn.unseal(KEYS, PENDING.seal(KEYS), now=PENDING.started + PENDING_SECONDS + 1)


def test_a_rotated_key_still_opens_a_sign_in_started_before_the_rotation():
    rotated = parse_keys("2:" + "c" * 40 + ",1:" + "a" * 40)
    assert PendingSignIn.unseal(rotated, PENDING.seal(KEYS), now=PENDING.started) == PENDING


OKTA = {
    "TOKENSMITH_OIDC_ISSUER": "https://acme.okta.com",
    "TOKENSMITH_OIDC_CLIENT_ID": "0oa1",
    "TOKENSMITH_OIDC_CLIENT_SECRET": "client-secret-value",
    "TOKENSMITH_OIDC_PROVIDER_NAME": "Okta",
}


def test_an_identity_provider_is_configured_from_the_environment():
    settings = load_settings({**OKTA, "TOKENSMITH_PUBLIC_URL": "https://tokens.acme.test"})
    provider = settings.identity_provider
    assert (provider.issuer, provider.client_id, provider.name) == ("https://acme.okta.com", "0oa1", "Okta")
    assert provider.discovery_url == "https://acme.okta.com/.well-known/openid-configuration"
    assert settings.oidc_redirect_uri == "https://tokens.acme.test/login/oidc/callback"
    assert "client-secret-value" not in repr(settings)
    assert settings.local_login and load_settings({}).identity_provider is None


def test_an_issuer_with_a_trailing_slash_is_kept_exactly():
    provider = load_settings({**OKTA, "TOKENSMITH_OIDC_ISSUER": "https://acme.auth0.com/"}).identity_provider
    assert provider.issuer == "https://acme.auth0.com/"
    assert provider.discovery_url == "https://acme.auth0.com/.well-known/openid-configuration"


def test_passwords_can_be_turned_off_only_with_a_provider():
    assert not load_settings({**OKTA, "TOKENSMITH_LOCAL_LOGIN": "false"}).local_login
    with pytest.raises(ConfigurationError, match="TOKENSMITH_OIDC_ISSUER must name"):
        load_settings({"TOKENSMITH_LOCAL_LOGIN": "false"})


@pytest.mark.parametrize(
    "changes, variable",
    [
        ({"TOKENSMITH_OIDC_ISSUER": "http://acme.okta.com"}, "TOKENSMITH_OIDC_ISSUER"),  # plain http off loopback
        ({"TOKENSMITH_OIDC_ISSUER": "acme.okta.com"}, "TOKENSMITH_OIDC_ISSUER"),
        ({"TOKENSMITH_OIDC_ISSUER": "https://acme.okta.com?x=1"}, "TOKENSMITH_OIDC_ISSUER"),
        ({"TOKENSMITH_OIDC_CLIENT_ID": ""}, "TOKENSMITH_OIDC_CLIENT_ID"),
        ({"TOKENSMITH_LOCAL_LOGIN": "maybe"}, "TOKENSMITH_LOCAL_LOGIN"),
        ({"TOKENSMITH_SCIM_TOKEN": "short"}, "TOKENSMITH_SCIM_TOKEN"),
    ],
)
def test_bad_identity_provider_settings_are_refused_with_the_variable_named(changes, variable):
    with pytest.raises(ConfigurationError, match=variable):
        load_settings({**OKTA, **changes})
