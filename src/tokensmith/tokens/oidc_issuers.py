"""The CI platforms' OpenID Connect issuers, as the exchange needs them: their signing keys.

Only issuers some trusted publisher names are ever asked (the exchange looks for publishers
first): a stranger's ID token names any ``iss`` it likes, and this server must not fetch what a
stranger points it at. An issuer's discovery document (``ISSUER/.well-known/openid-configuration``)
names the issuer exactly and where its keys are (``jwks_uri``, on the issuer's own scheme, host
and port); its JWKS gives them. Both are fetched when first needed and kept in this process:
the keys for an hour, then fetched again; meanwhile, when a token names a key they lack (the
issuer rotated its keys), fetched again at most once a minute. While an issuer cannot be
reached, keys fetched within the last day keep being used; with none, the exchange answers 503.

Every fetch has limits (``FetchLimits``): the time to connect, between two reads and in all;
the size of a discovery document and of a JWKS, and its number of keys; no redirect is followed
and no compressed answer read. One fetch at a time per issuer: requests that need the same
issuer wait for that fetch's result. A fetch is blocking I/O: the exchange makes it in a thread,
never on the event loop, holding no connection to the store (workload_identity.py).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2
import orjson
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey

from tokensmith.errors import IssuerUnavailable
from tokensmith.tokens import id_tokens
from tokensmith.tokens.id_tokens import PublicKey

log = logging.getLogger("tokensmith.workload_identity")

FRESH_SECONDS = 3600.0  # keys are fetched again after this
REFETCH_SECONDS = 60.0  # at most this often for a key they lack
STALE_SECONDS = 86400.0  # while the issuer is down, keys this recent are still used
RETRY_SECONDS = 60.0  # and it is asked again after this
MAX_ISSUERS = 1000
MIN_RSA_BITS = 2048
KEY_TYPES: dict[str, type[PublicKey]] = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}


@dataclass(frozen=True)
class FetchLimits:
    connect: float = 3.0
    read: float = 5.0
    total: float = 10.0
    discovery_bytes: int = 64 * 1024
    jwks_bytes: int = 512 * 1024
    keys: int = 100


@dataclass(frozen=True)
class IssuerKeys:
    """An issuer's signing keys, as its JWKS published them."""

    issuer: str
    keys: tuple[PublicKey, ...]

    def find(self, key_id: str | None, algorithm: str) -> PublicKey | None:
        """The key a token names (``kid``); without a ``kid``, the one key of its algorithm."""
        if key_id is not None:
            return next((key for key in self.keys if key.kid == key_id), None)
        fitting = [key for key in self.keys if id_tokens.key_fits(key, algorithm)]
        return fitting[0] if len(fitting) == 1 else None


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    keys: IssuerKeys | None = None
    fetched_at: float = -math.inf
    refetched_at: float = -math.inf  # the last fetch for a key the keys lacked
    failed_at: float = -math.inf


class IssuerDirectory:
    """The keys of the issuers this process has needed, kept as the module's docstring says."""

    def __init__(self, *, limits: FetchLimits | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or FetchLimits()
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._guard = threading.Lock()
        self.fetches = 0  # JWKS fetched, for the benchmark and the tests

    def cached(self, issuer: str) -> IssuerKeys | None:
        """The issuer's keys without asking it: fresh ones, or recent ones while it is down."""
        entry = self._entries.get(issuer)
        if entry is None or entry.keys is None:
            return None
        now = self.clock()
        age = now - entry.fetched_at
        if age < FRESH_SECONDS or (age < STALE_SECONDS and now - entry.failed_at < RETRY_SECONDS):
            return entry.keys
        return None

    def may_refetch(self, issuer: str) -> bool:
        """Whether a key the keys lack may be looked for at the issuer now (once a minute)."""
        entry = self._entries.get(issuer)
        return entry is None or self.clock() - entry.refetched_at >= REFETCH_SECONDS

    def refresh(self, issuer: str, key_id: str | None = None) -> None:
        """Fetch the issuer's keys (``key_id``: because a token names a key they lack), unless
        another request did meanwhile; IssuerUnavailable when it cannot be done and no recent
        keys stand in (or a key a token names could not be looked for)."""
        entry = self._entry(issuer)
        with entry.lock:
            if key_id is None and self.cached(issuer) is not None:
                return
            if key_id is not None:
                held = self.cached(issuer)
                if (held is not None and held.find(key_id, "") is not None) or not self.may_refetch(issuer):
                    return
                entry.refetched_at = self.clock()
            try:
                keys = self.fetch(issuer)
            except IssuerUnavailable:
                entry.failed_at = self.clock()
                if key_id is None and entry.keys is not None and self.clock() - entry.fetched_at < STALE_SECONDS:
                    log.warning(
                        "issuer %s unreachable: its keys of %.0f s ago stay in use",
                        issuer[:255],
                        self.clock() - entry.fetched_at,
                    )
                    return
                raise
            entry.keys, entry.fetched_at, entry.failed_at = keys, self.clock(), -math.inf

    def _entry(self, issuer: str) -> _Entry:
        with self._guard:
            entry = self._entries.get(issuer)
            if entry is None:
                if len(self._entries) >= MAX_ISSUERS:
                    oldest = min(self._entries, key=lambda name: self._entries[name].fetched_at)
                    del self._entries[oldest]
                entry = self._entries[issuer] = _Entry()
            return entry

    # --- fetching -----------------------------------------------------------------------------

    def fetch(self, issuer: str) -> IssuerKeys:
        """The discovery document, then the JWKS it names: blocking, within the limits."""
        discovery = self._get_json(
            issuer,
            f"{issuer.rstrip('/')}/.well-known/openid-configuration",
            "discovery document",
            self.limits.discovery_bytes,
        )
        if discovery.get("issuer") != issuer:
            named = str(discovery.get("issuer"))[:100]
            raise _unavailable(issuer, f"its discovery document names the issuer {named!r}, not {issuer!r}")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not _same_origin(issuer, jwks_uri):
            raise _unavailable(
                issuer,
                "its discovery document points its keys (jwks_uri) elsewhere than the issuer's own scheme, "
                "host and port, which is not followed",
            )
        document = self._get_json(issuer, jwks_uri, "keys (JWKS)", self.limits.jwks_bytes)
        self.fetches += 1
        return IssuerKeys(issuer, self._keys_of(issuer, document))

    def _keys_of(self, issuer: str, document: dict[str, Any]) -> tuple[PublicKey, ...]:
        listed = document.get("keys")
        if not isinstance(listed, list):
            raise _unavailable(issuer, "its JWKS has no list of keys")
        if len(listed) > self.limits.keys:
            raise _unavailable(issuer, f"its JWKS lists {len(listed):,} keys; at most {self.limits.keys} are read")
        keys = [key for key in map(_public_key, listed) if key is not None]
        if not keys:
            raise _unavailable(issuer, "its JWKS holds no public signing key (RSA of 2,048 bits or more, EC, OKP)")
        return tuple(keys)

    def _get_json(self, issuer: str, url: str, what: str, limit: int) -> dict[str, Any]:
        limits = self.limits
        deadline = time.monotonic() + limits.total
        timeout = httpx2.Timeout(limits.read, connect=limits.connect)
        try:
            with (
                httpx2.Client(timeout=timeout, follow_redirects=False) as client,
                client.stream(
                    "GET", url, headers={"Accept": "application/json", "Accept-Encoding": "identity"}
                ) as answer,
            ):
                body = self._body(issuer, answer, what, limit, deadline)
        except httpx2.TimeoutException:
            raise _unavailable(issuer, f"its {what} did not come within {limits.read:g} seconds") from None
        except httpx2.HTTPError as error:
            raise _unavailable(issuer, f"it cannot be reached ({type(error).__name__})") from None
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _unavailable(issuer, f"its {what} is not JSON") from None
        if not isinstance(document, dict):
            raise _unavailable(issuer, f"its {what} is not a JSON object")
        return document

    def _body(self, issuer: str, answer: httpx2.Response, what: str, limit: int, deadline: float) -> bytes:
        if answer.status_code != 200:
            raise _unavailable(issuer, f"its {what} answered HTTP {answer.status_code}")
        if answer.headers.get("content-encoding", "identity").lower() != "identity":
            raise _unavailable(issuer, f"its {what} came compressed, though it was asked not to")
        declared = answer.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _unavailable(issuer, f"its {what} is {int(declared):,} bytes; at most {limit:,} are read")
        body = bytearray()
        for chunk in answer.iter_raw():
            body += chunk
            if len(body) > limit:
                raise _unavailable(issuer, f"its {what} is longer than the {limit:,} bytes that are read")
            if time.monotonic() > deadline:
                raise _unavailable(issuer, f"its {what} took longer than {self.limits.total:g} seconds")
        return bytes(body)


def _same_origin(issuer: str, url: str) -> bool:
    ours, theirs = urlsplit(issuer), urlsplit(url)
    return (ours.scheme, ours.hostname, ours.port) == (theirs.scheme, theirs.hostname, theirs.port) and bool(
        theirs.hostname
    )


def _public_key(listed: object) -> PublicKey | None:
    """One key of a JWKS, when it is an asymmetric key strong enough to sign with: symmetric
    (``oct``) keys, which a JWKS has no business publishing, and the unreadable are left out."""
    if not isinstance(listed, dict) or listed.get("kty") not in KEY_TYPES:
        return None
    public = {name: value for name, value in listed.items() if name not in ("d", "p", "q", "dp", "dq", "qi")}
    try:
        key = KEY_TYPES[listed["kty"]].import_key(public)
    except (JoseError, ValueError, TypeError, KeyError):
        return None
    if isinstance(key, RSAKey) and key.raw_value.key_size < MIN_RSA_BITS:
        return None
    return key


def _unavailable(issuer: str, why: str) -> IssuerUnavailable:
    log.warning("issuer %s unusable: %s", issuer[:255], why)
    return IssuerUnavailable(
        f"The CI's OpenID Connect issuer {issuer[:255]} cannot be used right now: {why}. Nothing was "
        "made; try again in a moment, and if it persists, tell an administrator."
    )
