"""A CI job's ID token read and checked, in process: its shape and limits, its algorithm, its
signature, its audience, times and jti. Signed for real by the tests' own issuer's keys."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from joserfc.jwk import ECKey, OKPKey, RSAKey

from tests.support.ci_issuer import CiIssuer
from tokensmith.errors import IdTokenRejected
from tokensmith.tokens import exchange_batches, id_tokens

AUDIENCE = "https://tokens.example.test"


@pytest.fixture(scope="module")
def issuer() -> CiIssuer:
    return CiIssuer()  # its keys and claims only: nothing here asks it over HTTP


def b64(data: object) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def refused(code: str, token: object, **check: object) -> str:
    with pytest.raises(IdTokenRejected) as caught:
        presented = id_tokens.read(token)
        if check:
            id_tokens.check(presented, **check)  # type: ignore[arg-type]
    assert caught.value.code == code and caught.value.reason == code
    return caught.value.message


def test_a_github_token_signed_with_rsa_and_one_signed_with_ec_pass_every_check(issuer):
    now = datetime.now(UTC)
    for key in (issuer.rsa, issuer.ec):
        presented = id_tokens.read(issuer.sign(issuer.github_claims(AUDIENCE), key=key))
        id_tokens.verify(presented, key)
        expires = id_tokens.check(presented, audience=AUDIENCE, now=now)
        assert presented.issuer == issuer.issuer and presented.key_id == key.kid
        assert timedelta(minutes=4) < expires - now <= timedelta(minutes=5)


def test_other_asymmetric_algorithms_verify_too(issuer):
    for key, algorithm in (
        (RSAKey.generate_key(2048, parameters={"kid": "ps"}), "PS256"),
        (RSAKey.generate_key(2048, parameters={"kid": "rs512"}), "RS512"),
        (ECKey.generate_key("P-384", parameters={"kid": "es384"}), "ES384"),
        (OKPKey.generate_key("Ed25519", parameters={"kid": "ed"}), "Ed25519"),
    ):
        token = issuer.sign(issuer.gitlab_claims(AUDIENCE), key=key, header={"alg": algorithm})
        presented = id_tokens.read(token)
        id_tokens.verify(presented, key)
        assert presented.algorithm == algorithm


def test_an_unsigned_token_and_the_hmac_family_are_refused_before_any_key_is_looked_at(issuer):
    claims = issuer.github_claims(AUDIENCE)
    assert "none" in refused("invalid_signature", issuer.unsigned(claims))
    for algorithm in ("HS256", "HS384", "HS512"):
        # The classic confusion: the issuer's public key used as the HMAC secret.
        words = refused("invalid_signature", issuer.hmac_with_public_key(claims, algorithm))
        assert algorithm in words and "asymmetric" in words


def test_a_signature_by_another_key_or_of_another_kind_is_refused(issuer):
    claims = issuer.github_claims(AUDIENCE)
    impostor = RSAKey.generate_key(2048, parameters={"kid": issuer.rsa.kid, "alg": "RS256"})
    presented = id_tokens.read(issuer.sign(claims, key=impostor))
    with pytest.raises(IdTokenRejected) as caught:
        id_tokens.verify(presented, issuer.rsa)
    assert caught.value.code == "invalid_signature" and "does not match" in caught.value.message
    # An RS256 token checked with an EC key of the same kid: the kind of key does not fit.
    with pytest.raises(IdTokenRejected) as caught:
        id_tokens.verify(id_tokens.read(issuer.sign(claims)), issuer.ec)
    assert caught.value.code == "invalid_signature" and "not a key of that algorithm" in caught.value.message
    # An ES256 token with a P-384 key's signature: the curve does not fit.
    p384 = ECKey.generate_key("P-384", parameters={"kid": "p384"})
    assert not id_tokens.key_fits(p384, "ES256") and id_tokens.key_fits(p384, "ES384")
    # A key that says which algorithm it is for takes no other.
    assert not id_tokens.key_fits(issuer.rsa, "PS256") and id_tokens.key_fits(issuer.rsa, "RS256")


@pytest.mark.parametrize(
    "token, words",
    [
        (None, "no ID token"),
        ("", "no ID token"),
        ("not-a-jwt", "three base64url parts"),
        ("a.b.c.d", "three base64url parts"),
        ("é.b.c", "three base64url parts"),
        (f"{b64(b'not json')}.{b64({})}.c2ln", "header is not base64url-encoded JSON"),
        (f"{b64([1, 2])}.{b64({})}.c2ln", "naming its algorithm"),
        (f"{b64({'alg': 'RS256'})}.{b64([1])}.c2ln", "claims are not a JSON object"),
        (f"{b64({'alg': 'RS256'})}.{b64({'aud': 'x'})}.c2ln", "names no issuer"),
        (f"{b64({'alg': 'RS256', 'crit': ['b64']})}.{b64({'iss': 'x'})}.c2ln", "critical extensions"),
        (f"{b64({'alg': 'RS256'})}.{'[' * 2000}.c2ln", "not base64url-encoded JSON"),
    ],
)
def test_what_is_not_an_id_token_is_malformed_in_words(token, words):
    assert words in refused("malformed", token)


def test_hostile_sizes_are_refused_before_anything_is_parsed(issuer):
    claims = issuer.github_claims(AUDIENCE)
    megabyte = issuer.sign({**claims, "padding": "x" * 1_000_000})
    assert "at most 8,192" in refused("malformed", megabyte)
    many = {**claims, **{f"claim{number}": number for number in range(10_000)}}
    assert "at most 8,192" in refused("malformed", issuer.sign(many))  # too long before it is too wide
    wide = {**claims, **{f"c{number}": 1 for number in range(150)}}
    assert f"{len(wide)} claims; an ID token has at most 100" in refused("malformed", issuer.sign(wide))
    # Nested JSON deeper than orjson reads (1,024 levels): refused, not recursed into.
    deep = b"[" * 1100 + b"]" * 1100  # within the length, past the depth
    nested = f"{b64({'alg': 'RS256'})}.{b64(deep)}.c2ln"
    assert "not base64url-encoded JSON" in refused("malformed", nested)


def test_the_audience_must_name_this_server(issuer):
    now = datetime.now(UTC)
    words = refused(
        "wrong_audience", issuer.sign(issuer.github_claims("https://elsewhere.example")), audience=AUDIENCE, now=now
    )
    assert "https://elsewhere.example" in words and AUDIENCE in words
    listed = issuer.sign(issuer.github_claims(["sts.amazonaws.com", AUDIENCE]))  # type: ignore[arg-type]
    id_tokens.check(id_tokens.read(listed), audience=AUDIENCE, now=now)
    refused("wrong_audience", issuer.sign({**issuer.github_claims(AUDIENCE), "aud": 42}), audience=AUDIENCE, now=now)


def test_times_are_held_to_a_minute_of_leeway_by_the_clock_given(issuer):
    token = id_tokens.read(issuer.sign(issuer.github_claims(AUDIENCE, lifetime=300)))
    expires = datetime.fromtimestamp(token.claims["exp"], UTC)
    issued = datetime.fromtimestamp(token.claims["iat"], UTC)
    id_tokens.check(token, audience=AUDIENCE, now=expires + timedelta(seconds=59))
    with pytest.raises(IdTokenRejected) as caught:
        id_tokens.check(token, audience=AUDIENCE, now=expires + timedelta(seconds=61))
    assert caught.value.code == "expired" and "expired at" in caught.value.message
    id_tokens.check(token, audience=AUDIENCE, now=issued - timedelta(seconds=59))
    with pytest.raises(IdTokenRejected) as caught:
        id_tokens.check(token, audience=AUDIENCE, now=issued - timedelta(seconds=61))
    assert caught.value.code == "expired" and "check the clocks" in caught.value.message


@pytest.mark.parametrize(
    "changes, code, words",
    [
        ({"exp": None}, "malformed", "exp claim is not a time"),
        ({"exp": "tomorrow"}, "malformed", "exp claim is not a time"),
        ({"exp": True}, "malformed", "exp claim is not a time"),
        ({"exp": 10**20}, "malformed", "exp claim is not a time"),
        ({"iat": None}, "malformed", "iat claim is not a time"),
        ({"nbf": "now"}, "malformed", "nbf claim is not a time"),
        ({"jti": None}, "malformed", "no jti"),
        ({"jti": ""}, "malformed", "no jti"),
        ({"jti": "j" * 256}, "malformed", "no jti"),
        ({"jti": {"nested": ["json"]}}, "malformed", "no jti"),
        ({"exp_in": 8 * 86400}, "malformed", "more than 7 days"),
    ],
)
def test_missing_or_odd_claims_are_refused_in_words(issuer, changes, code, words):
    claims = issuer.github_claims(AUDIENCE)
    if "exp_in" in changes:
        claims["exp"] = claims["iat"] + changes.pop("exp_in")
    for name, value in changes.items():
        if value is None:
            del claims[name]
        else:
            claims[name] = value
    assert words in refused(code, issuer.sign(claims), audience=AUDIENCE, now=datetime.now(UTC))


def test_claims_shown_in_words_are_text_printable_and_short(issuer):
    presented = id_tokens.read(
        issuer.sign(issuer.github_claims(AUDIENCE, repository="acme/app", environment="prod\x1b[31m" + "x" * 300))
    )
    assert presented.text("repository") == "acme/app"
    shown = presented.text("environment")
    assert shown is not None and "\x1b" not in shown and shown.endswith("…") and len(shown) <= 101
    assert presented.text("run_number") == "17" and presented.text("missing") is None


@pytest.mark.parametrize(
    ("key", "on_the_loop"),
    [
        (lambda: RSAKey.generate_key(2048), True),
        (lambda: RSAKey.generate_key(4096), True),
        (lambda: ECKey.generate_key("P-256"), True),
        (lambda: OKPKey.generate_key("Ed25519"), True),
        (lambda: ECKey.generate_key("P-384"), False),
        (lambda: ECKey.generate_key("P-521"), False),
        (lambda: OKPKey.generate_key("Ed448"), False),
    ],
)
def test_only_keys_quick_to_verify_with_are_used_on_the_event_loop(key, on_the_loop):
    """What costs tens of µs is verified on the loop; P-384, P-521, Ed448 (hundreds) in a thread."""
    assert exchange_batches.quick_to_verify(key()) is on_the_loop
