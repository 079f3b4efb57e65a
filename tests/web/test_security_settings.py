"""The Security page and the second step in a real browser: Debian's chromium with a virtual
WebAuthn authenticator (Chrome DevTools Protocol, ``WebAuthn.addVirtualAuthenticator``).

The server's public URL is http://localhost:PORT, as `make serve`'s default stands for on a
person's machine: browsers refuse passkeys on an IP address, and localhost is a secure context.
Chromium resolves localhost to 127.0.0.1 only. Codes of the authenticator app are computed here
(RFC 6238, its dozen lines below), independently of the server's library. Mail goes to a real
SMTP server on loopback; tokens made before are used over HTTP throughout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import secrets
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from sqlalchemy import select, update

from tests.conftest import unavailable
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, chromium_missing
from tests.support.ledger import remember
from tests.support.servers import LiveServer
from tests.support.smtp import SmtpServer, text_of, to
from tokensmith.accounts import second_factors, totp, users
from tokensmith.clock import utcnow
from tokensmith.config import load_settings
from tokensmith.store.models import AuditEvent, AuthenticatorApp, BrowserSession
from tokensmith.store.server_keys import load_server_keys

pytestmark = pytest.mark.browser

_people = itertools.count(1)


# --- servers, browser, people ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def localhost_server(base, name: str, **env: str) -> LiveServer:
    live = LiveServer(base / "data", name=name, env=env)
    live.env["TOKENSMITH_PUBLIC_URL"] = f"http://localhost:{live.port}"
    return live.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer) -> Iterator[LiveServer]:
    live = localhost_server(
        tmp_path_factory.mktemp("second-factors"),
        "second-factors",
        TOKENSMITH_SMTP_URL=smtp.url,
        TOKENSMITH_MAIL_FROM="Tokensmith <tokens@tokensmith.test>",
        TOKENSMITH_MAIL_POLL_SECONDS="0.2",
    )
    yield live
    live.stop()


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = localhost_server(tmp_path_factory.mktemp("require-2fa"), "require-2fa", TOKENSMITH_REQUIRE_2FA="true")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's chromium, resolving localhost to 127.0.0.1 alone (the servers listen there)."""
    if chromium_missing():
        unavailable(chromium_missing() or "")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP localhost 127.0.0.1"],
        )
        yield browser
        browser.close()


def origin(server: LiveServer) -> str:
    return f"http://localhost:{server.port}"


@pytest.fixture
def context(chromium: Browser, server: LiveServer) -> Iterator[BrowserContext]:
    context = chromium.new_context(base_url=origin(server))
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """A page with a virtual authenticator: internal, resident keys, user verification, and a
    person who always says yes."""
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return page


def a_person(server: LiveServer) -> tuple[str, str]:
    username = f"sf-{next(_people)}-{secrets.token_hex(3)}"
    password = remember("pw-" + secrets.token_urlsafe(18))
    server.create_user(username, password=password)
    return username, password


# --- what a person does ----------------------------------------------------------------------------


def sign_in(page: Page, username: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def to_security(page: Page) -> None:
    page.get_by_role("link", name="Security", exact=True).click()
    expect(page.get_by_role("heading", name="Security", level=1)).to_be_visible()


def at_my_tokens(page: Page) -> None:
    expect(page.get_by_role("heading", name="My Tokens", level=1)).to_be_visible()


def add_passkey(page: Page, name: str) -> list[str]:
    """Add a passkey on the Security page; the recovery codes shown, if any."""
    page.get_by_label("Passkey name").fill(name)
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.get_by_role("status")).to_have_text(f"Your passkey “{name}” was added.")
    return page.get_by_test_id("recovery-codes").locator("code").all_inner_texts()


def code_at(secret: str, step: int) -> str:
    """RFC 6238 (HOTP of RFC 4226 over the time step): what any authenticator app shows."""
    key = base64.b32decode(secret.replace(" ", ""))
    digest = hmac.new(key, step.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return f"{(int.from_bytes(digest[offset : offset + 4], 'big') & 0x7FFFFFFF) % 1_000_000:06d}"


def current_step(margin: float = 20) -> int:
    """This 30-second step, waiting for the next one if fewer than 30 - ``margin`` seconds of it
    are left (so that what a test computes stays in the step it meant)."""
    if time.time() % 30 > margin:
        time.sleep(30 - time.time() % 30 + 0.2)
    return int(time.time() // 30)


def enrol_app_in_the_store(server: LiveServer, username: str) -> tuple[str, list[str]]:
    """An authenticator app added as the page adds one (its secret, its recovery codes), for the
    tests that are about signing in with it."""
    keys = load_server_keys(load_settings(server.env))
    with server.store() as session:
        user = users.get_user(session, username)
        secret = totp.start_enrolment(session, keys, user.id)
        codes = second_factors.confirm_app(session, keys, user, code_at(secret, int(time.time() // 30) - 1), ip=None)
    return secret, codes


def second_step_with(page: Page, code: str) -> None:
    expect(page.get_by_role("heading", name="Second step")).to_be_visible()
    page.get_by_label("Authentication code").fill(code)
    page.get_by_role("button", name="Verify").click()


def call_me(server: LiveServer, username: str, token: str) -> int:
    return httpx.get(f"{server.base_url}/api/v1/me", auth=(username, token), timeout=30).status_code


def events_of(server: LiveServer, username: str, action: str) -> list[AuditEvent]:
    with server.store() as session:
        user = users.get_user(session, username)
        rows = list(
            session.scalars(select(AuditEvent).where(AuditEvent.user_id == user.id, AuditEvent.action == action))
        )
        session.expunge_all()
    return rows


def signed_in_long_ago(server: LiveServer, username: str) -> None:
    """The person's sessions signed in an hour ago: past the 15 minutes that minting needs."""
    with server.store() as session:
        user = users.get_user(session, username)
        session.execute(
            update(BrowserSession)
            .where(BrowserSession.user_id == user.id)
            .values(authenticated_at=utcnow() - timedelta(hours=1))
        )


# --- passkeys ----------------------------------------------------------------------------------------


def test_a_passkey_is_added_signs_in_alone_and_is_removed(page: Page, server: LiveServer, smtp: SmtpServer) -> None:
    username, password = a_person(server)
    token = server.create_token(username, "laptop git")
    sign_in(page, username, password)
    at_my_tokens(page)
    to_security(page)
    codes = add_passkey(page, "Laptop")
    assert len(codes) == 10 and len(set(codes)) == 10
    row = page.get_by_role("table", name="Your passkeys").get_by_role("row").filter(has_text="Laptop")
    expect(row).to_contain_text("never")
    (added,) = smtp.mailbox.wait_for(
        lambda m: to(f"{username}@example.test")(m) and "second factor was added" in m["Subject"]
    )
    assert "Second factor added: passkey “Laptop”." in text_of(added) and not set(codes) & set(text_of(added).split())
    assert call_me(server, username, token) == 200

    sign_out(page)
    page.get_by_role("button", name="Sign in with a passkey").click()
    at_my_tokens(page)
    assert events_of(server, username, "session.started")[-1].details == {"second_step": "passkey"}
    to_security(page)
    expect(row).not_to_contain_text("never")

    row.get_by_role("button", name="Remove").click()
    page.get_by_role("button", name="Yes, remove “Laptop”").click()
    expect(page.get_by_role("status")).to_have_text("The passkey was removed.")
    expect(page.get_by_text("No passkey yet")).to_be_visible()
    smtp.mailbox.wait_for(lambda m: to(f"{username}@example.test")(m) and "second factor was removed" in m["Subject"])

    sign_out(page)
    page.get_by_role("button", name="Sign in with a passkey").click()  # the authenticator still holds it
    expect(page.get_by_role("alert")).to_contain_text("This passkey is not registered here")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    sign_in(page, username, password)  # no factor left: the password alone, as before
    at_my_tokens(page)
    assert call_me(server, username, token) == 200


def test_passkeys_at_127_0_0_1_point_to_localhost(chromium: Browser, server: LiveServer) -> None:
    """The same server reached at 127.0.0.1 (no relying party can be an IP address): the sign-in
    page offers no passkey button there, and says where passkeys work."""
    context = chromium.new_context(base_url=server.base_url)
    try:
        page = context.new_page()
        page.goto("/login")
        expect(page.get_by_role("button", name="Sign in with a passkey")).to_have_count(0)
        expect(page.get_by_role("link", name=origin(server))).to_be_visible()
    finally:
        context.close()


# --- the authenticator app ---------------------------------------------------------------------------


def test_an_authenticator_app_with_codes_of_the_previous_and_the_next_window_each_once(
    page: Page, server: LiveServer
) -> None:
    username, password = a_person(server)
    token = server.create_token(username, "ci")
    step = current_step()
    sign_in(page, username, password)
    to_security(page)
    page.get_by_role("button", name="Add an authenticator app").click()
    expect(page.get_by_label("QR code for your authenticator app").locator("svg")).to_be_visible()
    secret = remember(page.get_by_test_id("totp-secret").inner_text().replace(" ", ""))
    page.get_by_label("Authentication code").fill(code_at(secret, step - 1))  # the previous window: accepted
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("status")).to_have_text("Your authenticator app was added.")
    expect(page.get_by_test_id("recovery-codes").locator("code")).to_have_count(10)
    with server.store() as session:
        stored = session.get(AuthenticatorApp, users.get_user(session, username).id)
        assert (
            stored is not None and secret.encode() not in stored.secret and secret.lower().encode() not in stored.secret
        )

    sign_out(page)
    sign_in(page, username, password)
    second_step_with(page, code_at(secret, step - 1))  # replayed
    expect(page.get_by_role("alert")).to_contain_text("or was used already")
    second_step_with(page, code_at(secret, step + 2))  # a minute ahead: outside the window
    expect(page.get_by_role("alert")).to_contain_text("That code is not right")
    second_step_with(page, code_at(secret, step + 1))  # the next window: accepted
    at_my_tokens(page)
    assert events_of(server, username, "session.started")[-1].details == {"second_step": "authenticator app"}
    assert len(events_of(server, username, "2fa.second_step_failed")) == 2
    assert call_me(server, username, token) == 200


def test_a_wrong_code_ten_times_is_throttled(page: Page, server: LiveServer) -> None:
    username, password = a_person(server)
    secret, _codes = enrol_app_in_the_store(server, username)
    step = current_step()
    right = {code_at(secret, step + delta) for delta in (-1, 0, 1)}
    wrong = (f"{number:06d}" for number in range(1_000_000) if f"{number:06d}" not in right)
    sign_in(page, username, password)
    for _attempt in range(10):
        second_step_with(page, next(wrong))
        expect(page.get_by_role("alert")).to_contain_text("That code is not right")
    second_step_with(page, code_at(secret, step + 1))  # right, but too late
    expect(page.get_by_role("alert")).to_contain_text("Too many failed sign-ins. Wait")
    expect(page.get_by_role("heading", name="Second step")).to_be_visible()
    assert "tokensmith_session" not in {cookie["name"] for cookie in page.context.cookies()}


# --- recovery codes ----------------------------------------------------------------------------------


def test_recovery_codes_work_once_each_and_new_ones_replace_them(
    page: Page, server: LiveServer, smtp: SmtpServer
) -> None:
    username, password = a_person(server)
    _secret, codes = enrol_app_in_the_store(server, username)
    sign_in(page, username, password)
    second_step_with(page, codes[0].upper())  # as typed from paper: case does not matter
    at_my_tokens(page)
    smtp.mailbox.wait_for(lambda m: to(f"{username}@example.test")(m) and "recovery code was used" in m["Subject"])
    sign_out(page)

    sign_in(page, username, password)
    second_step_with(page, codes[0])
    expect(page.get_by_role("alert")).to_contain_text("neither your authenticator app's code nor one of your unused")
    second_step_with(page, codes[1])
    at_my_tokens(page)
    to_security(page)
    expect(page.get_by_text("8 of 10 recovery codes left")).to_be_visible()
    page.get_by_role("button", name="Generate new recovery codes").click()
    fresh = page.get_by_test_id("recovery-codes").locator("code").all_inner_texts()
    assert len(fresh) == 10 and not set(fresh) & set(codes)
    sign_out(page)

    sign_in(page, username, password)
    second_step_with(page, codes[2])  # made before: no longer works
    expect(page.get_by_role("alert")).to_contain_text("unused recovery codes")
    second_step_with(page, fresh[0])
    at_my_tokens(page)


# --- re-authentication before minting ------------------------------------------------------------------


def test_minting_after_a_while_is_confirmed_with_a_code_or_a_passkey(page: Page, server: LiveServer) -> None:
    username, password = a_person(server)
    sign_in(page, username, password)
    to_security(page)
    add_passkey(page, "Phone")
    secret, _codes = enrol_app_in_the_store(server, username)

    signed_in_long_ago(server, username)
    page.get_by_role("link", name="My Tokens").click()
    page.get_by_label("Token name").fill("after a code")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    page.get_by_label("Authentication code").fill(code_at(secret, current_step(25) + 1))
    page.get_by_role("button", name="Confirm with the code").click()
    assert call_me(server, username, remember(page.get_by_test_id("new-token").inner_text().strip())) == 200

    signed_in_long_ago(server, username)
    page.goto("/tokens")
    page.get_by_label("Token name").fill("after a passkey")
    page.get_by_role("button", name="Create token").click()
    page.get_by_role("button", name="Confirm with a passkey").click()
    assert call_me(server, username, remember(page.get_by_test_id("new-token").inner_text().strip())) == 200
    confirmed = [
        event.details.get("confirmed_with") for event in events_of(server, username, "session.reauthenticated")
    ]
    assert confirmed == ["authenticator app", "passkey"]


# --- the policy and the reset ---------------------------------------------------------------------------


def test_required_second_factor_comes_before_anything_else(chromium: Browser, strict_server: LiveServer) -> None:
    username, password = a_person(strict_server)
    token = strict_server.create_token(username, "tool")
    context = chromium.new_context(base_url=origin(strict_server))
    try:
        page = context.new_page()
        sign_in(page, username, password)
        expect(page.get_by_role("heading", name="Security", level=1)).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("This server requires a second factor")
        for elsewhere in ("/tokens", "/applications", "/security-log", "/device"):
            page.goto(elsewhere)
            expect(page.get_by_role("heading", name="Security", level=1)).to_be_visible()
        assert call_me(strict_server, username, token) == 200  # tools are not held up
        page.get_by_role("button", name="Add an authenticator app").click()
        secret = remember(page.get_by_test_id("totp-secret").inner_text().replace(" ", ""))
        page.get_by_label("Authentication code").fill(code_at(secret, current_step()))
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("status")).to_have_text("Your authenticator app was added.")
        page.get_by_role("link", name="My Tokens").click()
        at_my_tokens(page)

        result = strict_server.cli("users", "reset-2fa", username)
        assert result.returncode == 0, result.stderr
        assert "which this server requires at their next sign-in" in result.stderr
        sign_out(page)
        sign_in(page, username, password)  # no second step any more; the policy asks for one again
        expect(page.get_by_role("alert")).to_contain_text("This server requires a second factor")
        assert call_me(strict_server, username, token) == 200
    finally:
        context.close()


def test_the_reset_from_the_shell_removes_every_factor_and_tells_the_person(
    page: Page, server: LiveServer, smtp: SmtpServer
) -> None:
    username, password = a_person(server)
    token = server.create_token(username, "build")
    sign_in(page, username, password)
    to_security(page)
    add_passkey(page, "Key")
    enrol_app_in_the_store(server, username)
    sign_out(page)

    result = server.cli("users", "reset-2fa", username)
    assert result.returncode == 0, result.stderr
    assert f"Removed every second factor of {username} (2 authenticator app(s) and passkey(s)" in result.stderr
    missing = server.cli("users", "reset-2fa", "nobody-here")
    assert missing.returncode == 3 and "Traceback" not in missing.stderr
    smtp.mailbox.wait_for(lambda m: to(f"{username}@example.test")(m) and "every second factor" in m["Subject"])

    sign_in(page, username, password)  # the password alone, straight in
    at_my_tokens(page)
    page.get_by_role("link", name="Security log", exact=True).click()
    expect(page.get_by_text("Every second factor removed by an administrator (2)")).to_be_visible()
    assert call_me(server, username, token) == 200
