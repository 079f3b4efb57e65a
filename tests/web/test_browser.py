"""The web pages in a real browser: Debian's chromium driven through Playwright.

Each test signs in as its own user on the shared live server and uses the pages the way a
person does: by labels and roles, reading what is on the screen. Tokens the pages show are
then used over real HTTP against the same server.
"""

from __future__ import annotations

import itertools
import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from tests.support.ledger import remember
from tests.support.servers import LiveServer
from tokensmith.accounts import users
from tokensmith.tokens import listing as token_listing

pytestmark = pytest.mark.browser

# How the pages write a moment: "2026-11-27 23:41 UTC".
MOMENT = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC"
# The columns of the tokens table, left to right; the last one holds the Revoke control.
COLUMNS = ("Name", "Token", "Limits", "Created", "Last used", "Expires")


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def context(chromium: Browser, server: LiveServer) -> Iterator[BrowserContext]:
    """A fresh profile per test: no cookie or session leaks from one test into the next."""
    # Clipboard allowed, as on a desktop where the person accepted it: the Copy button then
    # takes its navigator.clipboard path and the test can read what it copied.
    context = chromium.new_context(base_url=server.base_url, permissions=["clipboard-read", "clipboard-write"])
    # A person would give up long before Playwright's 30 s default; fail fast and say where.
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@dataclass(frozen=True)
class Person:
    username: str
    password: str


_people = itertools.count(1)


@pytest.fixture
def person(server: LiveServer, request: pytest.FixtureRequest) -> Person:
    """A user of its own for each test, so that no test sees another's tokens."""
    # Named after the test for readable logs; the counter keeps parametrised cases apart.
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.originalname.removeprefix("test_").lower())[:40]
    username = f"browser-{slug.strip('-')}-{next(_people)}"
    password = remember("pw-" + secrets.token_urlsafe(18))
    server.create_user(username, password=password)
    return Person(username, password)


# --- what a person does ---------------------------------------------------------------------------


def sign_in(page: Page, username: str, password: str) -> None:
    """Fill the sign-in form and submit it; the caller checks where that led."""
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def signed_in(page: Page, person: Person) -> Page:
    sign_in(page, person.username, person.password)
    expect(page.get_by_role("heading", name="My Tokens", level=1)).to_be_visible()
    return page


def create_token(page: Page, name: str, expiration: str = "No expiration", expires_on: str | None = None) -> None:
    """Submit the "Create a token" form of the My Tokens page the page is on."""
    page.get_by_label("Token name").fill(name)
    # exact: "Expiration date (when …)" is a second label starting with the same word.
    page.get_by_label("Expiration", exact=True).select_option(label=expiration)
    if expires_on is not None:
        page.get_by_label("Expiration date").fill(expires_on)
    page.get_by_role("button", name="Create token").click()


def shown_token(page: Page) -> str:
    """The token the page shows once, registered with the ledger before anything else."""
    shown = page.get_by_test_id("new-token")
    expect(shown).to_have_count(1)
    return remember(shown.inner_text().strip())


def create_and_read_token(page: Page, name: str, **kwargs: str) -> str:
    create_token(page, name, **kwargs)
    return shown_token(page)


def token_row(page: Page, name: str, section: str = "Your tokens") -> Locator:
    """The row of a tokens table ("Your tokens", "Inactive tokens") whose Name cell is exactly ``name``."""
    table = page.get_by_role("region", name=section).get_by_role("table")
    return table.get_by_role("row").filter(has=page.get_by_role("cell", name=name, exact=True))


def read_row(page: Page, name: str) -> dict[str, str]:
    """The row a person reads, as {column heading: text}."""
    row = token_row(page, name)
    expect(row).to_have_count(1)
    cells = row.get_by_role("cell").all_inner_texts()
    return dict(zip(COLUMNS, (" ".join(text.split()) for text in cells), strict=False))


# --- the store, as checked from the server's machine ------------------------------------------------


def live_token_names(server: LiveServer, username: str) -> list[str]:
    with server.store() as session:
        owner = users.get_user(session, username)
        return [row.name for row in token_listing.list_tokens(session, owner.id)]


def call_me(server: LiveServer, username: str, token: str) -> httpx.Response:
    """What curl, git or the client would do with the token: HTTP Basic, username + token."""
    return httpx.get(f"{server.base_url}/api/v1/me", auth=(username, token), timeout=30)


# --- tests ------------------------------------------------------------------------------------------


def test_a_person_creates_uses_and_revokes_a_token_in_the_browser(
    page: Page, server: LiveServer, person: Person
) -> None:
    signed_in(page, person)
    page.get_by_role("link", name="My Tokens").click()
    expect(page.get_by_role("link", name="My Tokens")).to_have_attribute("aria-current", "page")

    # Created with no expiration: shown once, with the Copy button and the warning.
    token = create_and_read_token(page, "CI Chain", expiration="No expiration")
    assert re.fullmatch(r"tks_[0-9A-Za-z]{38}", token)
    assert page.content().count(token) == 1
    expect(page.get_by_text("will not be shown again")).to_be_visible()
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.get_by_role("button", name="Copied", exact=True)).to_be_visible()
    assert page.evaluate("() => navigator.clipboard.readText()") == token

    # Never again: not after a reload, not when coming back through the tab.
    page.reload()
    expect(page.get_by_test_id("new-token")).to_have_count(0)
    # A reload is a plain GET of /tokens: no re-posted form, so no "name taken" error either.
    expect(page.get_by_role("alert")).to_have_count(0)
    assert token not in page.content()
    assert token not in page.url
    page.get_by_role("link", name="My Applications").click()
    page.get_by_role("link", name="My Tokens").click()
    expect(page.get_by_role("heading", name="My Tokens", level=1)).to_be_visible()
    assert token not in page.content()

    row = read_row(page, "CI Chain")
    assert row["Token"] == f"tks_…{token[-4:]}"
    assert row["Limits"] == "Access: Everything Projects: All my projects From: anywhere"
    assert re.fullmatch(MOMENT, row["Created"])
    assert row["Last used"] == "Never used"
    assert row["Expires"] == "Never"

    # A second token, made before the first is revoked, must outlive that revocation.
    other = create_and_read_token(page, "Laptop git")

    # Used where a password would go; the page then says when, from where and by what.
    answer = call_me(server, person.username, token)
    assert answer.status_code == 200, answer.text
    assert answer.json()["user"]["username"] == person.username
    assert answer.json()["token"]["name"] == "CI Chain"
    server.used_token_row(person.username, "CI Chain")  # written behind the request
    page.goto("/tokens")
    last_used = read_row(page, "CI Chain")["Last used"]
    client = re.escape(f"python-httpx/{httpx.__version__}")
    # Where it was used, address by address, is written with the last use: a disclosure.
    assert re.fullmatch(rf"{MOMENT} from 127\.0\.0\.1 {client} Where it was used", last_used), last_used

    # Revoked from the page, after confirming: the row goes, the very next request fails.
    token_row(page, "CI Chain").get_by_role("button", name="Revoke", exact=True).click()
    page.get_by_role("button", name="Yes, revoke “CI Chain”").click()
    expect(page.get_by_role("status")).to_have_text(
        f"The token “CI Chain” (tks_…{token[-4:]}) was revoked. Any tool still using it will now be refused."
    )
    expect(token_row(page, "CI Chain")).to_have_count(0)
    ended = token_row(page, "CI Chain", "Inactive tokens").get_by_role("cell").nth(3)
    expect(ended).to_have_text(re.compile(rf"Revoked by you on {MOMENT}"))
    refused = call_me(server, person.username, token)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["message"]
    assert call_me(server, person.username, other).status_code == 200

    # Signing out ends the session; the password still signs in.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto("/tokens")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    signed_in(page, person)
    expect(token_row(page, "Laptop git")).to_have_count(1)


def test_a_token_typed_as_the_password_does_not_sign_in(
    context: BrowserContext, page: Page, server: LiveServer, person: Person
) -> None:
    token = server.create_token(person.username, "typed into the browser")
    sign_in(page, person.username, token)
    expect(page.get_by_role("alert")).to_contain_text("personal access token cannot sign in")
    # The username is kept for the retry; the token is not echoed back into the page.
    expect(page.get_by_label("Username")).to_have_value(person.username)
    assert token not in page.content()
    assert not any(cookie["name"] == "tokensmith_session" for cookie in context.cookies())
    page.goto("/tokens")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Ftokens$"))


@pytest.mark.parametrize(
    "name, message",
    [
        pytest.param("", "Give the token a name", id="empty"),
        pytest.param("x" * 101, "at most 100 characters; this one has 101", id="101-characters"),
        pytest.param("bad\u0007name", "cannot contain control", id="control-character"),
        pytest.param("Laptop git", "You already have a token named “Laptop git”", id="taken"),
    ],
)
def test_a_bad_token_name_is_refused_on_the_page(
    page: Page, server: LiveServer, person: Person, name: str, message: str
) -> None:
    signed_in(page, person)
    create_and_read_token(page, "Laptop git")
    page.goto("/tokens")

    create_token(page, name)

    expect(page.get_by_role("alert")).to_contain_text(message)
    expect(page.get_by_test_id("new-token")).to_have_count(0)
    # Nothing typed is lost: the name is still in the field to correct.
    assert page.get_by_label("Token name").input_value() == name
    assert live_token_names(server, person.username) == ["Laptop git"]
    expect(page.get_by_role("row")).to_have_count(2)  # the headings and "Laptop git"


def test_a_name_that_looks_like_html_is_shown_as_text(page: Page, server: LiveServer, person: Person) -> None:
    name = "<script>alert(1)</script>"
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    signed_in(page, person)

    create_and_read_token(page, name)
    expect(page.get_by_role("heading", name=f"Your new token “{name}”")).to_be_visible()
    page.reload()

    assert read_row(page, name)["Name"] == name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.content()
    assert dialogs == []
    assert live_token_names(server, person.username) == [name]


def test_a_form_posted_without_its_csrf_token_is_refused(
    context: BrowserContext, page: Page, server: LiveServer, person: Person
) -> None:
    signed_in(page, person)
    # The session cookie does ride along on context.request: the refusal is the CSRF check's.
    assert "My Tokens" in context.request.get(f"{server.base_url}/tokens").text()

    answer = context.request.post(f"{server.base_url}/tokens", form={"name": "no-csrf"})

    assert answer.status == 403
    assert "did not come from this site" in answer.text()
    assert "no-csrf" not in live_token_names(server, person.username)


def test_revoking_in_a_stale_tab_says_the_token_is_gone(context: BrowserContext, page: Page, person: Person) -> None:
    # Two tabs on My Tokens, as happens: the token is revoked in one, then again in the other.
    signed_in(page, person)
    create_and_read_token(page, "Old laptop")
    page.goto("/tokens")
    stale = context.new_page()
    stale.goto("/tokens")
    token_row(page, "Old laptop").get_by_role("button", name="Revoke", exact=True).click()
    page.get_by_role("button", name="Yes, revoke “Old laptop”").click()
    expect(page.get_by_role("status")).to_contain_text("The token “Old laptop”")

    token_row(stale, "Old laptop").get_by_role("button", name="Revoke", exact=True).click()
    stale.get_by_role("button", name="Yes, revoke “Old laptop”").click()

    # A page that says what happened and leads back, not a bare server error.
    expect(stale.get_by_role("alert")).to_contain_text("no live token")
    expect(stale.get_by_role("link", name="Back")).to_be_visible()


def test_the_chosen_expiration_is_shown_in_the_row(page: Page, server: LiveServer, person: Person) -> None:
    signed_in(page, person)
    before = datetime.now(UTC)
    create_and_read_token(page, "Thirty days", expiration="30 days")
    after = datetime.now(UTC)
    # The server judges "after today" in UTC, so the date is counted from UTC's today.
    day = datetime.now(UTC).date() + timedelta(days=10)
    create_and_read_token(page, "Dated", expiration="On a date…", expires_on=day.isoformat())
    page.goto("/tokens")

    # Either side of midnight UTC, the date is the one 30 days from the click.
    expires = read_row(page, "Thirty days")["Expires"]
    assert re.fullmatch(MOMENT, expires), expires
    assert expires[:10] in {f"{moment + timedelta(days=30):%Y-%m-%d}" for moment in (before, after)}

    # A date means "until the end of that day, UTC": the row shows the very date picked.
    assert read_row(page, "Dated")["Expires"] == f"{day} 23:59 UTC"
    assert server.token_row(person.username, "Dated").expires_at == datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


def test_my_applications_shows_each_project_and_how_to_reach_it(page: Page, server: LiveServer, person: Person) -> None:
    project_id = f"browser-app-{uuid.uuid4().hex[:8]}"
    created = server.cli("projects", "create", project_id, "--group-id", "com.acme.studio", "--owner", person.username)
    assert created.returncode == 0, created.stderr
    signed_in(page, person)
    page.get_by_role("link", name="My Applications").click()
    expect(page.get_by_role("heading", name="My Applications", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="My Applications")).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    card = page.locator(f'[data-project="{project_id}"]')
    expect(card.get_by_role("heading", name=project_id)).to_be_visible()
    expect(card.get_by_test_id("clone-url")).to_have_text(f"{server.base_url}/git/{project_id}.git")
    expect(card.get_by_test_id("maven-coordinates")).to_have_text(f"com.acme.studio:{project_id}")
    expect(card.get_by_test_id("maven-url")).to_have_text(f"{server.base_url}/maven/studio/")
    expect(card.get_by_text("No releases yet.")).to_be_visible()
    settings = card.get_by_test_id("settings-xml").inner_text()
    assert f"<username>{person.username}</username>" in settings
    assert "<password>PASTE-A-PERSONAL-ACCESS-TOKEN-HERE</password>" in settings


# --- least privilege on the page, narrow screens, copying -------------------------------------------


def scope_box(page: Page, scope: str) -> Locator:
    """A scope's box, named by the scope and the sentence that explains it."""
    return page.get_by_role("checkbox", name=re.compile(rf"^{re.escape(scope)} "))


def make_project(server: LiveServer, owner: str, prefix: str = "browser-lim") -> str:
    project_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    created = server.cli("projects", "create", project_id, "--group-id", "com.acme.studio", "--owner", owner)
    assert created.returncode == 0, created.stderr
    return project_id


def test_a_person_makes_a_narrow_token_and_regenerates_it(page: Page, server: LiveServer, person: Person) -> None:
    project_id = make_project(server, person.username)
    make_project(server, person.username, "browser-other")
    signed_in(page, person)
    everything = page.get_by_label("Everything")
    expect(everything).to_be_checked()
    for scope in ("api:read", "api:write", "git:read", "git:write", "maven:read"):
        # Issue 18: they looked ticked and clickable. A preset's scopes are shown, locked, and look it.
        expect(scope_box(page, scope)).to_be_checked()
        expect(scope_box(page, scope)).to_be_disabled()
    label = page.locator("ul.scopes label").first
    assert label.evaluate("l => [getComputedStyle(l).cursor, getComputedStyle(l).color]") == [
        "not-allowed",
        "rgb(154, 161, 173)",
    ]
    # Each scope says what it opens, in a sentence.
    expect(scope_box(page, "git:write")).to_have_accessible_name(
        "git:write Push to your projects' Git repositories (includes git:read)."
    )

    page.get_by_label("Token name").fill("Nexus proxy")
    page.get_by_label("Read only").check()  # the preset ticks its boxes, locked too
    expect(scope_box(page, "api:write")).not_to_be_checked()
    expect(scope_box(page, "maven:read")).to_be_checked()
    expect(scope_box(page, "maven:read")).to_be_disabled()
    page.get_by_label("Custom").check()  # unlocks them, ticked as Read only had them
    expect(scope_box(page, "api:read")).to_be_enabled()
    expect(scope_box(page, "api:read")).to_be_checked()
    assert label.evaluate("l => getComputedStyle(l).cursor") != "not-allowed"
    scope_box(page, "api:read").uncheck()
    page.get_by_role("checkbox", name=project_id).check()  # one project: only these
    expect(page.get_by_label("Only the projects ticked below")).to_be_checked()
    page.get_by_label("Allowed addresses").fill("127.0.0.0/8")
    # The date appears when it is asked for, and only then.
    expect(page.get_by_label("Expiration date")).to_be_hidden()
    page.get_by_label("Expiration", exact=True).select_option(label="On a date…")
    day = datetime.now(UTC).date() + timedelta(days=20)
    page.get_by_label("Expiration date").fill(day.isoformat())
    page.get_by_role("button", name="Create token").click()
    token = shown_token(page)

    page.goto("/tokens")
    row = read_row(page, "Nexus proxy")
    assert row["Limits"] == f"Access: git:read, maven:read Projects: {project_id} From: 127.0.0.0/8"
    assert row["Expires"] == f"{day} 23:59 UTC"
    refused = httpx.get(f"{server.base_url}/api/v1/projects", auth=(person.username, token), timeout=30)
    assert refused.status_code == 403 and refused.headers["x-accepted-scopes"] == "api:read"

    # Regenerate: confirmed, shown once, the same limits; the old secret stops at once.
    token_row(page, "Nexus proxy").get_by_role("button", name="Regenerate", exact=True).click()
    page.get_by_role("button", name="Yes, regenerate “Nexus proxy”").click()
    expect(page.get_by_role("heading", name="Your regenerated token “Nexus proxy”")).to_be_visible()
    new = shown_token(page)
    assert new != token
    page.get_by_role("button", name="Copy", exact=True).click()
    assert page.evaluate("() => navigator.clipboard.readText()") == new
    me = call_me(server, person.username, new).json()["token"]
    assert (me["scopes"], me["projects"], me["allowed_ips"]) == (
        ["git:read", "maven:read"],
        [project_id],
        ["127.0.0.0/8"],
    )
    page.reload()
    expect(page.get_by_test_id("new-token")).to_have_count(0)
    assert read_row(page, "Nexus proxy")["Limits"] == row["Limits"]
    inactive = token_row(page, "Nexus proxy", "Inactive tokens").get_by_role("cell").nth(3)
    expect(inactive).to_have_text(re.compile(rf"Revoked when it was rotated on {MOMENT}"))
    # Last: the old secret used again revokes the new one too (rotation reuse).
    assert call_me(server, person.username, token).status_code == 401


def test_a_bad_address_block_is_refused_and_what_was_typed_is_kept(
    page: Page, server: LiveServer, person: Person
) -> None:
    signed_in(page, person)
    page.get_by_label("Token name").fill("typo")
    page.get_by_label("Custom").check()
    scope_box(page, "git:read").check()
    for other in ("api:read", "api:write", "git:write", "maven:read"):
        scope_box(page, other).uncheck()
    page.get_by_label("Allowed addresses").fill("10.1.2.3/8")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_role("alert")).to_have_text(
        "'10.1.2.3/8' has bits set past its prefix: did you mean 10.0.0.0/8?"
    )
    expect(page.get_by_label("Allowed addresses")).to_have_value("10.1.2.3/8")
    expect(page.get_by_label("Custom")).to_be_checked()
    expect(scope_box(page, "git:read")).to_be_checked()
    expect(scope_box(page, "api:read")).not_to_be_checked()
    assert live_token_names(server, person.username) == []


def test_without_javascript_the_date_field_is_there_and_labelled(
    chromium: Browser, server: LiveServer, person: Person
) -> None:
    context = chromium.new_context(base_url=server.base_url, java_script_enabled=False)
    try:
        page = context.new_page()
        signed_in(page, person)
        expect(page.get_by_label("Expiration date")).to_be_visible()
        day = datetime.now(UTC).date() + timedelta(days=5)
        create_and_read_token(page, "no script", expiration="On a date…", expires_on=day.isoformat())
        page.goto("/tokens")
        assert read_row(page, "no script")["Expires"] == f"{day} 23:59 UTC"
    finally:
        context.close()


def fits(page: Page) -> None:
    """Nothing scrolls sideways, and every control of every row is within the screen."""
    width = page.evaluate("() => [document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]")
    assert width[0] <= width[1], f"the page is {width[0]} px wide on a {width[1]} px screen"
    viewport = page.viewport_size["width"]
    for control in page.locator("summary, button, td.expires, code").all():
        box = control.bounding_box()
        if box is not None:  # hidden ones (a closed <details>) have none
            assert box["x"] >= 0 and box["x"] + box["width"] <= viewport + 0.5, control.inner_text()


@pytest.fixture
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the pages' screenshots go, to be looked at (TOKENSMITH_SCREENSHOTS keeps them)."""
    import os

    kept = os.environ.get("TOKENSMITH_SCREENSHOTS")
    return Path(kept) if kept else tmp_path_factory.mktemp("screenshots")


@pytest.mark.parametrize("width", [1280, 390])
def test_the_pages_fit_the_screen(
    chromium: Browser, server: LiveServer, person: Person, width: int, screenshots: Path
) -> None:
    context = chromium.new_context(base_url=server.base_url, viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        project_id = make_project(server, person.username, "a-rather-long-project-name")
        signed_in(page, person)
        server.create_token(
            person.username,
            "Laptop git with a long descriptive name",
            scopes=["git:write"],
            projects=[project_id],
            allowed_ips=["2001:db8:1234:5678::/64", "203.0.113.0/24"],
            expires_at=datetime.now(UTC) + timedelta(days=30),
        )
        doomed = server.create_token(person.username, "Old CI chain")
        with httpx.Client(
            base_url=server.base_url,
            auth=(person.username, doomed),
            timeout=30,
            headers={"User-Agent": "Apache-Maven/3.8.7 (Java 17.0.13; Linux 6.1.0-28-amd64)"},
        ) as api:
            token_id = api.get("/api/v1/me").json()["token"]["id"]
            assert api.delete(f"/api/v1/tokens/{token_id}").status_code == 204
        page.goto("/tokens")
        expect(token_row(page, "Laptop git with a long descriptive name")).to_have_count(1)
        # Issue 18: on a phone "Your tokens" came 1,570 px down, under the whole create form. The
        # list is on the first screen now, and a link there leads to the form below it.
        listed = page.get_by_role("heading", name="Your tokens").bounding_box()
        assert listed["y"] < 900 * 0.6, f"“Your tokens” is {listed['y']:.0f} px down"
        assert page.get_by_role("heading", name="Create a token").bounding_box()["y"] > listed["y"]
        page.get_by_role("link", name="Create a token").click()
        expect(page.get_by_label("Token name")).to_be_in_viewport()
        fits(page)
        revoke = page.locator("tr[data-token-id] summary", has_text="Revoke")
        revoke.scroll_into_view_if_needed()
        expect(revoke).to_be_in_viewport()  # reachable without scrolling sideways
        page.screenshot(path=str(screenshots / f"tokens-{width}.png"), full_page=True)
        token_row(page, "Laptop git with a long descriptive name").get_by_role(
            "button", name="Revoke", exact=True
        ).click()
        fits(page)
        page.get_by_role("link", name="My Applications").click()
        expect(page.get_by_role("heading", name="My Applications", level=1)).to_be_visible()
        fits(page)
        page.screenshot(path=str(screenshots / f"applications-{width}.png"), full_page=True)
    finally:
        context.close()


def test_my_applications_copies_the_clone_url_and_a_complete_settings_xml(
    page: Page, server: LiveServer, person: Person
) -> None:
    import xml.etree.ElementTree as ElementTree

    project_id = make_project(server, person.username, "browser-copy")
    signed_in(page, person)
    page.goto("/applications")
    page.get_by_role("button", name=f"Copy the clone URL of {project_id}").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == f"{server.base_url}/git/{project_id}.git"
    page.get_by_role("button", name=f"Copy the settings.xml for {project_id}").click()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    settings = ElementTree.fromstring(copied)
    server_entry = settings.find("servers/server")
    assert (server_entry.findtext("id"), server_entry.findtext("username")) == ("tokensmith-studio", person.username)
    assert server_entry.findtext("password") == "PASTE-A-PERSONAL-ACCESS-TOKEN-HERE"
    repository = settings.find("profiles/profile/repositories/repository")
    assert (repository.findtext("id"), repository.findtext("url")) == (
        "tokensmith-studio",
        f"{server.base_url}/maven/studio/",
    )
    assert settings.findtext("activeProfiles/activeProfile") == settings.findtext("profiles/profile/id")


def test_my_applications_fills_the_settings_xml_with_a_maven_token_and_maven_uses_it(
    page: Page, server: LiveServer, person: Person, tmp_path: Path
) -> None:
    """Issue 18: the README said My Applications shows the settings.xml entry filled in; it held a
    placeholder. "Fill in a token" makes a maven:read token and puts it in the entry, shown once;
    the entry copied from the page, as it is, lets real Maven download a release."""
    import shutil
    import subprocess

    from tests.conftest import unavailable
    from tests.support.client import project_with_a_commit

    if (
        not shutil.which("mvn")
        or not Path("/usr/share/maven-repo/org/apache/maven/plugins/maven-dependency-plugin").is_dir()
    ):
        unavailable("mvn with Debian's maven-dependency-plugin is not installed")
    project_id = project_with_a_commit(server, person.username, tmp_path)
    with server.client(auth=(person.username, server.create_token(person.username, "releases"))) as api:
        released = api.post(
            f"/studio/v2/project/{project_id}/releases", json={"revision": "master", "versionName": "1.0.0"}
        )
        assert released.status_code == 201, released.text
    signed_in(page, person)
    page.get_by_role("link", name="My Applications").click()
    page.get_by_role("button", name=f"Fill in a token for the settings.xml of {project_id}").click()
    expect(page.get_by_role("heading", name="Your new token “Maven settings.xml”, filled in below")).to_be_visible()
    token = shown_token(page)
    page.get_by_role("button", name=f"Copy the settings.xml for {project_id}").click()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert f"<password>{token}</password>" in copied and "PASTE-A-PERSONAL-ACCESS-TOKEN-HERE" not in copied
    me = call_me(server, person.username, token).json()["token"]
    assert (me["name"], me["scopes"], me["projects"], me["allowed_ips"]) == (
        "Maven settings.xml",
        ["maven:read"],
        None,
        None,
    )

    # Central is out of reach here: Debian's copy of it stands in (RECIPES), nothing else changes.
    settings = tmp_path / "settings.xml"
    settings.write_text(
        copied.replace(
            "<settings>",
            "<settings><mirrors><mirror><id>debian</id><mirrorOf>central"
            "</mirrorOf><url>file:///usr/share/maven-repo</url></mirror></mirrors>",
            1,
        )
    )
    maven = subprocess.run(
        [
            "mvn",
            "-B",
            "-q",
            "-s",
            str(settings),
            f"-Dmaven.repo.local={tmp_path / 'm2'}",
            "dependency:get",
            f"-Dartifact=com.acme.studio:{project_id}:1.0.0",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert maven.returncode == 0, maven.stdout[-2000:]
    assert (tmp_path / "m2" / "com" / "acme" / "studio" / project_id / "1.0.0" / f"{project_id}-1.0.0.jar").exists()

    page.reload()  # shown once: the page again, the placeholder back, nothing posted twice
    expect(page.get_by_test_id("new-token")).to_have_count(0)
    expect(page.get_by_test_id("settings-xml")).to_contain_text("PASTE-A-PERSONAL-ACCESS-TOKEN-HERE")
    page.get_by_role("button", name=f"Fill in a token for the settings.xml of {project_id}").click()
    expect(page.get_by_role("heading", name="Your new token “Maven settings.xml (2)”, filled in below")).to_be_visible()
    shown_token(page)
