"""A browser whose session was ended on the server signs in again, in Chromium.

Issue 18: after `tokensmith users set-password`, `users disable` or a SCIM deactivation, the
browser kept its dead session cookie; the sign-in page drew its CSRF token from that cookie while
POST /login checked the pre-sign-in cookie's, so every attempt was refused as an expired form
until the person cleared their cookies. Anyone who could plant a cookie could lock a person out
the same way. Each way here ends at My Tokens, signed in, with the cookies the browser had.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.support.ledger import remember
from tests.support.scim import SCIM_JSON, provider_client, provisioning_secret
from tests.support.servers import LiveServer

pytestmark = pytest.mark.browser
SCIM_SECRET = provisioning_secret()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with SCIM provisioning on, as a deployment with an identity provider has."""
    live = LiveServer(
        tmp_path_factory.mktemp("again") / "data", env={"TOKENSMITH_SCIM_TOKEN": SCIM_SECRET}, name="again"
    ).start()
    yield live
    live.stop()


@pytest.fixture
def context(chromium: Browser, server: LiveServer) -> Iterator[BrowserContext]:
    context = chromium.new_context(base_url=server.base_url)
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def new_password() -> str:
    return remember("pw-" + secrets.token_urlsafe(18))


def person(server: LiveServer) -> tuple[str, str]:
    username, password = f"again-{uuid.uuid4().hex[:8]}", new_password()
    server.create_user(username, password=password)
    return username, password


def sign_in(page: Page, username: str, password: str) -> None:
    page.goto("/tokens")  # where a person's bookmark leads: the sign-in page, while signed out
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def signs_in(page: Page, username: str, password: str) -> None:
    sign_in(page, username, password)
    expect(page.get_by_role("heading", name="My Tokens", level=1)).to_be_visible()
    expect(page.get_by_text(f"Signed in as {username}")).to_be_attached()


def cookie_names(context: BrowserContext, server: LiveServer) -> set[str]:
    return {cookie["name"] for cookie in context.cookies(server.base_url)}


def test_after_a_new_password_set_by_an_administrator(page: Page, context: BrowserContext, server: LiveServer) -> None:
    username, password = person(server)
    signs_in(page, username, password)
    reset = server.cli("users", "set-password", username, "--password-stdin", input=(changed := new_password()) + "\n")
    assert reset.returncode == 0, reset.stderr
    page.reload()  # the session ended: off to the sign-in page, the dead cookie still there
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    sign_in(page, username, password)  # the old password: refused as a wrong password, not as a form
    expect(page.get_by_role("alert")).not_to_contain_text("expired")
    signs_in(page, username, changed)
    assert "tokensmith_session" in cookie_names(context, server)


def test_after_the_account_was_disabled_and_enabled_again(page: Page, server: LiveServer) -> None:
    username, password = person(server)
    signs_in(page, username, password)
    assert server.cli("users", "disable", username).returncode == 0
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert server.cli("users", "enable", username).returncode == 0
    signs_in(page, username, password)


def test_after_a_deactivation_and_reactivation_by_scim(page: Page, server: LiveServer) -> None:
    username = f"scim-{uuid.uuid4().hex[:8]}"
    with provider_client(server, SCIM_SECRET) as idp:
        created = idp.post(
            "/Users",
            headers={"Content-Type": SCIM_JSON},
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": username,
                "emails": [{"value": f"{username}@example.test", "primary": True}],
                "active": True,
            },
        )
        assert created.status_code == 201, created.text
        password = new_password()  # where the provider does not sign people in, a local password
        assert server.cli("users", "set-password", username, "--password-stdin", input=password + "\n").returncode == 0
        signs_in(page, username, password)

        def active(value: bool) -> None:
            answer = idp.patch(
                f"/Users/{created.json()['id']}",
                headers={"Content-Type": SCIM_JSON},
                json={
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "value": {"active": value}}],
                },
            )
            assert answer.status_code == 200, answer.text

        active(False)
        page.reload()
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        active(True)
    signs_in(page, username, password)


@pytest.mark.parametrize(
    ("planted", "value"),
    [
        ("tokensmith_session", "planted-by-someone-else"),
        ("tokensmith_session", ""),
        ("tokensmith_presession", ""),
        ("tokensmith_presession", "not the shape of one"),
        ("tokensmith_presession", "A" * 32),  # one the planter knows: still only their own
    ],
)
def test_a_planted_cookie_locks_nobody_out(
    page: Page, context: BrowserContext, server: LiveServer, planted: str, value: str
) -> None:
    username, password = person(server)
    context.add_cookies([{"name": planted, "value": value, "url": server.base_url}])
    signs_in(page, username, password)


def test_signing_out_of_a_session_ended_meanwhile_leads_to_the_sign_in_page(page: Page, server: LiveServer) -> None:
    """A tab drawn before the session ended: its Sign out button still works."""
    username, password = person(server)
    signs_in(page, username, password)
    assert (
        server.cli("users", "set-password", username, "--password-stdin", input=new_password() + "\n").returncode == 0
    )
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
