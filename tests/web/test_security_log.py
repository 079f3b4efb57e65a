"""The security log, the credential inventory and the recent sign-in that creating or changing
a token needs: over HTTP, with the `tokensmith audit export` command, and in Chromium.

On the shared server (tests/conftest.py); each test signs in as people of its own.
"""

from __future__ import annotations

import csv
import html
import io
import itertools
import json
import secrets
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select, update

from tests.audit.test_trail import ISSUE_18_CURSORS
from tests.support.ledger import remember
from tests.support.pages import csrf_of, sign_in
from tests.support.servers import LiveServer
from tokensmith.accounts import users
from tokensmith.audit import trail
from tokensmith.cli.main import run as run_command
from tokensmith.clock import utcnow
from tokensmith.config import load_settings
from tokensmith.store.models import AuditEvent, BrowserSession
from tokensmith.store.server_keys import load_server_keys
from tokensmith.tokens import format as token_format
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import listing as token_listing

_people = itertools.count(1)


def new_person(server: LiveServer, prefix: str = "log", *, admin: bool = False) -> tuple[str, str]:
    username = f"{prefix}-{next(_people)}"
    password = remember("pw-" + secrets.token_urlsafe(18))
    server.create_user(username, password=password, admin=admin)
    return username, password


def age_sessions(server: LiveServer, username: str, minutes: int = 16) -> None:
    """As if the person had signed in ``minutes`` ago: past the re-authentication window."""
    with server.store() as session:
        user = users.get_user(session, username)
        session.execute(
            update(BrowserSession)
            .where(BrowserSession.user_id == user.id)
            .values(authenticated_at=utcnow() - timedelta(minutes=minutes))
        )


def token_id(server: LiveServer, username: str, name: str) -> int:
    return server.token_row(username, name).id


# --- GET /api/v1/audit ------------------------------------------------------------------------------


def read_all(client: httpx.Client, **params: object) -> tuple[list[dict], int]:
    events, cursor, pages = [], None, 0
    while True:
        answer = client.get("/api/v1/audit", params={**params, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        pages += 1
        events.extend(answer.json()["events"])
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return events, pages


def test_the_api_pages_through_the_callers_events_only_and_filters_by_token(server: LiveServer) -> None:
    owner, _ = new_person(server)
    other, _ = new_person(server)
    api = server.create_token(owner, "api", scopes=["api:read", "api:write"])
    for number in range(4):
        server.create_token(owner, f"ci-{number}")
    theirs = server.create_token(other, "theirs")
    with server.client(auth=(owner, api)) as client:
        assert client.delete(f"/api/v1/tokens/{token_id(server, owner, 'ci-0')}").status_code == 204
        events, pages = read_all(client, limit=2)
        # user.created, five token.created, one token.revoked
        assert pages == 4 and len(events) == 7 and len({event["id"] for event in events}) == 7
        assert [event["action"] for event in events[:1]] == ["token.revoked"]
        assert events[0]["description"] == "Token “ci-0” revoked by you" and events[0]["actor"] == owner
        assert events[-1]["action"] == "user.created"
        assert all(event["description"] and event["description"] != event["action"] for event in events)
        assert "theirs" not in json.dumps(events) and api not in json.dumps(events)

        ci0 = token_id(server, owner, "ci-0") if False else events[0]["token_id"]
        only, _ = read_all(client, token_id=ci0)
        assert [event["action"] for event in only] == ["token.revoked", "token.created"]
        their_id = token_id(server, other, "theirs")
        assert client.get("/api/v1/audit", params={"token_id": their_id}).json() == {"events": [], "next_cursor": None}
    with server.client(auth=(other, theirs)) as client:
        mine, _ = read_all(client)
        assert {event["action"] for event in mine} == {"user.created", "token.created"}


def test_a_rotation_reads_as_one_event_naming_both_secrets(server: LiveServer) -> None:
    """Issue 18: a rotation wrote three events (a revocation, a token "created", the rotation)."""
    owner, password = new_person(server)
    old = server.create_token(owner, "Laptop")
    old_id = token_id(server, owner, "Laptop")
    with server.client(auth=(owner, old)) as client:
        rotated = client.post(f"/api/v1/tokens/{old_id}/rotate").json()
    new = remember(rotated["token"])
    said = (
        f"Token “Laptop” rotated: a new secret (tks_…{new[-4:]}) replaced the old one (tks_…{old[-4:]}), "
        "which no longer works (scopes: Everything; projects: every project of its owner; from: anywhere)"
    )
    with server.client(auth=(owner, new)) as client:
        events, _ = read_all(client)
        assert [event["action"] for event in events] == ["token.rotated", "token.created", "user.created"]
        assert events[0]["description"] == said and events[0]["token_id"] == rotated["id"]
        for either in (old_id, rotated["id"]):  # filtered by the old token or the new one
            assert next(event["action"] for event in read_all(client, token_id=either)[0]) == "token.rotated"
    with server.client() as browser:
        sign_in(browser, owner, password)
        page = html.unescape(browser.get("/security-log").text)
    log = [" ".join(item.split()) for item in page.split("data-action=")[1:]]
    assert [item.split('"')[1] for item in log] == ["session.started", "token.rotated", "token.created", "user.created"]
    assert said in log[1] and "Token “Laptop” created" in log[2]


def test_the_api_refuses_without_a_token_without_api_read_and_on_a_bad_cursor(server: LiveServer) -> None:
    owner, _ = new_person(server)
    git_only = server.create_token(owner, "git", scopes=["git:read"])
    reader = server.create_token(owner, "reader", scopes=["api:read"])
    with server.client() as client:
        assert client.get("/api/v1/audit").status_code == 401
        refused = client.get("/api/v1/audit", auth=(owner, git_only))
        assert refused.status_code == 403 and refused.json()["needed_scope"] == "api:read"
        bad = client.get("/api/v1/audit", params={"cursor": "bm90IGEgY3Vyc29y"}, auth=(owner, reader))
        assert bad.status_code == 422 and "cursor" in bad.json()["message"]
        for cursor in ISSUE_18_CURSORS:  # they answered 500
            forged = client.get("/api/v1/audit", params={"cursor": cursor}, auth=(owner, reader))
            assert forged.status_code == 422 and "not one this server gave" in forged.json()["message"]
        assert client.get("/api/v1/audit", params={"limit": 0}, auth=(owner, reader)).status_code == 422
        schema = client.get("/openapi.json").json()
        assert "/api/v1/audit" in schema["paths"] and "AuditPage" in schema["components"]["schemas"]


# --- tokensmith audit export ----------------------------------------------------------------------------


def test_the_export_streams_every_event_as_jsonl_or_csv_since_a_date(server: LiveServer) -> None:
    owner, _ = new_person(server, "export")
    secret = server.create_token(owner, "exported")
    jsonl = server.cli("audit", "export")
    assert jsonl.returncode == 0, jsonl.stderr
    events = [json.loads(line) for line in jsonl.stdout.splitlines()]
    created = [event for event in events if event["action"] == "token.created" and event["user"] == owner]
    assert (
        created[0]["description"].startswith("Token “exported” created") and created[0]["details"]["name"] == "exported"
    )
    assert [event["id"] for event in events] == sorted(event["id"] for event in events)
    assert secret not in jsonl.stdout and "Exported" in jsonl.stderr

    since = created[0]["at"]
    table = server.cli("audit", "export", "--format", "csv", "--since", since)
    assert table.returncode == 0, table.stderr
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert rows and rows[0]["id"] == str(created[0]["id"]) and all(row["at"] >= since for row in rows)
    assert len(rows) == len([event for event in events if event["at"] >= since])
    assert json.loads(rows[0]["details"]) == created[0]["details"] and rows[0]["user"] == owner


def test_a_bad_since_date_is_refused_with_what_to_type(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command(["audit", "export", "--since", "last tuesday"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--since takes a date like 2026-12-01 or a moment like 2026-12-01T09:30:00Z" in err


# --- pages over HTTP --------------------------------------------------------------------------------------


def test_filling_the_maven_settings_with_a_token_needs_a_recent_sign_in_and_the_form(server: LiveServer) -> None:
    person, password = new_person(server)
    with server.client() as browser:
        sign_in(browser, person, password)
        page = browser.get("/applications")
        assert browser.post("/applications/maven-token", data={"csrf_token": "0" * 64}).status_code == 403
        age_sessions(server, person)
        asked = browser.post("/applications/maven-token", data={"csrf_token": csrf_of(page)})
        assert asked.status_code == 401 and "Confirm it is you" in asked.text
        done = browser.post(
            "/applications/maven-token", data={"csrf_token": csrf_of(page), "reauth_password": password}
        )
        assert done.status_code == 200 and 'data-testid="new-token"' in done.text
        remember(done.text.split('data-testid="new-token" id="new-token">')[1].split("<")[0])
    assert server.token_row(person, "Maven settings.xml").scopes == ["maven:read"]


def test_the_inventory_is_for_administrators_only(server: LiveServer) -> None:
    person, password = new_person(server)
    with server.client() as browser:
        sign_in(browser, person, password)
        assert browser.get("/admin/tokens").status_code == 404
        page = browser.get("/security-log")
        assert page.status_code == 200 and "/admin/tokens" not in page.text
        for cursor in ISSUE_18_CURSORS:  # they answered 500
            forged = browser.get("/security-log", params={"cursor": cursor})
            assert forged.status_code == 422 and "not one this server gave" in forged.text
        refused = browser.post("/admin/tokens/1/revoke", data={"csrf_token": csrf_of(page)})
        assert refused.status_code == 404


def test_past_fifteen_minutes_regenerating_asks_for_the_password_again(server: LiveServer) -> None:
    person, password = new_person(server)
    server.create_token(person, "laptop")
    laptop = token_id(server, person, "laptop")
    with server.client() as browser:
        sign_in(browser, person, password)
        age_sessions(server, person)
        csrf = csrf_of(browser.get("/tokens"))
        asked = browser.post(f"/tokens/{laptop}/regenerate", data={"csrf_token": csrf})
        assert asked.status_code == 401 and "Confirm it is you" in asked.text
        assert server.token_row(person, "laptop").id == laptop  # nothing changed yet
        wrong = browser.post(
            f"/tokens/{laptop}/regenerate", data={"csrf_token": csrf, "reauth_password": "not it at all"}
        )
        assert wrong.status_code == 401 and "password" in wrong.text.lower()
        done = browser.post(f"/tokens/{laptop}/regenerate", data={"csrf_token": csrf, "reauth_password": password})
        assert done.status_code == 200 and 'data-testid="new-token"' in done.text
        remember(done.text.split('data-testid="new-token" id="new-token">')[1].split("<")[0])
        assert server.token_row(person, "laptop").id != laptop


# --- in Chromium ------------------------------------------------------------------------------------------


@pytest.fixture
def context(chromium: Browser, server: LiveServer) -> Iterator[BrowserContext]:
    context = chromium.new_context(base_url=server.base_url)
    context.set_default_timeout(10_000)
    yield context
    context.close()


def browser_sign_in(page: Page, username: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="My Tokens", level=1)).to_be_visible()


def many_tokens(server: LiveServer, username: str, count: int) -> None:
    """``count`` tokens as the admin command makes them, in one unit of work."""
    settings = load_settings(server.env)
    with server.store() as session:
        owner = users.get_user(session, username)
        for number in range(count):
            secret, _row = token_lifecycle.create_token(
                session,
                load_server_keys(settings),
                owner.id,
                f"tool-{number:02}",
                prefix=settings.token_prefix,
                actor="tests",
            )
            remember(secret)


@pytest.mark.browser
def test_a_person_reads_their_security_log_page_by_page_and_by_token(
    context: BrowserContext, server: LiveServer
) -> None:
    person, password = new_person(server)
    many_tokens(server, person, 30)
    page = context.new_page()
    browser_sign_in(page, person, password)
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name="tool-00", exact=True))
    row.get_by_role("button", name="Revoke").click()
    row.get_by_role("button", name="Yes, revoke “tool-00”").click()
    expect(page.get_by_role("status")).to_contain_text("was revoked")
    page.get_by_role("link", name="Security log", exact=True).click()

    expect(page.get_by_role("heading", name="Security log", level=1)).to_be_visible()
    entries = page.locator("ul.security-log li")
    expect(entries).to_have_count(25)
    expect(entries.first).to_contain_text("Token “tool-00” revoked by you")
    expect(entries.nth(1)).to_contain_text("Signed in to the web site")
    # 33 events: the account, 30 tokens, the sign-in, the revocation.
    page.get_by_role("link", name="Older events").click()
    expect(entries).to_have_count(8)
    expect(entries.last).to_contain_text("Account created")
    expect(page.get_by_role("link", name="Older events")).to_have_count(0)
    page.get_by_role("link", name="Newest events").click()
    expect(entries).to_have_count(25)

    # The revoked token is still in the list to filter by.
    page.get_by_label("Token").select_option(label=f"tool-00 ({server_hint(server, person, 'tool-00')}) — revoked")
    page.get_by_role("button", name="Show").click()
    expect(entries).to_have_count(2)
    expect(entries.first).to_contain_text("Token “tool-00” revoked by you")
    expect(entries.last).to_contain_text("Token “tool-00” created")


def server_hint(server: LiveServer, username: str, name: str) -> str:
    with server.store() as session:
        owner = users.get_user(session, username)
        return next(row.hint for row in token_listing.every_token_of(session, owner.id) if row.name == name)


@pytest.mark.browser
def test_past_fifteen_minutes_creating_a_token_asks_the_password_and_keeps_the_form(
    context: BrowserContext, server: LiveServer
) -> None:
    person, password = new_person(server)
    page = context.new_page()
    browser_sign_in(page, person, password)
    age_sessions(server, person)
    page.get_by_label("Token name").fill("CI deploys")
    page.get_by_label("Read only").check()
    page.get_by_label("Allowed addresses").fill("203.0.113.0/24")
    page.get_by_role("button", name="Create token").click()

    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    expect(page.get_by_text("Creating a token needs a sign-in within the last 15 minutes")).to_be_visible()
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Confirm and continue").click()
    expect(page.get_by_role("alert")).to_contain_text("password")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Confirm and continue").click()

    token = remember(page.get_by_test_id("new-token").inner_text().strip())
    row = server.token_row(person, "CI deploys")
    assert (row.scopes, row.allowed_ips) == (["api:read", "git:read", "maven:read"], ["203.0.113.0/24"])
    # The token works, from the addresses typed before the password was asked (not loopback).
    assert httpx.get(f"{server.base_url}/api/v1/me", auth=(person, token)).json()["error"] == "ip_not_allowed"
    # Confirmed: the next change goes through without asking again.
    page.get_by_label("Token name").fill("second")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_test_id("new-token")).to_have_count(1)
    remember(page.get_by_test_id("new-token").inner_text().strip())


@pytest.mark.browser
def test_an_administrator_revokes_a_token_from_the_inventory_and_its_owner_reads_why(
    context: BrowserContext, server: LiveServer
) -> None:
    owner, owner_password = new_person(server, "owner")
    admin, admin_password = new_person(server, "admin", admin=True)
    server.create_token(owner, "deploy", scopes=["git:read"], allowed_ips=["10.0.0.0/8"])
    server.create_token(owner, "laptop")
    server.create_token(admin, "admins-own")
    page = context.new_page()
    browser_sign_in(page, admin, admin_password)
    page.get_by_role("link", name="Credentials").click()
    expect(page.get_by_role("heading", name="Credentials", level=1)).to_be_visible()
    page.get_by_label("Owner").fill(owner)
    page.get_by_role("button", name="Show").click()
    rows = page.locator("table.inventory tbody tr")
    expect(rows).to_have_count(2)
    deploy = rows.filter(has=page.get_by_role("cell", name="deploy", exact=True))
    expect(deploy).to_contain_text(owner)
    expect(deploy).to_contain_text("10.0.0.0/8")
    expect(deploy).to_contain_text("Never used")

    age_sessions(server, admin)
    deploy.get_by_role("button", name="Revoke").click()
    deploy.get_by_role("button", name=f"Yes, revoke “deploy” of {owner}").click()
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    page.get_by_label("Password").fill(admin_password)
    page.get_by_role("button", name="Confirm and continue").click()
    expect(page.get_by_role("status")).to_contain_text("The token “deploy”")
    expect(rows).to_have_count(1)
    assert server.token_row(owner, "laptop")  # the other one lives on

    with server.client() as browser:
        sign_in(browser, owner, owner_password)
        log = browser.get("/security-log").text
    assert "Token “deploy” revoked by an administrator" in log and f"by {admin}" in log
    with server.store() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "token.revoked").order_by(AuditEvent.id.desc())
        ).first()
        assert (event.actor, event.details["reason"], event.details["name"]) == (admin, "admin", "deploy")


def test_past_fifteen_minutes_approving_a_device_login_asks_the_password_again(server: LiveServer) -> None:
    """Approving the client's browser login makes a token: the same recent sign-in applies."""
    person, password = new_person(server)
    with server.client() as device, server.client() as browser:
        asked_for = device.post("/login/device/code", data={"client_id": "tokensmith-cli", "device_name": "ci"}).json()
        remember(asked_for["device_code"])
        sign_in(browser, person, password)
        age_sessions(server, person)
        form = {
            "user_code": asked_for["user_code"],
            "decision": "approve",
            "csrf_token": csrf_of(browser.get("/device")),
        }
        asked = browser.post("/device/decision", data=form)
        assert asked.status_code == 401 and "Approving a device login (it makes a token)" in asked.text
        approved = browser.post("/device/decision", data={**form, "reauth_password": password})
        assert approved.status_code == 200, approved.text
    with server.store() as session:
        user = users.get_user(session, person)
        events = [event.action for event in trail.events_for_user(session, user.id)]
    assert events[:2] == ["device.approved", "session.reauthenticated"]


def test_finding_a_token_is_for_administrators_by_post_only(server: LiveServer) -> None:
    person, password = new_person(server)
    token = server.create_token(person, "theirs")
    with server.client() as browser:
        sign_in(browser, person, password)
        csrf = csrf_of(browser.get("/tokens"))
        assert browser.post("/admin/tokens/lookup", data={"csrf_token": csrf, "tokens": token}).status_code == 404
        assert browser.get("/admin/tokens/lookup", params={"tokens": token}).status_code == 405
    admin, admin_password = new_person(server, "finder", admin=True)
    with server.client() as browser:
        sign_in(browser, admin, admin_password)
        csrf = csrf_of(browser.get("/admin/tokens"))
        assert browser.post("/admin/tokens/lookup", data={"tokens": token}).status_code == 403  # no CSRF token
        empty = browser.post("/admin/tokens/lookup", data={"csrf_token": csrf, "tokens": "  \n"})
        assert empty.status_code == 422 and "No token given" in empty.text
        found = browser.post("/admin/tokens/lookup", data={"csrf_token": csrf, "tokens": token})
    assert found.status_code == 200 and person in found.text and token not in found.text


@pytest.mark.browser
def test_an_administrator_finds_whose_a_token_is_and_revokes_it(context: BrowserContext, server: LiveServer) -> None:
    owner, _owner_password = new_person(server, "found")
    admin, admin_password = new_person(server, "finder", admin=True)
    leaked = server.create_token(owner, "pasted in a ticket", scopes=["maven:read"])
    stranger = remember(token_format.generate("tks_"))
    page = context.new_page()
    browser_sign_in(page, admin, admin_password)
    page.get_by_role("link", name="Credentials").click()
    page.get_by_label("Tokens").fill(f"{leaked}\nexport OTHER={stranger}\n")
    page.get_by_role("button", name="Find").click()
    rows = page.locator("table.found tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text(owner)
    expect(rows.nth(0)).to_contain_text("pasted in a ticket")
    expect(rows.nth(0)).to_contain_text("live")
    expect(rows.nth(0)).to_contain_text("maven:read")
    expect(rows.nth(1)).to_contain_text("no token here has this value")
    assert leaked not in page.content() and stranger not in page.content() and leaked not in page.url
    expect(page.get_by_label("Tokens")).to_have_value("")
    rows.nth(0).get_by_role("button", name="Revoke").click()
    rows.nth(0).get_by_role("button", name=f"Yes, revoke “pasted in a ticket” of {owner}").click()
    expect(page.get_by_role("status")).to_contain_text("The token “pasted in a ticket”")
    with server.client() as client:
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {leaked}"}).status_code == 401
