"""The web pages over real HTTP, as a browser without JavaScript would use them.

(The real-browser journey is in test_browser.py; this file covers the form mechanics.)
"""

from __future__ import annotations

import html
import re
import uuid
from datetime import datetime, timedelta, timezone

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
    [("", 422, "Give the token a name"), ("x" * 101, 422, "at most 100"),
     ("bell\x07", 422, "control"), ("dup", 409, "already have a token named")],
)
def test_bad_names_are_refused_on_the_page_and_nothing_is_created(server, person, token_name, status, words):
    name, client = person
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
    name, client = person
    create(client, "victim")
    token_id = re.search(r'data-token-id="(\d+)"', client.get("/tokens").text).group(1)
    for path, data in (("/tokens", {"name": "forged"}), (f"/tokens/{token_id}/revoke", {}),
                       (f"/tokens/{token_id}/revoke", {"csrf_token": "0" * 64}), ("/logout", {})):
        response = client.post(path, data=data)
        assert response.status_code == 403 and "did not come from this site" in response.text
    page = client.get("/tokens").text
    assert "forged" not in page and "victim" in page


def test_expiration_choices(server, person):
    _name, client = person
    assert create(client, "month", expiration="30").status_code == 201
    day = datetime.now(timezone.utc).date() + timedelta(days=60)
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
        response = client.post("/login", data={"username": name, "password": PASSWORD,
                                               "csrf_token": csrf_of(form), "next": "https://evil.example/"})
        assert response.headers["location"] == "/tokens"


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
