"""GitHub's secret scanning, as a partner: tokens found in public, revoked within seconds.

GitHub scans public repositories, gists and npm packages for the deployment's token format and
POSTs what it finds (a JSON array of ``{"token", "type", "url", "source"}``) to the partner
endpoint (web/secret_scanning.py), signed: ``Github-Public-Key-Identifier`` names one of the keys
GitHub publishes (``TOKENSMITH_SECRET_SCANNING_KEYS_URL``), ``Github-Public-Key-Signature`` is the
base64 ECDSA P-256 SHA-256 signature of the raw body. ``PublishedKeys`` checks it: the key list
is fetched when first needed and kept for an hour; an identifier it does not hold has the list
fetched again, at most once a minute (so that a stranger's made-up identifiers cannot make this
server hammer GitHub's). A report that is unsigned or badly signed is ``SignatureRefused`` (401);
a key list that cannot be had is ``ScanningKeysUnavailable`` (503): nothing is revoked either way,
and since the signature covers the exact bytes, a signature replayed over another body fails.

``revoke_found`` then revokes every live token among the findings through the one revocation path
(token_lifecycle), with where GitHub found it, so that its owner is told (My Tokens, the security
log, mail: notices.py), and labels each finding: ``true_positive`` for a token this server
issued, whatever its state now, ``false_positive`` for anything else. A report sent twice revokes
once and is answered the same twice.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy.orm import Session

from tokensmith.audit.trail import RevokeReason
from tokensmith.clock import utcnow
from tokensmith.errors import CredentialMalformed, ScanningKeysUnavailable, SignatureRefused
from tokensmith.store.server_keys import ServerKeys
from tokensmith.tokens import format as token_format
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import listing as token_listing

log = logging.getLogger("tokensmith.secret_scanning")

MAX_FINDINGS = 1000  # tokens in one report
FINDER = "GitHub secret scanning"  # the actor of the revocations, in the owner's log
KEEP_KEYS_SECONDS = 3600.0  # the key list is fetched again after this, whatever is asked
REFETCH_SECONDS = 60.0  # at most this often for an identifier the list does not hold
RETRY_SECONDS = 1.0  # after a failed fetch, the next one is tried no sooner than this
FETCH_TIMEOUT = httpx2.Timeout(5.0)
MAX_KEY_LIST = 1024 * 1024  # bytes of a key list read at most
_IDENTIFIER = re.compile(r"[0-9A-Za-z+/=_.-]{1,128}")
MAX_SIGNATURE = 200  # characters of base64: a P-256 DER signature is about 96


@dataclass(frozen=True)
class Finding:
    """One token GitHub found: the string, the type it matched as, where, and in what."""

    token: str
    type: str = ""
    url: str = ""
    source: str = ""


@dataclass(frozen=True)
class Verdict:
    """What the answer says of one finding: GitHub's ``token_hash`` (SHA-256 of the token, hex),
    ``token_type`` and ``label``."""

    token_hash: str
    token_type: str
    label: str


class PublishedKeys:
    """The signing keys published at ``url``, fetched when needed and cached (``clock`` says the
    time, in seconds: tests move it). One per server process, shared by its requests."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.clock = clock
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._fetched_at: float | None = None  # the last fetch that succeeded
        self._failed_at: float | None = None  # the last one that did not, if later
        self._lock = asyncio.Lock()

    async def verify(self, body: bytes, identifier: str | None, signature: str | None) -> None:
        """Raise SignatureRefused unless ``signature`` is a published key's over ``body``, or
        ScanningKeysUnavailable when the key list cannot be had to tell."""
        if not identifier or not signature:
            raise SignatureRefused(
                "This report is not signed: a secret-scanning report carries the headers "
                "Github-Public-Key-Identifier and Github-Public-Key-Signature. Nothing was revoked."
            )
        if not _IDENTIFIER.fullmatch(identifier) or len(signature) > MAX_SIGNATURE:
            raise SignatureRefused("The report's key identifier or signature is malformed. Nothing was revoked.")
        try:
            raw_signature = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureRefused("The report's signature is not base64. Nothing was revoked.") from None
        key = await self.key(identifier)
        try:
            key.verify(raw_signature, body, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise SignatureRefused(
                "The report's signature does not match its body under the key it names. Nothing was revoked."
            ) from None

    async def key(self, identifier: str) -> ec.EllipticCurvePublicKey:
        """The published key of that identifier. The list is fetched again when it is over an
        hour old, or when it lacks the identifier and was fetched over a minute ago (or its last
        fetch failed). While it cannot be had, a key held still verifies; another identifier is
        ScanningKeysUnavailable, since the list may have it now."""
        async with self._lock:
            now = self.clock()
            stale = self._fetched_at is None or now - self._fetched_at >= KEEP_KEYS_SECONDS
            if stale or (identifier not in self._keys and self._fetch_due(now)):
                try:
                    await self._refresh(now)
                except ScanningKeysUnavailable:
                    if identifier not in self._keys:
                        raise
            key = self._keys.get(identifier)
        if key is None:
            raise SignatureRefused(
                "The report is signed with a key that is not among the published secret-scanning keys. "
                "Nothing was revoked."
            )
        return key

    def _fetch_due(self, now: float) -> bool:
        return self._failed_at is not None or self._fetched_at is None or now - self._fetched_at >= REFETCH_SECONDS

    async def _refresh(self, now: float) -> None:
        if self._failed_at is not None and now - self._failed_at < RETRY_SECONDS:
            raise ScanningKeysUnavailable(self._unavailable("it could not be reached a moment ago"))
        try:
            document = await self._fetch()
            keys = _keys_of(document)
        except ScanningKeysUnavailable:
            self._failed_at = now
            raise
        self._keys, self._fetched_at, self._failed_at = keys, now, None
        log.info("secret-scanning keys fetched from %s: %d key(s)", self.url, len(keys))

    async def _fetch(self) -> object:
        try:
            async with (
                httpx2.AsyncClient(timeout=FETCH_TIMEOUT) as client,
                client.stream("GET", self.url, headers={"Accept": "application/json"}) as response,
            ):
                if response.status_code != 200:
                    raise ScanningKeysUnavailable(self._unavailable(f"it answered HTTP {response.status_code}"))
                content = b""
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > MAX_KEY_LIST:
                        raise ScanningKeysUnavailable(self._unavailable("its answer is too large to be a key list"))
        except httpx2.HTTPError as error:
            log.warning("secret-scanning keys: %s cannot be reached (%s)", self.url, type(error).__name__)
            raise ScanningKeysUnavailable(self._unavailable("it cannot be reached")) from None
        try:
            return json.loads(content)
        except (ValueError, RecursionError):
            raise ScanningKeysUnavailable(self._unavailable("its answer is not JSON")) from None

    def _unavailable(self, why: str) -> str:
        return (
            f"The secret-scanning signing keys cannot be had from {self.url}: {why}. Nothing was revoked; "
            "send the report again in a moment."
        )


def _keys_of(document: object) -> dict[str, ec.EllipticCurvePublicKey]:
    """``{"public_keys": [{"key_identifier", "key" (PEM), "is_current"}]}``: every P-256 key in
    it by its identifier (one no longer current still verifies what it signed). A list without
    a single usable key is no list."""
    entries = document.get("public_keys") if isinstance(document, dict) else None
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        identifier, pem = entry.get("key_identifier"), entry.get("key")
        if not isinstance(identifier, str) or not isinstance(pem, str) or not _IDENTIFIER.fullmatch(identifier):
            continue
        try:
            key = load_pem_public_key(pem.encode())
        except (ValueError, TypeError):
            continue
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            keys[identifier] = key
    if not keys:
        raise ScanningKeysUnavailable(
            "The secret-scanning key list holds no P-256 public key. Nothing was revoked; "
            "check TOKENSMITH_SECRET_SCANNING_KEYS_URL."
        )
    return keys


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _printable(text: str, limit: int) -> str:
    """What of a finding's words is kept and shown: printable characters, so many at most."""
    return "".join(char for char in text if char.isprintable())[:limit]


def revoke_found(
    session: Session, keys: ServerKeys, findings: Iterable[Finding], *, prefix: str, ip: str | None
) -> list[Verdict]:
    """Revoke every live token among ``findings``, with where it was found (its first finding's
    place), and label each finding: one query finds them all, one statement revokes them (each
    audited, its owner told)."""
    findings = list(findings)
    shaped = set()
    for finding in findings:
        try:
            token_format.parse(finding.token, prefix)
        except CredentialMalformed:
            continue
        shaped.add(finding.token)
    found = token_listing.tokens_among(session, keys, shaped)
    now, live = utcnow(), {}
    for finding in findings:
        row = found.get(finding.token)
        if row is None or row.id in live or row.revoked_at is not None:
            continue
        if row.expires_at is not None and row.expires_at <= now:
            continue  # it opens nothing any more
        live[row.id] = (
            row,
            {
                "url": _printable(finding.url, 2048),
                "source": _printable(finding.source, 100),
                "type": _printable(finding.type, 100),
            },
        )
    token_lifecycle.revoke_found_tokens(
        session, list(live.values()), actor=FINDER, reason=RevokeReason.SECRET_SCANNING, ip=ip
    )
    return [
        Verdict(
            token_hash(finding.token),
            finding.type,
            "true_positive" if finding.token in found else "false_positive",
        )
        for finding in findings
    ]
