"""The web pages over real HTTP, as a browser without JavaScript would use them.

(The real-browser journey is in test_browser.py; this file covers the form mechanics.)
"""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support.ledger import remember
from tests.support.pages import csrf_of, sign_in

PASSWORD = "my browser password"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def person(server):
    name = unique("pat")
    server.create_user(name, password=PASSWORD)
    with server.client() as client:
        assert sign_in(client, name, PASSWORD).status_code == 303
        yield name, client


def create(client: httpx.Client, name: str, **fields: str) -> httpx.Response:
    page = client.get("/tokens")
    return client.post("/tokens", data={"name": name, "csrf_token": csrf_of(page), **fields})


def test_pages_need_a_session(server):
    with server.client() as client:
        response = client.get("/tokens")
        assert response.status_code == 303 and response.headers["location"] == "/login?next=%2Ftokens"
        assert client.get("/").headers["location"] == "/login"
        assert client.get("/applications").status_code == 303


def test_sign_in_sets_a_safe_session_cookie_and_shows_the_tabs(server):
    name = unique("sam")
    server.create_user(name, password=PASSWORD)
    with server.client() as client:
        response = sign_in(client, name, PASSWORD)
        assert response.status_code == 303 and response.headers["location"] == "/tokens"
        cookie = response.headers["set-cookie"]
        assert "tokensmith_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert "Secure" not in cookie  # served over plain HTTP here
        page = client.get("/tokens")
    assert page.status_code == 200
    for label in ("My Tokens", "My Applications", "Sign out", "Token name", "Expiration", "Create token"):
        assert label in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_sign_in_without_its_csrf_token_is_refused(server):
    name = unique("sid")
    server.create_user(name, password=PASSWORD)
    with server.client() as client:
        client.get("/login")
        response = client.post("/login", data={"username": name, "password": PASSWORD})
        assert response.status_code == 403 and "form has expired" in response.text
        assert "tokensmith_session" not in client.cookies


def test_a_wrong_password_or_a_token_does_not_sign_in(server):
    name = unique("tom")
    server.create_user(name, password=PASSWORD)
    token = server.create_token(name, "cli")
    with server.client() as client:
        wrong = sign_in(client, name, PASSWORD + "x")
        assert wrong.status_code == 401 and "Incorrect username or password" in wrong.text
        with_token = sign_in(client, name, token)
        assert with_token.status_code == 401 and "cannot sign in to the web site" in with_token.text
        assert token not in with_token.text
        assert client.get("/tokens").status_code == 303


def test_the_new_token_is_shown_once(server, person):
    name, client = person
    response = create(client, "CI Chain")
    assert response.status_code == 201
    secret = remember(re.search(r'data-testid="new-token" id="new-token">(\S+)</code>', response.text).group(1))
    assert "will not be shown again" in response.text and ">Copy</button>" in response.text
    assert response.headers["cache-control"] == "no-store"
    again = client.get("/tokens")
    assert secret not in again.text and secret[4:-4] not in again.text
    assert "CI Chain" in again.text and f"tks_…{secret[-4:]}" in again.text and "Never used" in again.text
    with server.client(auth=(name, secret)) as api:
        assert api.get("/api/v1/me").status_code == 200
    server.used_token_row(name, "CI Chain")  # written behind the request, within a moment
    used = client.get("/tokens")
    assert "127.0.0.1" in used.text and "python-httpx/" in used.text


@pytest.mark.parametrize(
    "token_name, status, words",
    [
        ("", 422, "Give the token a name"),
        ("x" * 101, 422, "at most 100"),
        ("bell\x07", 422, "control"),
        ("dup", 409, "already have a token named"),
    ],
)
def test_bad_names_are_refused_on_the_page_and_nothing_is_created(server, person, token_name, status, words):
    _name, client = person
    create(client, "dup")
    before = client.get("/tokens").text.count("data-token-id=")
    response = create(client, token_name)
    assert response.status_code == status and words in html.unescape(response.text)
    assert 'data-testid="new-token"' not in response.text
    assert client.get("/tokens").text.count("data-token-id=") == before


def test_markup_in_a_name_is_shown_as_text(server, person):
    _name, client = person
    create(client, "<script>alert(1)</script>")
    page = client.get("/tokens").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_form_posts_without_their_csrf_token_change_nothing(server, person):
    _name, client = person
    create(client, "victim")
    token_id = re.search(r'data-token-id="(\d+)"', client.get("/tokens").text).group(1)
    for path, data in (
        ("/tokens", {"name": "forged"}),
        (f"/tokens/{token_id}/revoke", {}),
        (f"/tokens/{token_id}/revoke", {"csrf_token": "0" * 64}),
        ("/logout", {}),
    ):
        response = client.post(path, data=data)
        assert response.status_code == 403 and "did not come from this site" in response.text
    page = client.get("/tokens").text
    assert "forged" not in page and "victim" in page


def test_expiration_choices(server, person):
    _name, client = person
    assert create(client, "month", expiration="30").status_code == 201
    day = datetime.now(UTC).date() + timedelta(days=60)
    assert create(client, "dated", expiration="date", expires_on=day.isoformat()).status_code == 201
    assert create(client, "far", expiration="date", expires_on="2099-01-31").status_code == 422
    assert create(client, "past", expiration="date", expires_on="2001-01-01").status_code == 422
    assert create(client, "garbled", expiration="date", expires_on="soon").status_code == 422
    assert create(client, "odd", expiration="12").status_code == 422
    page = client.get("/tokens").text
    assert f"{day.isoformat()} 23:59 UTC" in page  # valid through the whole of the chosen day
    ignored = create(client, "ambiguous", expiration="never", expires_on=day.isoformat())
    assert ignored.status_code == 422 and "did not choose" in html.unescape(ignored.text)


def test_revoke_on_the_page(server, person):
    name, client = person
    response = create(client, "doomed")
    secret = remember(re.search(r'data-testid="new-token" id="new-token">(\S+)</code>', response.text).group(1))
    page = client.get("/tokens")
    token_id = re.search(r'data-token-id="(\d+)"', page.text).group(1)
    revoked = client.post(f"/tokens/{token_id}/revoke", data={"csrf_token": csrf_of(page)})
    assert revoked.status_code == 303
    after = client.get(revoked.headers["location"]).text
    assert "was revoked" in after and "data-token-id" not in after
    assert "Token “doomed” revoked by you" in html.unescape(after)
    with server.client(auth=(name, secret)) as api:
        assert "revoked" in api.get("/api/v1/me").json()["message"]


def test_sign_out_ends_the_session_on_the_server(server, person):
    _name, client = person
    cookie = client.cookies["tokensmith_session"]
    page = client.get("/tokens")
    assert client.post("/logout", data={"csrf_token": csrf_of(page)}).status_code == 303
    with server.client() as thief:
        thief.cookies.set("tokensmith_session", cookie)
        assert thief.get("/tokens").status_code == 303


def test_disabling_a_user_ends_their_browser_session(server, person):
    name, client = person
    assert client.get("/tokens").status_code == 200
    assert server.cli("users", "disable", name).returncode == 0
    assert client.get("/tokens").status_code == 303
    assert sign_in(client, name, PASSWORD).status_code in (401, 403)


def test_next_never_leaves_the_site(server):
    name = unique("nia")
    server.create_user(name, password=PASSWORD)
    with server.client() as client:
        form = client.get("/login?next=//evil.example/")
        assert 'value="/tokens"' in form.text
        response = client.post(
            "/login",
            data={"username": name, "password": PASSWORD, "csrf_token": csrf_of(form), "next": "https://evil.example/"},
        )
        assert response.headers["location"] == "/tokens"


@pytest.mark.slow  # a server of its own
def test_password_guessing_is_stopped_with_a_clear_429(tmp_path):
    from tests.conftest import start_server

    live = start_server(tmp_path, name="throttle")
    try:
        live.create_user("guessed", password=PASSWORD)
        token = live.create_token("guessed", "still works")
        with live.client() as client:
            for attempt in range(10):
                assert sign_in(client, "guessed", f"guess number {attempt}").status_code == 401
            refused = sign_in(client, "guessed", PASSWORD)  # even the right one, for now
            assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
            assert int(refused.headers["retry-after"]) > 0
            assert "tokensmith_session" not in client.cookies
        with live.client(auth=("guessed", token)) as api:
            assert api.get("/api/v1/me").status_code == 200  # tokens are not throttled
    finally:
        live.stop()


# --- limits, Regenerate, Inactive tokens (the form as a browser without JavaScript posts it) ------------


def secret_of(response: httpx.Response) -> str:
    return remember(re.search(r'data-testid="new-token" id="new-token">(\S+)</code>', response.text).group(1))


def row_of(page: str, name: str) -> str:
    """The HTML of the row (live or inactive) whose name cell is ``name``."""
    for row in re.findall(r"<tr data-(?:inactive-)?token-id=.*?</tr>", page, re.S):
        if f'aria-hidden="true">Name</span>{html.escape(name)}</td>' in row:
            return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)))
    raise AssertionError(f"no row named {name!r}")


def test_a_read_only_token_for_one_project_from_one_network(server, person):
    name, client = person
    project = unique("pages-lim")
    assert server.cli("projects", "create", project, "--group-id", "com.acme", "--owner", name).returncode == 0
    page = client.get("/tokens").text
    for label in (
        "Everything",
        "Read only",
        "Custom",
        "All my projects, now and later",
        "Allowed addresses",
        "Clone and fetch your projects",
    ):
        assert label in page
    response = create(
        client, "CI reader", access="read", project_choice="some", projects=project, allowed_ips="127.0.0.0/8\n::1"
    )
    assert response.status_code == 201, html.unescape(response.text)
    secret = secret_of(response)
    row = row_of(client.get("/tokens").text, "CI reader")
    assert f"Access: Read only Projects: {project} From: 127.0.0.0/8, ::1/128" in row
    with server.client(auth=(name, secret)) as api:
        me = api.get("/api/v1/me").json()["token"]
        assert (me["scopes"], me["projects"], me["allowed_ips"]) == (
            ["api:read", "git:read", "maven:read"],
            [project],
            ["127.0.0.0/8", "::1/128"],
        )
        assert api.get("/api/v1/tokens").status_code == 200
        refused = api.delete(f"/api/v1/tokens/{me['id']}")
        assert refused.status_code == 403 and refused.headers["x-accepted-scopes"] == "api:write"
    custom = create(client, "pusher", access="custom", scopes=["git:write"])
    assert custom.status_code == 201
    assert "Access: git:read, git:write Projects: All my projects From: anywhere" in row_of(
        client.get("/tokens").text, "pusher"
    )


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"access": "custom"}, "Choose at least one scope"),
        ({"access": "custom", "scopes": ["api:read", "root"]}, "Unknown scope 'root'"),
        ({"access": "sideways"}, "Choose the token's access"),
        ({"allowed_ips": "10.0.0.1/8"}, "did you mean 10.0.0.0/8?"),
        ({"allowed_ips": "10.0.0.0/8\nmy laptop"}, "'my' is not an address or a CIDR block"),
        ({"project_choice": "some", "projects": "not-mine-at-all"}, "You are not a member of 'not-mine-at-all'"),
        ({"project_choice": "some"}, "Choose at least one project"),
    ],
    ids=[
        "no-scope",
        "unknown-scope",
        "unknown-preset",
        "host-bits",
        "not-an-address",
        "unreachable-project",
        "no-project",
    ],
)
def test_bad_limits_are_refused_on_the_page_and_nothing_is_created(server, person, fields, words):
    _name, client = person
    before = client.get("/tokens").text.count("data-token-id=")
    response = create(client, "narrow", **fields)
    assert response.status_code == 422 and words in html.unescape(response.text)
    assert 'data-testid="new-token"' not in response.text
    if "allowed_ips" in fields:  # what was typed is kept, to correct
        assert html.escape(fields["allowed_ips"]) in response.text
    assert client.get("/tokens").text.count("data-token-id=") == before


def test_regenerate_gives_a_new_secret_with_the_same_limits_once(server, person):
    name, client = person
    old = secret_of(create(client, "rolling", access="read", allowed_ips="127.0.0.1", expiration="30"))
    page = client.get("/tokens")
    token_id = re.search(r'data-token-id="(\d+)"', page.text).group(1)
    assert "Regenerate" in page.text
    regenerated = client.post(f"/tokens/{token_id}/regenerate", data={"csrf_token": csrf_of(page)})
    assert regenerated.status_code == 200 and "Your regenerated token “rolling”" in html.unescape(regenerated.text)
    assert regenerated.headers["cache-control"] == "no-store"
    new = secret_of(regenerated)
    assert new != old and client.get("/tokens").text.count(new) == 0
    with server.client(auth=(name, new)) as api:
        me = api.get("/api/v1/me").json()["token"]
    with server.client(auth=(name, old)) as api:  # (which revokes the new one too: rotation reuse)
        assert "rotated" in api.get("/api/v1/me").json()["message"]
    assert (me["name"], me["scopes"], me["allowed_ips"]) == (
        "rolling",
        ["api:read", "git:read", "maven:read"],
        ["127.0.0.1/32"],
    )
    assert me["expires_at"] is not None
    after = client.get("/tokens").text
    inactive = html.unescape(after).split("Inactive tokens")[1]
    assert "rolling" in inactive and "Revoked when it was rotated on" in inactive
    assert (
        f"Token “rolling” rotated: a new secret (tks_…{new[-4:]}) replaced the old one (tks_…{old[-4:]}), "
        "which no longer works (scopes: Read only"
    ) in html.unescape(after)
    other = client.post("/tokens/999999/regenerate", data={"csrf_token": csrf_of(page)})
    assert other.status_code == 404 and "no live token" in other.text


def test_a_revoked_token_is_named_and_listed_as_inactive(server, person):
    _name, client = person
    create(client, "short-lived")
    page = client.get("/tokens")
    token_id = re.search(r'data-token-id="(\d+)"', page.text).group(1)
    revoked = client.post(f"/tokens/{token_id}/revoke", data={"csrf_token": csrf_of(page)}, follow_redirects=True)
    text = html.unescape(revoked.text)
    assert re.search(r"The token “short-lived” \(tks_…\w{4}\) was revoked\.", text)
    assert "Inactive tokens" in text and "Revoked by you on" in row_of(revoked.text, "short-lived")
    assert f'data-token-id="{token_id}"' not in revoked.text  # no longer among the live ones
    assert client.get("/tokens?revoked=2147483648").status_code == 422  # past any id: refused, not a 500


def test_a_leak_notice_shows_where_the_owner_used_the_token(server, person):
    name, client = person
    secret = secret_of(create(client, "pasted in a gist"))
    with server.client(auth=(name, secret), headers={"User-Agent": "git/2.47.0"}) as api:
        assert api.get("/api/v1/me").status_code == 200
    server.used_token_row(name, "pasted in a gist")
    with server.client() as reporter:
        assert reporter.post("/api/v1/tokens/revoke", json={"tokens": [secret]}).status_code == 202
    events = html.unescape(client.get("/tokens").text).split("Recent activity")[1]
    notice = next(line for line in events.splitlines() if "reported leaked" in line)
    assert "you last used it on" in notice and "from 127.0.0.1 by git/2.47.0" in notice
    assert "</span>" not in notice.split("git/2.47.0")[1]  # and no "from <reporter>" after it


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory):
    from tests.conftest import start_server

    live = start_server(tmp_path_factory.mktemp("capped"), name="capped", TOKENSMITH_MAX_TOKEN_LIFETIME_DAYS="60")
    yield live
    live.stop()


def test_the_maximum_lifetime_shapes_the_expiry_choices(capped_server):
    name = unique("cap")
    capped_server.create_user(name, password=PASSWORD)
    with capped_server.client() as client:
        assert sign_in(client, name, PASSWORD).status_code == 303
        page = client.get("/tokens").text
        options = re.findall(r'<option value="([^"]+)"[^>]*>([^<]+)</option>', page)
        assert options == [
            ("7", "7 days"),
            ("30", "30 days"),
            ("60", "60 days (the longest allowed)"),
            ("date", "On a date…"),
        ]
        assert re.search(r'<option value="7"\s+selected>', page)  # the first choice, not "never"
        assert "every token expires within 60 days" in page
        assert create(client, "forever", expiration="never").status_code == 422
        assert create(client, "ninety", expiration="90").status_code == 422
        far = datetime.now(UTC).date() + timedelta(days=61)
        beyond = create(client, "far", expiration="date", expires_on=far.isoformat())
        assert beyond.status_code == 422 and "expire within 60 days" in html.unescape(beyond.text)
        assert create(client, "sixty", expiration="60").status_code == 201
    refused = capped_server.cli("tokens", "create", "--user", name, "--name", "cli forever")
    assert refused.returncode == 2 and "expire within 60 days" in refused.stderr and refused.stdout == ""
