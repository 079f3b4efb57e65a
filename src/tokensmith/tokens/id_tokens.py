"""A CI job's OpenID Connect ID token, read and checked (workload identity).

``read`` takes the token apart before anything is trusted, within limits (its length, its
claims' number, JSON that orjson refuses past 1,024 levels) and refuses every algorithm that is
not asymmetric: ``none``, and the HS* family, with which a public key used as an HMAC secret
would verify anything (the classic confusion). ``verify`` checks the signature with a key of
the issuer's JWKS (oidc_issuers.py) by ``cryptography``, on the key object parsed once when the
JWKS was fetched, with the token's one algorithm, once the key is of that algorithm's kind
(about 25 µs for RS256 and a 2,048-bit key); ``check`` the audience, the times (60 seconds of
leeway) and the ``jti``. Each refusal is an IdTokenRejected with its code and its words. Pure:
no I/O, no store.
"""

from __future__ import annotations

import base64
import binascii
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

from tokensmith.errors import IdTokenRejected

# Joserfc warns that RFC 9864 deprecates "EdDSA" for "Ed25519": both are taken, the warning is noise.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)

MAX_LENGTH = 8192  # GitHub's and GitLab's ID tokens are about 1,200 characters
MAX_CLAIMS = 100  # GitHub's carry about 30
MAX_HEADER = 1024
LEEWAY = timedelta(seconds=60)
# No CI platform issues an ID token valid for more than a week; a longer one would hold its jti
# in the store as long.
MAX_VALIDITY = timedelta(days=7)
MAX_JTI = 255
PublicKey = RSAKey | ECKey | OKPKey
# The asymmetric algorithms, and the key each takes (and its curve, for EC and OKP).
ALGORITHMS: dict[str, tuple[str, tuple[str, ...]]] = {
    **{f"RS{bits}": ("RSA", ()) for bits in (256, 384, 512)},
    **{f"PS{bits}": ("RSA", ()) for bits in (256, 384, 512)},
    "ES256": ("EC", ("P-256",)),
    "ES384": ("EC", ("P-384",)),
    "ES512": ("EC", ("P-521",)),
    "EdDSA": ("OKP", ("Ed25519", "Ed448")),
    "Ed25519": ("OKP", ("Ed25519",)),
}


def rejected(code: str, why: str) -> IdTokenRejected:
    return IdTokenRejected(code, f"The ID token was refused ({code}): {why}.")


def malformed(why: str) -> IdTokenRejected:
    return rejected("malformed", why)


@dataclass(frozen=True)
class PresentedIdToken:
    """An ID token taken apart: nothing in it is trusted until ``verify`` and ``check`` pass."""

    raw: str = field(repr=False)
    header: Mapping[str, Any]
    claims: Mapping[str, Any]

    @property
    def issuer(self) -> str:
        issuer: str = self.claims["iss"]  # text: read() refuses a token whose iss is not
        return issuer

    @property
    def algorithm(self) -> str:
        algorithm: str = self.header["alg"]  # text: read() refuses a header whose alg is not
        return algorithm

    @property
    def key_id(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None

    @property
    def jti(self) -> str:
        jti: str = self.claims["jti"]  # text: checked before it is asked for
        return jti

    def text(self, name: str, limit: int = 100) -> str | None:
        """A claim that is text, printable and cut to ``limit``: for messages and the audit trail."""
        value = self.claims.get(name)
        if not isinstance(value, str) or not value:
            return None
        shown = value[:limit]
        if not shown.isprintable():
            shown = "".join(char for char in shown if char.isprintable())
        return shown + ("…" if len(value) > limit else "")


def _decoded(segment: str, what: str, limit: int) -> Any:
    if len(segment) > limit:
        raise malformed(f"its {what} is longer than {limit:,} characters")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise malformed(f"its {what} is not base64url-encoded JSON") from None


def read(token: object) -> PresentedIdToken:
    """The token taken apart, or the reason it cannot be: its shape, its size, its algorithm."""
    if not isinstance(token, str) or not token.strip():
        raise malformed('no ID token was sent: post {"token": "<the CI job\'s ID token>"}')
    token = token.strip()
    if len(token) > MAX_LENGTH:
        raise malformed(f"it is {len(token):,} characters long; an ID token has at most {MAX_LENGTH:,}")
    if not token.isascii() or token.count(".") != 2:
        raise malformed("it is not a signed JWT (three base64url parts separated by dots)")
    header_part, claims_part, signature = token.split(".")
    header = _decoded(header_part, "header", MAX_HEADER)
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        raise malformed("its header is not a JSON object naming its algorithm (alg)")
    algorithm = header["alg"]
    if algorithm not in ALGORITHMS:
        raise rejected(
            "invalid_signature",
            f"it is signed with {algorithm[:20]!r}; only asymmetric signatures are accepted "
            f"({', '.join(ALGORITHMS)}), never none nor a shared-secret (HS…) algorithm",
        )
    if not signature:
        raise rejected("invalid_signature", "it is not signed")
    if header.get("crit"):
        raise malformed("its header names critical extensions (crit), which are not understood here")
    claims = _decoded(claims_part, "claims", MAX_LENGTH)
    if not isinstance(claims, dict):
        raise malformed("its claims are not a JSON object")
    if len(claims) > MAX_CLAIMS:
        raise malformed(f"it carries {len(claims):,} claims; an ID token has at most {MAX_CLAIMS}")
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer or len(issuer) > 255:
        raise malformed("it names no issuer (iss) of at most 255 characters")
    return PresentedIdToken(token, header, claims)


def key_fits(key: PublicKey, algorithm: str) -> bool:
    """Whether ``key`` is of the kind ``algorithm`` signs with (RSA, the EC curve, the OKP
    curve), and its own ``alg`` and ``use``, when it says them, allow it."""
    kind, curves = ALGORITHMS[algorithm]
    if key.key_type != kind:
        return False
    if curves and key.curve_name not in curves:  # type: ignore[union-attr]  # EC and OKP keys have one
        return False
    declared = key.get("alg")
    use = key.get("use")
    return (declared is None or declared == algorithm) and (use is None or use == "sig")


def verify(presented: PresentedIdToken, key: PublicKey) -> None:
    """The signature, by ``key`` (of the issuer's JWKS), with the token's own algorithm only."""
    if not key_fits(key, presented.algorithm):
        raise rejected(
            "invalid_signature",
            f"it says it is signed with {presented.algorithm}, and the issuer's key "
            f"{presented.key_id or ''} is not a key of that algorithm",
        )
    signed, _, encoded = presented.raw.rpartition(".")
    try:
        signature = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
        _verified(public_key_of(key), presented.algorithm, signature, signed.encode())
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        raise rejected("invalid_signature", "its signature does not match the issuer's published keys") from None


Verifier = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def public_key_of(key: PublicKey) -> Verifier:
    """The ``cryptography`` public key of a JWK (the JWKS's are public already; a test's key may
    be a private one)."""
    raw = key.raw_value
    public = raw.public_key() if hasattr(raw, "public_key") else raw
    if not isinstance(
        public, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)
    ):
        raise TypeError("not a public key of a kind this server verifies with")
    return public


def _verified(public: Verifier, algorithm: str, signature: bytes, signed: bytes) -> None:
    """RFC 7518's signatures (RS*, PS*, ES*) and RFC 8037's (EdDSA, Ed25519), or InvalidSignature."""
    if isinstance(public, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        public.verify(signature, signed)
        return
    digest = _HASHES[algorithm[2:]]()
    if isinstance(public, rsa.RSAPublicKey):
        if algorithm.startswith("PS"):
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            public.verify(signature, signed, pss, digest)
        else:
            public.verify(signature, signed, padding.PKCS1v15(), digest)
        return
    # ES*: r and s, each as long as the curve's order, end to end (not DER).
    size = (public.curve.key_size + 7) // 8
    if len(signature) != 2 * size:
        raise InvalidSignature
    r, s = int.from_bytes(signature[:size]), int.from_bytes(signature[size:])
    public.verify(encode_dss_signature(r, s), signed, ec.ECDSA(digest))


def _moment(claims: Mapping[str, Any], name: str, *, required: bool) -> datetime | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 253402300799:
        raise malformed(f"its {name} claim is not a time (seconds since 1970)")
    return datetime.fromtimestamp(value, UTC)


def check(presented: PresentedIdToken, *, audience: str, now: datetime) -> datetime:
    """The audience, the times and the jti of a token whose signature held; returns its expiry."""
    claims = presented.claims
    audiences = claims.get("aud")
    listed = [audiences] if isinstance(audiences, str) else audiences if isinstance(audiences, list) else []
    if audience not in listed[:20]:
        named = ", ".join(str(item)[:80] for item in listed[:3] if isinstance(item, str)) or "none"
        raise rejected(
            "wrong_audience",
            f"it was issued for {named}, not for this server: ask the CI for an ID token with the audience "
            f"{audience} (GET /api/v1/oidc/audience says it)",
        )
    expires = _moment(claims, "exp", required=True)
    issued = _moment(claims, "iat", required=True)
    not_before = _moment(claims, "nbf", required=False)
    assert expires is not None and issued is not None
    if expires + LEEWAY <= now:
        raise rejected("expired", f"it expired at {expires:%Y-%m-%d %H:%M:%S} UTC: ask the CI for a new one")
    if issued - LEEWAY > now or (not_before is not None and not_before - LEEWAY > now):
        raise rejected(
            "expired",
            f"it is not valid before {max(issued, not_before or issued):%Y-%m-%d %H:%M:%S} UTC, later than "
            "this server's clock allows: check the clocks of the CI and of this server",
        )
    if expires - now > MAX_VALIDITY:
        raise malformed(f"it is valid until {expires:%Y-%m-%d}, more than {MAX_VALIDITY.days} days from now")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI:
        raise malformed(f"it has no jti of 1 to {MAX_JTI} characters, which lets it be used only once")
    return expires
