"""`tokensmith login --web` end to end (RFC 8628): the real client waiting in a process of its
own, Chromium signing in and approving (or denying) on /device, then the client's next commands;
and the protocol's answers to a client that polls badly, over plain HTTP."""

from __future__ import annotations

import re
import secrets
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import update

from tests.support.client import TOKENSMITH, client_env, tokensmith
from tests.support.ledger import remember
from tests.support.pages import csrf_of
from tests.support.pages import sign_in as sign_in_over_http
from tokensmith.accounts import device_authorization
from tokensmith.client.device_login import device_name
from tokensmith.clock import utcnow
from tokensmith.config import load_settings
from tokensmith.store.models import DeviceAuthorization
from tokensmith.store.server_keys import load_server_keys

pytestmark = pytest.mark.browser
CODE = re.compile(r"First copy your one-time code: ([A-Z]{4}-[A-Z]{4})")
ALL_SCOPES = "api:read, api:write, git:read, git:write, maven:read"


class WaitingClient:
    """`tokensmith login --web` in its own process, as a person started it in a terminal."""

    def __init__(self, server, home, *extra: str) -> None:
        self.env = client_env(home)
        self.process = subprocess.Popen(
            [TOKENSMITH, "login", "--web", "--server", server.base_url, *extra],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.screen: list[str] = []
        self.code_shown = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.screen.append(line)
            if CODE.search(line):
                self.code_shown.set()

    @property
    def code(self) -> str:
        assert self.code_shown.wait(30), "".join(self.screen)
        return CODE.search("".join(self.screen)).group(1)

    def finish(self, timeout: float = 40) -> tuple[int, str, str]:
        stdout = self.process.stdout.read()
        self.process.wait(timeout)
        self.reader.join(5)
        return self.process.returncode, stdout, "".join(self.screen)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def person(server):
    name = f"device-{uuid.uuid4().hex[:8]}"
    password = remember("pw-" + secrets.token_urlsafe(18))
    server.create_user(name, password=password)
    return name, password


@pytest.fixture
def context(chromium: Browser, server) -> Iterator[BrowserContext]:
    context = chromium.new_context(base_url=server.base_url)
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def waiting(server, home) -> Iterator[WaitingClient]:
    client = WaitingClient(server, home)
    yield client
    client.stop()


def sign_in(page: Page, person: tuple[str, str]) -> None:
    page.get_by_label("Username").fill(person[0])
    page.get_by_label("Password").fill(person[1])
    page.get_by_role("button", name="Sign in").click()


def enter(page: Page, code: str) -> None:
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Continue").click()


def test_login_in_the_browser_then_the_client_works(server, person, context, waiting, home):
    page = context.new_page()
    page.goto("/device")  # not signed in yet: the sign-in page, then back here
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fdevice$"))
    sign_in(page, person)
    expect(page).to_have_url(re.compile(r"/device$"))
    assert waiting.code  # shown by now
    assert f"Then open {server.base_url}/device in a browser" in "".join(waiting.screen)

    enter(page, "BBBB-BBBB")  # a wrong code: said so, nothing approved
    expect(page.get_by_role("alert")).to_contain_text("not one waiting for approval")
    enter(page, waiting.code.lower())
    expect(page.get_by_role("heading", name="Approve this login?")).to_be_visible()
    expect(page.get_by_test_id("user-code")).to_have_text(waiting.code)
    expect(page.get_by_test_id("client")).to_have_text("Tokensmith command-line client")
    expect(page.get_by_test_id("device")).to_have_text(device_name())
    expect(page.get_by_test_id("address")).to_have_text("127.0.0.1")
    expect(page.get_by_test_id("scopes").get_by_role("listitem")).to_have_count(5)
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("heading", name="Device logged in")).to_be_visible()

    status, stdout, screen = waiting.finish()
    name = f"tokensmith CLI on {device_name()}"
    assert status == 0, stdout + screen
    assert f"Logged in to {server.base_url} as {person[0]} with token “{name}”" in stdout
    kept = home / "config" / "tokensmith" / "credentials"
    assert f"Credentials stored in {kept}" in stdout
    token = remember(re.search(r'"token": "(tks_\w+)"', kept.read_text()).group(1))
    assert token not in stdout + screen

    whoami = tokensmith("whoami", env=waiting.env)
    assert whoami.returncode == 0 and f"{person[0]} with token “{name}”" in whoami.stdout
    status = tokensmith("status", env=waiting.env)
    assert status.returncode == 0 and f"Scopes:  {ALL_SCOPES}" in status.stdout
    assert "Expires: never" in status.stdout and f"Kept in: {kept} (mode 0600)" in status.stdout
    page.goto("/tokens")  # the new token is on My Tokens, and the approval in the activity
    expect(page.get_by_role("cell", name=name, exact=True)).to_be_visible()
    expect(
        page.get_by_text(f"Approved a login of the Tokensmith command-line client on {device_name()}")
    ).to_be_visible()


def test_a_denied_login_stores_nothing(server, person, context, waiting, home):
    page = context.new_page()
    page.goto("/login?next=/device")
    sign_in(page, person)
    enter(page, waiting.code)
    page.get_by_role("button", name="Deny").click()
    expect(page.get_by_role("heading", name="Login denied")).to_be_visible()
    status, _stdout, screen = waiting.finish()
    assert status == 5 and "The request was denied in the browser: nothing was stored." in screen
    assert len([line for line in screen.splitlines() if line.startswith("Error")]) == 1
    assert not (home / "config" / "tokensmith").exists()
    page.goto("/device")
    enter(page, waiting.code)  # a decided code is no longer waiting
    expect(page.get_by_role("alert")).to_contain_text("not one waiting for approval")


def test_a_code_that_expires_before_approval_ends_the_wait(server, person, context, waiting):
    keys = load_server_keys(load_settings(server.env))
    digests = keys.all_digests("user_code", device_authorization.normalised(waiting.code))
    with server.store() as session:  # ten minutes pass
        session.execute(
            update(DeviceAuthorization)
            .where(DeviceAuthorization.user_code_digest.in_(digests))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    status, _stdout, screen = waiting.finish()
    assert status == 5 and "The code expired before it was approved: run `tokensmith login --web` again." in screen
    page = context.new_page()
    page.goto("/login?next=/device")
    sign_in(page, person)
    enter(page, waiting.code)
    expect(page.get_by_role("alert")).to_contain_text("expired")


def test_the_client_asks_for_the_scopes_it_is_given(server, person, context, home):
    client = WaitingClient(server, home, "--scope", "git:read", "--scope", "api:read")
    try:
        page = context.new_page()
        page.goto("/login?next=/device")
        sign_in(page, person)
        enter(page, client.code)
        expect(page.get_by_test_id("scopes").get_by_role("listitem")).to_have_count(2)
        page.get_by_role("button", name="Approve").click()
        assert client.finish()[0] == 0
        assert "Scopes:  api:read, git:read" in tokensmith("status", env=client.env).stdout
    finally:
        client.stop()
    unknown = tokensmith("login", "--web", "--server", server.base_url, "--scope", "admin", env=client_env(home))
    assert unknown.returncode == 2 and "Unknown scope 'admin'" in unknown.stderr


# --- the protocol, as a badly behaved client meets it ---------------------------------------------------


def test_the_endpoints_answer_in_rfc_8628_terms(server):
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        asked = client.post("/login/device/code", data={"client_id": "tokensmith-cli", "device_name": "raw"})
        assert asked.status_code == 200 and asked.headers["cache-control"] == "no-store"
        body = asked.json()
        remember(body["device_code"])
        assert body["verification_uri"] == f"{server.base_url}/device" and body["interval"] == 5
        assert body["expires_in"] == 600 and re.fullmatch(r"[A-Z]{4}-[A-Z]{4}", body["user_code"])

        def poll(**changes: str) -> httpx.Response:
            return client.post(
                "/login/device/token",
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                    "device_code": body["device_code"],
                    "client_id": "tokensmith-cli",
                    **changes,
                },
            )

        pending = poll()
        assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"
        assert set(pending.json()) == {"error", "error_description"} and pending.headers["cache-control"] == "no-store"
        assert poll().json()["error"] == "slow_down"  # polled again at once
        assert poll(grant_type="password").json()["error"] == "unsupported_grant_type"
        assert poll(device_code="nope").json()["error"] == "invalid_grant"
        assert poll(client_id="else").json()["error"] == "invalid_client"
        as_json = client.post("/login/device/token", json={"device_code": body["device_code"]})
        assert as_json.status_code == 400 and as_json.json()["error"] == "unsupported_grant_type"
        assert client.post("/login/device/code", data={"client_id": "x"}).json()["error"] == "invalid_client"
        assert (
            client.post("/login/device/code", data={"client_id": "tokensmith-cli", "scope": "root"}).json()["error"]
            == "invalid_scope"
        )
        huge = client.post(
            "/login/device/code",
            content=b"client_id=" + b"x" * 200_000,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert huge.status_code == 413 and huge.headers["content-type"].startswith("application/json")
    assert body["device_code"] not in server.console()


def test_the_device_form_needs_its_csrf_token(server, person):
    with server.client() as browser:
        assert sign_in_over_http(browser, *person).status_code == 303
        form = browser.get("/device")
        assert form.status_code == 200
        refused = browser.post("/device", data={"user_code": "BDWP-HQPK"})
        assert refused.status_code == 403
        wrong = browser.post("/device", data={"user_code": "BDWP-HQPK", "csrf_token": csrf_of(form)})
        assert wrong.status_code == 400 and "not one waiting for approval" in wrong.text
        nonsense = browser.post(
            "/device/decision", data={"user_code": "BDWP-HQPK", "decision": "maybe", "csrf_token": csrf_of(form)}
        )
        assert nonsense.status_code == 422
