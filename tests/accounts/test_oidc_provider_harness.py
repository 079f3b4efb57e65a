"""The OpenID Connect provider the sign-in tests stand on: a real one, over real HTTP.

A relying party as Tokensmith is one (Authlib for OAuth 2, joserfc for the ID token) signs in
through node-oidc-provider's development pages without a browser, and signs out again.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client, OAuthError
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.conftest import unavailable
from tests.support.ledger import remember
from tests.support.oidc_provider import (
    OidcProvider,
    OidcProviderUnavailable,
    sign_in_with_forms,
    sign_out_with_forms,
)
from tests.support.ports import free_port

# Nothing listens there: the tests read the redirects and never follow them.
RELYING_PARTY = f"http://127.0.0.1:{free_port()}"
REDIRECT_URI = f"{RELYING_PARTY}/login/oidc/callback"
SIGNED_OUT_URI = f"{RELYING_PARTY}/signed-out"
# A login whose subject is not its name, as with Okta's or Entra ID's opaque ids.
DANA_SUB = "00u1dana2subject3"


@pytest.fixture(scope="module")
def provider(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> OidcProvider:
    idp = OidcProvider(
        tmp_path_factory.mktemp("oidc-provider"),
        redirect_uris=REDIRECT_URI,
        post_logout_redirect_uris=SIGNED_OUT_URI,
        accounts={"dana": {"sub": DANA_SUB, "email": "dana@corp.example.test"}},
    )
    request.addfinalizer(idp.stop)
    try:
        idp.start()
    except OidcProviderUnavailable as error:
        unavailable(str(error))
    return idp


@pytest.fixture
def relying_party(provider: OidcProvider) -> Iterator[OAuth2Client]:
    with OAuth2Client(
        provider.client_id,
        provider.client_secret,
        scope="openid profile email",
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
    ) as client:
        yield client


def verified_claims(provider: OidcProvider, id_token: str, nonce: str) -> dict[str, object]:
    jwks = httpx.get(provider.discovery()["jwks_uri"]).raise_for_status().json()
    token = jwt.decode(id_token, KeySet.import_key_set(jwks))
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": provider.issuer},
        aud={"essential": True, "value": provider.client_id},
        nonce={"essential": True, "value": nonce},
        exp={"essential": True},
    ).validate(token.claims)
    return token.claims


def sign_in(
    provider: OidcProvider, relying_party: OAuth2Client, browser: httpx.Client, login: str
) -> tuple[dict[str, object], str]:
    """A whole sign-in: the ID token's verified claims, and the ID token."""
    discovery = provider.discovery()
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = relying_party.create_authorization_url(
        discovery["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    back = sign_in_with_forms(browser, url, login)
    token = relying_party.fetch_token(
        discovery["token_endpoint"],
        authorization_response=back.headers["location"],
        state=state,
        code_verifier=verifier,
    )
    remember(token["access_token"])
    return verified_claims(provider, remember(token["id_token"]), nonce), token["id_token"]


def test_discovery_advertises_what_the_sign_in_needs(provider: OidcProvider):
    discovery = provider.discovery()

    assert discovery["issuer"] == provider.issuer
    assert discovery["end_session_endpoint"] == f"{provider.issuer}/session/end"
    assert "S256" in discovery["code_challenge_methods_supported"]
    assert discovery["response_types_supported"] == ["code"]


def test_a_code_signs_in_once_with_pkce_and_an_id_token_the_provider_signed(
    provider: OidcProvider, relying_party: OAuth2Client
):
    discovery = provider.discovery()
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = relying_party.create_authorization_url(
        discovery["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )

    with httpx.Client(timeout=10) as browser:
        back = sign_in_with_forms(browser, url, "dana")

    location = back.headers["location"]
    assert back.status_code == 303 and location.startswith(REDIRECT_URI + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [state] and query["iss"] == [provider.issuer]
    remember(query["code"][0])

    token = relying_party.fetch_token(
        discovery["token_endpoint"], authorization_response=location, state=state, code_verifier=verifier
    )
    remember(token["access_token"])
    claims = verified_claims(provider, remember(token["id_token"]), nonce)
    assert claims["sub"] == DANA_SUB and claims["aud"] == provider.client_id
    assert claims["preferred_username"] == "dana" and claims["email"] == "dana@corp.example.test"
    assert claims["email_verified"] is True

    with pytest.raises(OAuthError) as replayed:
        relying_party.fetch_token(
            discovery["token_endpoint"], authorization_response=location, state=state, code_verifier=verifier
        )
    assert replayed.value.error == "invalid_grant"
    assert "grant.error: invalid_grant" in provider.console()


def test_signing_out_asks_for_confirmation_and_ends_the_providers_session(
    provider: OidcProvider, relying_party: OAuth2Client
):
    with httpx.Client(timeout=10) as browser:
        _, id_token = sign_in(provider, relying_party, browser, "erin")
        end_session = (
            provider.discovery()["end_session_endpoint"]
            + "?"
            + urlencode({"id_token_hint": id_token, "post_logout_redirect_uri": SIGNED_OUT_URI, "state": "bye-123"})
        )

        confirmation = browser.get(end_session)
        assert confirmation.status_code == 200
        assert 'id="op.logoutForm"' in confirmation.text and 'name="logout"' in confirmation.text

        signed_out = sign_out_with_forms(browser, end_session)
        assert signed_out.status_code == 303
        assert signed_out.headers["location"] == f"{SIGNED_OUT_URI}?state=bye-123"

        # The provider forgot erin: the next sign-in in this browser asks who it is again.
        claims, _ = sign_in(provider, relying_party, browser, "frank")
        assert claims["sub"] == "frank" and claims["email"] == "frank@example.test"
