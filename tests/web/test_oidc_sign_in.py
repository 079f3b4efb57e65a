"""Signing in through a real OpenID provider (node-oidc-provider on loopback).

The server runs as the reference platform does: browser sign-in only through the identity
provider (TOKENSMITH_LOCAL_LOGIN=false), so a token is the only credential anything else
takes. Chromium goes through the provider's own login and consent pages; tokens made on the
page then open git and curl; signing out ends the provider's session too.
"""

from __future__ import annotations

import html
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import update

from tests.conftest import unavailable
from tests.support.git import GitUser
from tests.support.ledger import remember
from tests.support.oidc_provider import OidcProvider, OidcProviderUnavailable, sign_in_with_forms
from tests.support.pages import csrf_of
from tests.support.servers import LiveServer
from tokensmith.accounts import users
from tokensmith.clock import utcnow
from tokensmith.store.models import BrowserSession

pytestmark = pytest.mark.slow  # starts an OpenID provider and servers of its own

PROVIDER_NAME = "Acme SSO"
# Okta's and Entra ID's subjects are opaque ids, not names.
ACCOUNTS = {
    "dana": {"sub": "00u1dana2subject3", "email": "dana@corp.example.test", "name": "Dana Scully"},
    "erin": {"sub": "00u2erin", "email": "erin@corp.example.test"},
    "admin": {"sub": "00u3impostor", "email": "impostor@corp.example.test"},
    "frank": {"sub": "00u4frank", "email": "frank@corp.example.test"},
    "grace.owner": {"sub": "00u5owner6of7the8box", "email": "grace.owner@corp.example.test"},
}


SCIM_TOKEN = remember("scim-secret-for-the-sign-in-tests-0123")


def start_pair(
    base, request: pytest.FixtureRequest, *, name: str, **provider_options
) -> tuple[OidcProvider, LiveServer]:
    """A provider and a Tokensmith registered at it, both stopped at the end."""
    live = LiveServer(base / "data", name=name, env={})  # not started: its URL is needed first
    idp = OidcProvider(
        base / "idp",
        redirect_uris=f"{live.base_url}/login/oidc/callback",
        post_logout_redirect_uris=f"{live.base_url}/login",
        accounts=ACCOUNTS,
        name=f"{name}-idp",
        **provider_options,
    )
    request.addfinalizer(idp.stop)
    try:
        idp.start()
    except OidcProviderUnavailable as error:
        unavailable(str(error))
    live.env.update(
        {
            "TOKENSMITH_OIDC_ISSUER": idp.issuer,
            "TOKENSMITH_OIDC_CLIENT_ID": idp.client_id,
            "TOKENSMITH_OIDC_CLIENT_SECRET": idp.client_secret,
            "TOKENSMITH_OIDC_PROVIDER_NAME": PROVIDER_NAME,
            "TOKENSMITH_LOCAL_LOGIN": "false",
            "TOKENSMITH_SCIM_TOKEN": SCIM_TOKEN,
        }
    )
    request.addfinalizer(live.stop)
    live.start()
    return idp, live


@pytest.fixture(scope="module")
def pair(request, tmp_path_factory) -> tuple[OidcProvider, LiveServer]:
    return start_pair(tmp_path_factory.mktemp("oidc-sign-in"), request, name="oidc")


@pytest.fixture(scope="module")
def server(pair) -> LiveServer:
    return pair[1]


@contextmanager
def signed_in_client(server: LiveServer, login: str) -> Iterator[httpx.Client]:
    """A browser-like client that went through the provider's pages as ``login``."""
    with server.client() as browser:
        start = browser.get("/login/oidc")
        back = sign_in_with_forms(browser, start.headers["location"], login)
        remember(parse_qs(urlsplit(back.headers["location"]).query)["code"][0])
        done = browser.get(back.headers["location"])
        assert done.status_code == 303, done.text
        remember(browser.cookies["tokensmith_idp"])  # the ID token, kept for sign-out only
        yield browser


# --- over HTTP ------------------------------------------------------------------------------------


def test_without_passwords_the_sign_in_page_has_only_the_provider(server):
    assert server.admin_password is None  # nobody could use one: none is made, none printed
    with server.client() as client:
        page = client.get("/login")
        assert f"Sign in with {PROVIDER_NAME}" in page.text
        assert 'type="password"' not in page.text
        posted = client.post("/login", data={"username": "admin", "password": "whatever it is"})
        assert posted.status_code == 403 and "Passwords are turned off" in posted.text


def test_the_first_start_says_how_the_first_administrator_gets_in_and_it_works(server):
    """Issue 18: with passwords off, nothing said how anyone would sign in as admin."""
    console = server.console()
    assert "First start: created user 'admin', an administrator without a password" in console
    assert "tokensmith users link admin --subject YOUR-SUBJECT" in console
    assert f'"Sign in with {PROVIDER_NAME}" at {server.base_url}/login opens admin' in console
    linked = server.cli("users", "link", "admin", "--subject", "00u5owner6of7the8box")
    assert linked.returncode == 0, linked.stderr
    with signed_in_client(server, "grace.owner") as browser:
        page = browser.get("/tokens").text
    assert "Signed in as <strong>admin</strong>" in page and 'href="/admin/tokens"' in page


def test_the_first_sign_in_creates_the_account_and_the_next_finds_it_by_subject(server):
    with signed_in_client(server, "erin") as browser:
        assert "Signed in as <strong>erin</strong>" in browser.get("/tokens").text
    user = server.user("erin")
    assert (user.origin, user.oidc_subject, user.email) == ("oidc", "00u2erin", "erin@corp.example.test")
    assert user.password_hash is None
    with signed_in_client(server, "erin"):
        pass
    assert server.user("erin").id == user.id


def test_signing_in_again_ends_the_session_it_replaces(server):
    with signed_in_client(server, "erin") as browser:
        first = browser.cookies["tokensmith_session"]
        start = browser.get("/login/oidc")  # the provider still knows erin: no form this time
        again = browser.get(sign_in_with_forms(browser, start.headers["location"], "erin").headers["location"])
        assert again.status_code == 303 and browser.cookies["tokensmith_session"] != first
    with server.client() as thief:
        thief.cookies.set("tokensmith_session", first)
        assert thief.get("/tokens").status_code == 303


def test_a_local_account_with_the_same_name_is_not_taken_over(server):
    with server.client() as browser:
        start = browser.get("/login/oidc")
        back = sign_in_with_forms(browser, start.headers["location"], "admin")
        page = browser.get(back.headers["location"])
    assert page.status_code == 400
    assert "An account named &#39;admin&#39; already exists" in page.text
    assert "tokensmith users link admin --subject 00u3impostor" in page.text
    assert server.user("admin").oidc_subject != "00u3impostor"  # (another test may have linked admin)


def test_a_code_redeemed_once_cannot_be_redeemed_again(server):
    with server.client() as browser:
        start = browser.get("/login/oidc")
        pending = browser.cookies["tokensmith_oidc"]
        back = sign_in_with_forms(browser, start.headers["location"], "frank")
        assert browser.get(back.headers["location"]).status_code == 303
    with server.client() as replay:
        replay.cookies.set("tokensmith_oidc", pending, path="/login/oidc")
        page = replay.get(back.headers["location"])
    assert page.status_code == 400 and "used already" in page.text
    assert "tokensmith_session" not in page.cookies


def test_passwords_open_nothing_and_tokens_are_the_credential(server):
    server.cli("users", "create", "svc-bot", "--email", "svc@corp.example.test")
    token = server.create_token("svc-bot", "deploy")
    with server.client() as client:
        assert client.get("/api/v1/me", auth=("svc-bot", token)).status_code == 200
        refused = client.get("/api/v1/me", auth=("svc-bot", "a password of some length"))
        assert refused.status_code == 401 and "Passwords are not accepted here" in refused.json()["message"]


def test_deactivation_at_the_provider_ends_the_session_and_every_token(server):
    """The gap the issue closes: the person leaves, the provider's SCIM call deactivates them,
    and their browser session and tokens stop on the next request. Reactivation lets them
    sign in again, without the old tokens."""
    scim = {"Authorization": f"Bearer {SCIM_TOKEN}", "Content-Type": "application/scim+json"}
    deactivate = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": False}}],
    }
    with signed_in_client(server, "gina") as browser, server.client() as provider:
        token = server.create_token("gina", "laptop")
        assert browser.get("/tokens").status_code == 200
        found = provider.get("/scim/v2/Users", params={"filter": 'userName eq "gina"'}, headers=scim).json()
        user_id = found["Resources"][0]["id"]
        assert provider.patch(f"/scim/v2/Users/{user_id}", json=deactivate, headers=scim).json()["active"] is False

        assert browser.get("/tokens").headers["location"] == "/login?next=%2Ftokens"
        refused = provider.get("/api/v1/me", auth=("gina", token))
        assert refused.status_code == 401 and "the account was disabled" in refused.json()["message"]
        start = browser.get("/login/oidc")
        back = sign_in_with_forms(browser, start.headers["location"], "gina")
        page = browser.get(back.headers["location"])
        assert page.status_code == 400 and "is disabled" in page.text

        deactivate["Operations"][0]["value"]["active"] = True
        assert provider.patch(f"/scim/v2/Users/{user_id}", json=deactivate, headers=scim).json()["active"] is True
    with signed_in_client(server, "gina") as browser:
        assert "Signed in as <strong>gina</strong>" in browser.get("/tokens").text
        assert browser.get("/api/v1/me", auth=("gina", token)).status_code == 401


def test_profile_claims_are_read_from_userinfo_when_the_id_token_leaves_them_out(request, tmp_path):
    _idp, live = start_pair(tmp_path, request, name="thin", thin_id_tokens=True)
    with signed_in_client(live, "dana"):
        pass
    user = live.user("dana")
    assert (user.email, user.display_name, user.oidc_subject) == (
        "dana@corp.example.test",
        "Dana Scully",
        "00u1dana2subject3",
    )


def test_a_provider_that_rotated_its_signing_key_is_followed(request, tmp_path):
    """The provider restarts with a new key: the ID token names a key id Tokensmith has not
    seen, and it fetches the provider's keys again instead of refusing the sign-in."""
    idp, live = start_pair(tmp_path, request, name="rotation")
    with signed_in_client(live, "erin"):
        pass
    kids_before = {key["kid"] for key in httpx.get(idp.discovery()["jwks_uri"]).json()["keys"]}
    idp.restart()  # a new signing key (and no sessions)
    kids_after = {key["kid"] for key in httpx.get(idp.discovery()["jwks_uri"]).json()["keys"]}
    assert kids_before.isdisjoint(kids_after)
    with signed_in_client(live, "erin"):
        pass
    assert "Traceback" not in live.console()


# --- in the browser -------------------------------------------------------------------------------


def sign_in_at_provider(page: Page, login: str) -> None:
    page.goto("/login")
    page.get_by_role("link", name=f"Sign in with {PROVIDER_NAME}").click()
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("anything at all")
    page.get_by_role("button", name="Sign-in").click()


@pytest.mark.browser
def test_a_person_signs_in_at_the_provider_makes_a_token_and_uses_it_then_signs_out(chromium, server, pair, tmp_path):
    idp, _ = pair
    context = chromium.new_context(base_url=server.base_url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        page.goto("/login")
        expect(page.get_by_label("Password")).to_have_count(0)
        sign_in_at_provider(page, "dana")
        expect(page).to_have_url(re.compile(f"^{re.escape(idp.issuer)}/interaction/"))
        page.get_by_role("button", name="Continue").click()  # the provider's consent page

        expect(page.get_by_role("heading", name="My Tokens", level=1)).to_be_visible()
        expect(page.get_by_text("Signed in as dana")).to_be_visible()
        page.get_by_label("Token name").fill("laptop")
        page.get_by_role("button", name="Create token").click()
        token = remember(page.get_by_test_id("new-token").inner_text().strip())

        curl = subprocess.run(
            ["curl", "-sS", "-u", f"dana:{token}", f"{server.base_url}/api/v1/me"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert '"username":"dana"' in curl.stdout, curl.stdout + curl.stderr
        assert server.cli("projects", "add-member", "demo", "dana").returncode == 0
        dana = GitUser(tmp_path / "dana", "dana", token)
        dana.remember_credentials(server.base_url)
        cloned = dana.git("clone", f"{server.base_url}/git/demo.git", str(tmp_path / "demo"))
        assert (tmp_path / "demo" / ".git").is_dir(), cloned.stderr

        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("button", name="Yes, sign me out").click()  # the provider asks
        expect(page).to_have_url(f"{server.base_url}/login")
        assert "tokensmith_session" not in {cookie["name"] for cookie in context.cookies(server.base_url)}
        page.goto("/tokens")
        expect(page).to_have_url(f"{server.base_url}/login?next=%2Ftokens")
        # The provider's session ended too: signing in again asks for the login again.
        page.get_by_role("link", name=f"Sign in with {PROVIDER_NAME}").click()
        expect(page.locator("input[name=login]")).to_be_visible()

        # Signing out of Tokensmith did not touch the token: tools keep working.
        with server.client() as client:
            assert client.get("/api/v1/me", auth=("dana", token)).status_code == 200
    finally:
        context.close()


def test_past_fifteen_minutes_the_provider_is_asked_again_with_max_age(server):
    """A person of the identity provider whose sign-in is older than 15 minutes goes through
    the provider again (max_age=900, which the real provider honours with a recent auth_time)
    before a token is made."""
    with signed_in_client(server, "hank") as browser:
        with server.store() as session:
            hank = users.get_user(session, "hank")
            session.execute(
                update(BrowserSession)
                .where(BrowserSession.user_id == hank.id)
                .values(authenticated_at=utcnow() - timedelta(minutes=16))
            )
        form = {"name": "after a while", "csrf_token": csrf_of(browser.get("/tokens"))}
        asked = browser.post("/tokens", data=form)
        assert asked.status_code == 401 and "Confirm it is you" in asked.text
        assert 'type="password"' not in asked.text and "Sign in again with Acme SSO" in asked.text
        link = html.unescape(re.search(r'href="(/login/oidc\?[^"]+)"', asked.text).group(1))
        start = browser.get(link)
        assert parse_qs(urlsplit(start.headers["location"]).query)["max_age"] == ["900"]
        back = sign_in_with_forms(browser, start.headers["location"], "hank")
        remember(parse_qs(urlsplit(back.headers["location"]).query)["code"][0])
        returned = browser.get(back.headers["location"]).headers["location"]
        remember(browser.cookies["tokensmith_idp"])
        assert returned.startswith("/tokens?name=after+a+while&")  # with what was typed
        page = browser.get(returned)
        assert 'name="name" value="after a while"' in page.text
        form["csrf_token"] = csrf_of(page)  # a new session: a new CSRF token
        made = browser.post("/tokens", data=form)
        assert made.status_code == 201, made.text
        remember(made.text.split('data-testid="new-token" id="new-token">')[1].split("<")[0])
