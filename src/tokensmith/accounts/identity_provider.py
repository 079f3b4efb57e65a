"""Signing in through an OpenID Connect identity provider (Okta, Keycloak, Entra ID, ...).

Authorization Code flow with PKCE (S256), ``state`` and ``nonce``. The provider's endpoints
come from its discovery document; the ID token is checked against its JWKS: signature,
``iss``, ``aud``, ``exp``, ``iat`` and ``nonce``. Authlib speaks OAuth 2 and checks the claims,
joserfc checks the signature.

The flow's secrets (state, nonce, PKCE verifier) live in a short-lived cookie signed with the
server's key, bound to the browser that started the sign-in; nothing here is logged, and an
error never carries a code, a token or the client secret.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx2
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from tokensmith.config import IdentityProviderSettings
from tokensmith.errors import IdentityProviderUnavailable, SignInRejected
from tokensmith.store.server_keys import ServerKeys

log = logging.getLogger("tokensmith.oidc")

SCOPES = "openid profile email"
PENDING_PURPOSE = "oidc-sign-in"
PENDING_SECONDS = 600  # time a person has at the provider's login page
METADATA_SECONDS = 3600  # discovery and keys are fetched again after this
CLOCK_LEEWAY = 60
HTTP_TIMEOUT = httpx2.Timeout(10.0)
REQUIRED_METADATA = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


@dataclass(frozen=True)
class ProviderMetadata:
    """What the discovery document says, the parts we use."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    end_session_endpoint: str | None
    signing_algorithms: tuple[str, ...]


@dataclass(frozen=True)
class PendingSignIn:
    """A sign-in started in this browser and not finished yet."""

    state: str
    nonce: str
    code_verifier: str
    next_path: str
    started: int  # epoch seconds
    # A re-authentication (creating a token needs a recent sign-in): the provider is asked to
    # have authenticated the person within this many seconds, and its auth_time is checked.
    max_age: int | None = None

    def seal(self, keys: ServerKeys) -> str:
        """The cookie value: the fields, and their MAC under the server's key."""
        payload = (
            base64.urlsafe_b64encode(
                json.dumps(
                    [self.state, self.nonce, self.code_verifier, self.next_path, self.started, self.max_age]
                ).encode()
            )
            .decode()
            .rstrip("=")
        )
        mac = keys.digest(PENDING_PURPOSE, payload).hex()
        return f"{keys.current}.{payload}.{mac}"

    @classmethod
    def unseal(cls, keys: ServerKeys, sealed: str | None, *, now: float | None = None) -> PendingSignIn:
        expired = SignInRejected(
            "This sign-in was not started from this browser, or took longer than "
            f"{PENDING_SECONDS // 60} minutes. Start again from the sign-in page."
        )
        if not sealed or len(sealed) > 4096:
            raise expired
        version_text, _, rest = sealed.partition(".")
        payload, _, mac = rest.rpartition(".")
        if not version_text.isdigit() or int(version_text) not in keys.versions:
            raise expired
        expected = keys.digest(PENDING_PURPOSE, payload, int(version_text)).hex()
        if not hmac.compare_digest(expected.encode(), mac.encode()):
            raise expired
        fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        pending = cls(*fields)
        if (now or time.time()) - pending.started > PENDING_SECONDS:
            raise expired
        return pending


@dataclass(frozen=True)
class VerifiedIdentity:
    """Who the provider says signed in, after every check passed."""

    issuer: str
    subject: str
    claims: Mapping[str, Any]
    id_token: str  # kept only to end the provider's session at sign-out (id_token_hint)

    @property
    def authenticated_at(self) -> datetime | None:
        """When the provider last authenticated the person (``auth_time``), when it says."""
        auth_time = self.claims.get("auth_time")
        if isinstance(auth_time, (int, float)) and not isinstance(auth_time, bool):
            return datetime.fromtimestamp(auth_time, UTC)
        return None

    @property
    def preferred_username(self) -> str | None:
        return _text(self.claims.get("preferred_username"))

    @property
    def email(self) -> str | None:
        return _text(self.claims.get("email"))

    @property
    def name(self) -> str | None:
        return _text(self.claims.get("name"))


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


class OpenIdProvider:
    """One configured provider. Discovery and keys are fetched when first needed and cached."""

    def __init__(self, settings: IdentityProviderSettings, redirect_uri: str) -> None:
        self.settings = settings
        self.redirect_uri = redirect_uri
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None

    @property
    def name(self) -> str:
        return self.settings.name

    # --- discovery ------------------------------------------------------------------------

    async def metadata(self) -> ProviderMetadata:
        if self._metadata is None or time.monotonic() - self._metadata_at > METADATA_SECONDS:
            document = await self._get_json(self.settings.discovery_url, "discovery document")
            self._metadata = self._read_metadata(document)
            self._metadata_at = time.monotonic()
            self._keys = None
        return self._metadata

    def _read_metadata(self, document: Mapping[str, Any]) -> ProviderMetadata:
        missing = [name for name in REQUIRED_METADATA if not isinstance(document.get(name), str)]
        if missing:
            raise self._unavailable(f"its discovery document lacks {', '.join(missing)}")
        if document["issuer"] != self.settings.issuer:
            # OpenID Connect Discovery 1.0, section 4.3: a mismatch means the wrong provider.
            raise self._unavailable(
                f"its discovery document names the issuer {document['issuer']!r}, not the "
                f"configured {self.settings.issuer!r} (TOKENSMITH_OIDC_ISSUER)"
            )
        algorithms = document.get("id_token_signing_alg_values_supported") or ["RS256"]
        return ProviderMetadata(
            issuer=document["issuer"],
            authorization_endpoint=document["authorization_endpoint"],
            token_endpoint=document["token_endpoint"],
            jwks_uri=document["jwks_uri"],
            userinfo_endpoint=_optional_url(document.get("userinfo_endpoint")),
            end_session_endpoint=_optional_url(document.get("end_session_endpoint")),
            # "none" would accept unsigned tokens: never.
            signing_algorithms=tuple(alg for alg in algorithms if isinstance(alg, str) and alg != "none"),
        )

    async def _signing_keys(self, *, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            metadata = await self.metadata()
            document = await self._get_json(metadata.jwks_uri, "signing keys (JWKS)")
            keys = document.get("keys")
            if not isinstance(keys, list):
                raise self._unavailable("its signing keys (JWKS) cannot be read")
            try:
                self._keys = KeySet.import_key_set({"keys": keys})
            except (JoseError, ValueError, TypeError, KeyError):
                raise self._unavailable("its signing keys (JWKS) cannot be read") from None
        return self._keys

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            async with httpx2.AsyncClient(timeout=HTTP_TIMEOUT) as client:
                response = await client.get(url, headers={"Accept": "application/json"})
        except httpx2.HTTPError as error:
            raise self._unavailable(f"it cannot be reached ({type(error).__name__})") from None
        if response.status_code != 200:
            raise self._unavailable(f"its {what} answered HTTP {response.status_code}")
        try:
            document = response.json()
        except ValueError:
            raise self._unavailable(f"its {what} is not JSON") from None
        if not isinstance(document, dict):
            raise self._unavailable(f"its {what} is not a JSON object")
        return document

    def _unavailable(self, why: str) -> IdentityProviderUnavailable:
        log.warning("identity provider %s unusable: %s", self.settings.issuer, why)
        return IdentityProviderUnavailable(
            f"Sign-in with {self.name} is not possible right now: {why}. Try again in a moment; "
            "if it persists, tell an administrator."
        )

    # --- the flow -------------------------------------------------------------------------

    def _client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.settings.client_id,
            client_secret=self.settings.client_secret,
            token_endpoint_auth_method="client_secret_basic" if self.settings.client_secret else "none",
            scope=SCOPES,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            timeout=HTTP_TIMEOUT,
        )

    async def begin(self, next_path: str, *, max_age: int | None = None) -> tuple[str, PendingSignIn]:
        """Where to send the browser, and what to remember until it comes back. ``max_age``:
        the person must have signed in at the provider within that many seconds (OpenID
        Connect Core 3.1.2.1), for a re-authentication."""
        metadata = await self.metadata()
        pending = PendingSignIn(
            state=generate_token(32),
            nonce=generate_token(32),
            code_verifier=generate_token(64),
            next_path=next_path,
            started=int(time.time()),
            max_age=max_age,
        )
        extra = {"max_age": str(max_age)} if max_age is not None else {}
        async with self._client() as client:
            url, _state = client.create_authorization_url(
                metadata.authorization_endpoint,
                state=pending.state,
                code_verifier=pending.code_verifier,
                nonce=pending.nonce,
                **extra,
            )
        return url, pending

    async def finish(self, pending: PendingSignIn, params: Mapping[str, str]) -> VerifiedIdentity:
        """Check the provider's answer at the redirect URI and redeem the code."""
        state = params.get("state", "")
        if not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise SignInRejected(
                "This answer from the identity provider does not belong to the sign-in started "
                "in this browser (state mismatch). Start again from the sign-in page."
            )
        metadata = await self.metadata()
        if "iss" in params and params["iss"] != metadata.issuer:
            # RFC 9207: the answer names another provider (a mix-up attack, or a misconfiguration).
            raise SignInRejected(
                f"This answer comes from another identity provider than {self.name}. Start again from the sign-in page."
            )
        if "error" in params:
            raise SignInRejected(_provider_error(self.name, params))
        code = params.get("code", "")
        if not code:
            raise SignInRejected(f"{self.name} sent no authorization code. Start again from the sign-in page.")
        async with self._client() as client:
            try:
                token = await client.fetch_token(
                    metadata.token_endpoint,
                    code=code,
                    code_verifier=pending.code_verifier,
                    grant_type="authorization_code",
                )
            except OAuthError as error:
                # invalid_grant: the code was used already, expired, or was not issued to us.
                raise SignInRejected(
                    f"{self.name} refused to complete the sign-in ({error.error}): the sign-in "
                    "link was used already or is too old. Start again from the sign-in page."
                ) from None
            except httpx2.HTTPStatusError as error:
                raise self._unavailable(f"its token endpoint answered HTTP {error.response.status_code}") from None
            except httpx2.HTTPError as error:
                raise self._unavailable(f"its token endpoint cannot be reached ({type(error).__name__})") from None
            except ValueError:
                raise self._unavailable("its token endpoint did not answer JSON") from None
            id_token = token.get("id_token") if isinstance(token, dict) else None
            if not isinstance(id_token, str) or not id_token:
                raise self._unavailable("it answered without an ID token")
            claims = await self._verified_claims(metadata, id_token, pending.nonce, pending.max_age)
            profile = await self._userinfo(client, metadata, token, claims["sub"])
        merged = {**profile, **{k: v for k, v in claims.items() if v is not None}}
        return VerifiedIdentity(issuer=metadata.issuer, subject=claims["sub"], claims=merged, id_token=id_token)

    async def _verified_claims(
        self, metadata: ProviderMetadata, id_token: str, nonce: str, max_age: int | None = None
    ) -> dict[str, Any]:
        registry = JWSRegistry(algorithms=list(metadata.signing_algorithms), strict_check_header=False)
        try:
            try:
                decoded = jwt.decode(id_token, await self._signing_keys(), registry=registry)
            except InvalidKeyIdError:
                # The provider may have rotated its keys since we fetched them.
                decoded = jwt.decode(id_token, await self._signing_keys(refresh=True), registry=registry)
            claims = CodeIDToken(
                decoded.claims,
                decoded.header,
                options={
                    "iss": {"essential": True, "value": metadata.issuer},
                    "aud": {"essential": True, "value": self.settings.client_id},
                    "exp": {"essential": True},
                    "sub": {"essential": True},
                },
                params={
                    "nonce": nonce,
                    "client_id": self.settings.client_id,
                    **({"max_age": max_age} if max_age is not None else {}),
                },
            )
            claims.validate(leeway=CLOCK_LEEWAY)
        except ExpiredTokenError:
            raise self._rejected_token("it has expired") from None
        except (BadSignatureError, InvalidKeyIdError):
            raise self._rejected_token("its signature does not match the provider's keys") from None
        except (InvalidClaimError, MissingClaimError) as error:
            raise self._rejected_token(_claim_problem(error)) from None
        except (JoseError, ValueError, TypeError, KeyError):
            raise self._rejected_token("it is not a well-formed signed token") from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise self._rejected_token("it names no subject")
        if max_age is not None and time.time() - claims["auth_time"] > max_age + CLOCK_LEEWAY:
            # A provider that ignored max_age: its sign-in is not the recent one asked for.
            raise SignInRejected(
                f"{self.name} did not ask you to sign in again: its sign-in is older than "
                f"{max_age // 60} minutes, and creating or changing a token needs a recent one. "
                "Sign out of it and try again; if it persists, tell an administrator."
            )
        return dict(claims)

    def _rejected_token(self, why: str) -> SignInRejected:
        log.warning("ID token from %s refused: %s", self.settings.issuer, why)
        return SignInRejected(
            f"The identity token from {self.name} was refused: {why}. Start again from the "
            "sign-in page; if it persists, tell an administrator."
        )

    async def _userinfo(
        self, client: AsyncOAuth2Client, metadata: ProviderMetadata, token: Mapping[str, Any], subject: str
    ) -> dict[str, Any]:
        """The profile claims the ID token may leave out (providers that follow the spec
        strictly return them from the UserInfo endpoint only)."""
        if not metadata.userinfo_endpoint or not token.get("access_token"):
            return {}
        try:
            response = await client.get(metadata.userinfo_endpoint)
            profile = response.json() if response.status_code == 200 else {}
        except (httpx2.HTTPError, ValueError):
            return {}
        if not isinstance(profile, dict) or profile.get("sub") != subject:
            return {}  # OpenID Connect Core 5.3.2: a different subject must not be used
        return profile

    async def end_session_url(self, id_token: str | None, after: str) -> str | None:
        """Where to send the browser so the provider's session ends too, when it says how."""
        try:
            metadata = await self.metadata()
        except IdentityProviderUnavailable:
            return None
        if not metadata.end_session_endpoint:
            return None
        params = {"client_id": self.settings.client_id, "post_logout_redirect_uri": after}
        if id_token:
            params["id_token_hint"] = id_token
        separator = "&" if urlsplit(metadata.end_session_endpoint).query else "?"
        return f"{metadata.end_session_endpoint}{separator}{urlencode(params)}"

    def origins(self) -> set[str]:
        """Origins the browser is sent to (for the pages' form-action policy)."""
        urls = [self.settings.issuer]
        if self._metadata is not None and self._metadata.end_session_endpoint:
            urls.append(self._metadata.end_session_endpoint)
        return {f"{parts.scheme}://{parts.netloc}" for parts in map(urlsplit, urls)}


def _optional_url(value: object) -> str | None:
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None


def _claim_problem(error: InvalidClaimError | MissingClaimError) -> str:
    if isinstance(error, MissingClaimError):
        return f"it lacks the {error.claim!r} claim"
    reasons = {
        "iss": "it was issued by another provider",
        "aud": "it was issued to another application (audience)",
        "nonce": "it does not belong to this sign-in (nonce)",
        "azp": "it was issued to another application (authorized party)",
        "iat": "its issue time is not valid",
        "nbf": "it is not valid yet",
    }
    return reasons.get(error.claim, f"its {error.claim!r} claim is not valid")


def _provider_error(name: str, params: Mapping[str, str]) -> str:
    error = params.get("error", "")[:60]
    if error == "access_denied":
        return f"{name} did not let you sign in to Tokensmith (access denied)."
    description = params.get("error_description", "")[:200]
    return f"{name} could not sign you in ({error}{': ' + description if description else ''})."
