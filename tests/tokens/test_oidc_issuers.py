"""The CI issuers' keys, fetched over real HTTP from the tests' own issuer on loopback: discovery
and JWKS, what is kept and for how long (a clock the test controls), rotations, outages, and every
hostile answer an issuer can give, each a clear IssuerUnavailable within seconds."""

from __future__ import annotations

import time

import pytest

from tests.support.ci_issuer import CiIssuer
from tokensmith.errors import IssuerUnavailable
from tokensmith.tokens import oidc_issuers
from tokensmith.tokens.oidc_issuers import FetchLimits, IssuerDirectory


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer():
    with CiIssuer().running() as running:
        yield running


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_keys_come_from_the_discovery_documents_jwks_and_are_kept(issuer, clock):
    directory = IssuerDirectory(clock=clock)
    assert directory.cached(issuer.issuer) is None
    directory.refresh(issuer.issuer)
    keys = directory.cached(issuer.issuer)
    assert keys is not None and {key.kid for key in keys.keys} == {"rsa-1", "ec-1"}
    assert keys.find("ec-1", "ES256").key_type == "EC" and keys.find(None, "RS256").kid == "rsa-1"
    assert issuer.discovery_fetches == 1 and issuer.jwks_fetches == 1
    directory.refresh(issuer.issuer)  # kept: nothing fetched again
    clock.now += oidc_issuers.FRESH_SECONDS - 1
    assert directory.cached(issuer.issuer) is keys and issuer.jwks_fetches == 1
    clock.now += 2  # an hour on: fetched again
    assert directory.cached(issuer.issuer) is None
    directory.refresh(issuer.issuer)
    assert issuer.jwks_fetches == 2


def test_a_key_the_keys_lack_is_looked_for_at_most_once_a_minute(issuer, clock):
    directory = IssuerDirectory(clock=clock)
    directory.refresh(issuer.issuer)
    rotated = issuer.rotate()
    assert directory.may_refetch(issuer.issuer)
    directory.refresh(issuer.issuer, rotated.kid)  # the issuer rotated: its new key is found at once
    assert directory.cached(issuer.issuer).find(rotated.kid, "RS256") is not None and issuer.jwks_fetches == 2
    directory.refresh(issuer.issuer, "forged-kid")  # within the minute of that fetch: not again
    assert issuer.jwks_fetches == 2 and not directory.may_refetch(issuer.issuer)
    clock.now += oidc_issuers.REFETCH_SECONDS
    assert directory.may_refetch(issuer.issuer)
    directory.refresh(issuer.issuer, "forged-kid")  # a minute on: looked for once…
    assert issuer.jwks_fetches == 3
    directory.refresh(issuer.issuer, "another-forged-kid")  # …and a flood of forged kids costs no more
    directory.refresh(issuer.issuer, "yet-another-forged-kid")
    assert issuer.jwks_fetches == 3
    directory.refresh(issuer.issuer, rotated.kid)  # a key it holds needs no fetch at all
    assert issuer.jwks_fetches == 3


def test_an_issuer_that_is_down_keeps_being_served_from_recent_keys_and_is_a_503_without(issuer, clock):
    cold = IssuerDirectory(clock=clock)
    warm = IssuerDirectory(clock=clock)
    warm.refresh(issuer.issuer)
    issuer.stop()
    try:
        with pytest.raises(IssuerUnavailable) as down:
            cold.refresh(issuer.issuer)
        assert "cannot be reached" in down.value.message and issuer.issuer in down.value.message
        clock.now += oidc_issuers.FRESH_SECONDS + 1  # stale: fetched again, which fails…
        warm.refresh(issuer.issuer)
        assert warm.cached(issuer.issuer) is not None  # …so yesterday's keys stand in
        with pytest.raises(IssuerUnavailable):  # a key they lack cannot be looked for: not a refusal
            warm.refresh(issuer.issuer, "rsa-9")
        clock.now += oidc_issuers.STALE_SECONDS
        with pytest.raises(IssuerUnavailable):
            warm.refresh(issuer.issuer)
        assert warm.cached(issuer.issuer) is None
    finally:
        issuer.restart()
    warm.refresh(issuer.issuer)  # back up: fetched again
    assert warm.cached(issuer.issuer) is not None


@pytest.mark.parametrize(
    "mode, words",
    [
        ("down", "answered HTTP 503"),
        ("wrong_issuer", "names the issuer 'https://elsewhere.example'"),
        ("jwks_elsewhere", "points its keys (jwks_uri) elsewhere"),
        ("huge_jwks", "lists 10,000 keys; at most 100 are read"),
        ("endless_jwks", "is 5,368,709,120 bytes; at most 524,288 are read"),
        ("chunked_jwks", "longer than the 524,288 bytes that are read"),
        ("redirect", "answered HTTP 302"),
        ("symmetric_jwks", "holds no public signing key"),
    ],
)
def test_a_hostile_issuer_is_unavailable_in_words_within_seconds(issuer, mode, words):
    issuer.mode = mode
    directory = IssuerDirectory()
    started = time.monotonic()
    with pytest.raises(IssuerUnavailable) as refused:
        directory.refresh(issuer.issuer)
    assert words in refused.value.message, refused.value.message
    assert directory.cached(issuer.issuer) is None
    assert time.monotonic() - started < 30  # no hang: the limits cut it short


def test_an_issuer_that_never_answers_times_out(issuer):
    issuer.mode = "silent"
    directory = IssuerDirectory(limits=FetchLimits(read=1.0, total=2.0))
    started = time.monotonic()
    with pytest.raises(IssuerUnavailable) as refused:
        directory.refresh(issuer.issuer)
    assert "did not come within 1 seconds" in refused.value.message
    assert time.monotonic() - started < 30


def test_an_issuer_nobody_listens_at_is_unreachable(clock):
    gone = CiIssuer()  # never started: nothing on its port
    with pytest.raises(IssuerUnavailable) as refused:
        IssuerDirectory(clock=clock).refresh(gone.issuer)
    assert "cannot be reached (ConnectError)" in refused.value.message
