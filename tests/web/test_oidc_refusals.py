"""What Tokensmith refuses at the end of a sign-in through the identity provider.

A provider that misbehaves on purpose (tests/support/rogue_provider.py) sends the ID tokens
a real provider never would; each must end on the sign-in page saying what went wrong, with
no session, no server error, and nothing of the code or token in the server's log.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.support.ledger import remember
from tests.support.ports import free_port
from tests.support.rogue_provider import CLIENT_ID, RogueProvider
from tests.support.servers import LiveServer
from tokensmith.web.templates import SESSION_COOKIE


def provider_env(issuer: str) -> dict[str, str]:
    return {
        "TOKENSMITH_OIDC_ISSUER": issuer,
        "TOKENSMITH_OIDC_CLIENT_ID": CLIENT_ID,
        "TOKENSMITH_OIDC_CLIENT_SECRET": remember("rogue-client-secret-0123456789"),
        "TOKENSMITH_OIDC_PROVIDER_NAME": "Rogue IdP",
    }


@pytest.fixture(scope="module")
def rogue(tmp_path_factory):
    provider = RogueProvider()
    with provider.running():
        yield provider


@pytest.fixture(scope="module")
def server(rogue, tmp_path_factory):
    live = LiveServer(
        tmp_path_factory.mktemp("oidc-refusals") / "data", env=provider_env(rogue.issuer), name="oidc-refusals"
    ).start()
    yield live
    live.stop()
    assert "Traceback" not in live.console()


@pytest.fixture(autouse=True)
def honest_again(rogue):
    yield
    rogue.mode = "honest"


def to_callback(browser: httpx.Client, rogue: RogueProvider, next_path: str = "/tokens") -> str:
    """Start signing in and go through the provider; the URL it sends the browser back to."""
    start = browser.get("/login/oidc", params={"next": next_path})
    assert start.status_code == 303, start.text
    authorize = start.headers["location"]
    assert authorize.startswith(f"{rogue.issuer}/authorize?")
    answer = httpx.get(authorize)
    assert answer.status_code == 302
    return answer.headers["location"]


def refused(page: httpx.Response, status: int, *words: str) -> None:
    assert page.status_code == status, page.text
    assert "Sign in with Rogue IdP" in page.text  # back on the sign-in page, able to retry
    for word in words:
        assert word in page.text
    assert SESSION_COOKIE not in page.cookies


def test_the_authorization_request_carries_pkce_state_and_nonce(server, rogue):
    with server.client() as browser:
        start = browser.get("/login/oidc")
    query = parse_qs(urlsplit(start.headers["location"]).query)
    assert query["response_type"] == ["code"] and query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == [f"{server.base_url}/login/oidc/callback"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert len(query["state"][0]) >= 32 and len(query["nonce"][0]) >= 32
    assert set(query["scope"][0].split()) == {"openid", "profile", "email"}
    cookie = start.headers["set-cookie"]
    assert "tokensmith_oidc=" in cookie and "HttpOnly" in cookie and "Path=/login/oidc" in cookie
    assert query["state"][0] not in cookie  # the browser's copy is sealed, not readable as is


def test_an_honest_provider_signs_the_person_in(server, rogue):
    with server.client() as browser:
        done = browser.get(to_callback(browser, rogue, next_path="/applications"))
        assert done.status_code == 303 and done.headers["location"] == "/applications"
        page = browser.get("/tokens")
        assert page.status_code == 200 and "rogue.user" in page.text


@pytest.mark.parametrize(
    "mode, status, words",
    [
        ("wrong_key", 400, "signature does not match"),
        ("expired", 400, "it has expired"),
        ("wrong_audience", 400, "issued to another application"),
        ("wrong_nonce", 400, "does not belong to this sign-in (nonce)"),
        ("wrong_issuer", 400, "issued by another provider"),
        ("unsigned", 400, "identity token from Rogue IdP was refused"),
        ("garbage_token", 400, "not a well-formed signed token"),
        ("no_id_token", 502, "answered without an ID token"),
        ("token_endpoint_broken", 502, "its token endpoint answered HTTP 500"),
        ("token_answer_odd", 502, "answered without an ID token"),
    ],
)
def test_a_bad_id_token_is_refused_with_the_reason(server, rogue, mode, status, words):
    rogue.mode = mode
    with server.client() as browser:
        page = browser.get(to_callback(browser, rogue))
        refused(page, status, words)
        assert browser.get("/tokens").status_code == 303  # not signed in


def test_a_state_that_does_not_match_is_refused_before_the_code_is_redeemed(server, rogue):
    with server.client() as browser:
        callback = urlsplit(to_callback(browser, rogue))
        query = {key: values[0] for key, values in parse_qs(callback.query).items()}
        before = rogue.token_requests
        page = browser.get(f"{callback.path}?{urlencode({**query, 'state': 'forged-state-value'})}")
        refused(page, 400, "state mismatch")
        assert rogue.token_requests == before


def test_an_answer_naming_another_issuer_is_refused(server, rogue):
    """RFC 9207's iss parameter: an answer from another provider (mix-up) is not redeemed."""
    with server.client() as browser:
        callback = urlsplit(to_callback(browser, rogue))
        before = rogue.token_requests
        page = browser.get(f"{callback.path}?{callback.query}&iss=https%3A%2F%2Fevil.example")
        refused(page, 400, "comes from another identity provider")
        assert rogue.token_requests == before


def test_a_callback_in_another_browser_is_refused(server, rogue):
    with server.client() as browser, server.client() as other_browser:
        page = other_browser.get(to_callback(browser, rogue))
        refused(page, 400, "not started from this browser")


def test_a_tampered_pending_cookie_is_refused(server, rogue):
    with server.client() as browser:
        callback = to_callback(browser, rogue)
        sealed = browser.cookies["tokensmith_oidc"]
        browser.cookies.clear()
        browser.cookies.set("tokensmith_oidc", sealed[:-4] + "0000", path="/login/oidc")
        refused(browser.get(callback), 400, "not started from this browser")


def test_a_replayed_code_is_refused(server, rogue):
    with server.client() as browser:
        callback = to_callback(browser, rogue)
        sealed = browser.cookies["tokensmith_oidc"]
        assert browser.get(callback).status_code == 303
        with server.client() as attacker:  # same cookie, same code: the provider refuses it
            attacker.cookies.set("tokensmith_oidc", sealed, path="/login/oidc")
            refused(attacker.get(callback), 400, "used already")


def test_the_provider_saying_no_is_shown(server, rogue):
    with server.client() as browser:
        callback = urlsplit(to_callback(browser, rogue))
        state = parse_qs(callback.query)["state"][0]
        page = browser.get(callback.path, params={"error": "access_denied", "state": state})
        refused(page, 400, "did not let you sign in")


@pytest.fixture
def broken_provider(tmp_path):
    """A provider of the test's own, whose discovery document can be broken."""
    provider = RogueProvider()
    with provider.running():
        live = LiveServer(tmp_path / "data", env=provider_env(provider.issuer), name="broken").start()
        try:
            yield provider, live
        finally:
            live.stop()


def test_a_provider_answering_garbage_gets_a_page_that_says_so(broken_provider):
    provider, live = broken_provider
    with live.client() as browser:
        for discovery, words in [
            ("500", "answered HTTP 500"),
            ("not_json", "is not JSON"),
            ("garbage", "lacks issuer, authorization_endpoint, token_endpoint, jwks_uri"),
            ("wrong_issuer", "names the issuer &#39;https://elsewhere.example&#39;"),
        ]:
            provider.discovery = discovery
            refused(browser.get("/login/oidc"), 502, "Sign-in with Rogue IdP is not possible right now", words)
        provider.discovery = "ok"
        provider.mode = "jwks_garbage"
        refused(browser.get(to_callback(browser, provider)), 502, "its signing keys (JWKS) cannot be read")
        provider.mode = "honest"  # back up: sign-in works again, nothing broken was cached
        assert browser.get(to_callback(browser, provider)).status_code == 303
    assert "Traceback" not in live.console()


def test_a_provider_that_is_down_gets_a_page_that_says_so(tmp_path):
    nobody = f"http://127.0.0.1:{free_port()}"
    live = LiveServer(tmp_path / "data", env=provider_env(nobody), name="down").start()
    try:
        with live.client() as browser:
            refused(browser.get("/login/oidc"), 502, "cannot be reached (ConnectError)")
    finally:
        live.stop()


def test_a_re_authentication_sends_max_age_and_refuses_a_stale_or_missing_auth_time(server, rogue):
    """Creating a token needs a sign-in within 15 minutes: the provider is asked for one
    (max_age=900), and a provider that answers with an older sign-in, or does not say when it
    was, is refused."""
    claims = dict(rogue.claims)
    try:
        for auth_time, words in (
            (int(time.time()) - 3600, "did not ask you to sign in again"),
            (None, "lacks the &#39;auth_time&#39; claim"),
        ):
            rogue.claims = {**claims, **({"auth_time": auth_time} if auth_time else {})}
            with server.client() as browser:
                start = browser.get("/login/oidc", params={"next": "/tokens", "reauth": "true"})
                assert parse_qs(urlsplit(start.headers["location"]).query)["max_age"] == ["900"]
                back = httpx.get(start.headers["location"]).headers["location"]
                refused(browser.get(back), 400, words)
        with server.client() as browser:  # an ordinary sign-in asks for no max_age
            assert "max_age" not in parse_qs(urlsplit(browser.get("/login/oidc").headers["location"]).query)
    finally:
        rogue.claims = claims
