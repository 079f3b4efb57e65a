"""The REST API over real HTTP, against a real server on loopback."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from tests.support.ledger import remember
from tokensmith.audit import trail
from tokensmith.clock import utcnow
from tokensmith.store.models import AuditEvent, PersonalToken
from tokensmith.tokens import format as token_format
from tokensmith.web.schemas import Me

PASSWORD = "the web site's password"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def alice(server) -> str:
    """A fresh user with a password, on the shared server."""
    name = unique("alice")
    server.create_user(name, password=PASSWORD)
    return name


def me(server, **kwargs) -> httpx.Response:
    with server.client() as client:
        return client.get("/api/v1/me", **kwargs)


def assert_refused(response: httpx.Response, error: str, *words: str) -> dict:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith('Basic realm="tokensmith"')
    body = response.json()
    assert body["error"] == error, body
    for word in words:
        assert word in body["message"], body["message"]
    return body


# --- tokens in use ---------------------------------------------------------------------------------


def test_basic_and_bearer_name_the_user_and_the_token(server, alice):
    token = server.create_token(alice, "CI Chain")
    for kwargs in ({"auth": (alice, token)}, {"headers": {"Authorization": f"Bearer {token}"}}, {"auth": (token, "")}):
        response = me(server, **kwargs)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["user"]["username"] == alice
        assert body["authenticated_with"] == "token"
        assert body["token"]["name"] == "CI Chain"
        assert "token" not in body["token"] or body["token"].get("token") is None
    row = server.used_token_row(alice, "CI Chain")
    assert row.last_used_at is not None and row.last_used_ip == "127.0.0.1"
    assert row.last_used_agent.startswith("python-httpx/")


def test_me_answers_exactly_its_documented_schema(server, alice):
    """/api/v1/me serialises its answer itself: it must still be exactly the Me model, with the
    token's fields as GET /api/v1/tokens shows them."""
    token = server.create_token(alice, "schema check", expires_at=utcnow() + timedelta(days=2))
    me(server, auth=(alice, token))  # a first use, so that "last used" is filled in
    server.used_token_row(alice, "schema check")
    response = me(server, auth=(alice, token))
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert Me.model_validate(body).model_dump(mode="json") == body
    with server.client() as client:
        listed = [
            item for item in client.get("/api/v1/tokens", auth=(alice, token)).json() if item["name"] == "schema check"
        ]
    where = listed[0].pop("last_used_ips")  # the listing's alone: /api/v1/me reads no more than the check
    assert body["token"] == listed[0]
    assert [(seen["ip"], seen["agent"][:13]) for seen in where] == [("127.0.0.1", "python-httpx/")]
    assert body["token"]["expires_at"].endswith("Z") and body["token"]["last_used_ip"] == "127.0.0.1"
    assert body["user"] == {"username": alice, "email": f"{alice}@example.test", "is_admin": False}


def test_the_token_list_never_shows_a_secret(server, alice):
    token = server.create_token(alice, "one")
    server.create_token(alice, "two")
    with server.client(auth=(alice, token)) as client:
        listed = client.get("/api/v1/tokens")
    assert listed.status_code == 200
    assert sorted(item["name"] for item in listed.json()) == ["one", "two"]
    assert token not in listed.text and token[4:-4] not in listed.text
    assert all(
        set(item) >= {"id", "name", "hint", "created_at", "expires_at", "last_used_at"} for item in listed.json()
    )


def test_revoked_token_is_refused_and_the_rest_keep_working(server, alice):
    lost = server.create_token(alice, "lost laptop")
    kept = server.create_token(alice, "desktop")
    lost_id = server.token_row(alice, "lost laptop").id
    with server.client(auth=(alice, kept)) as client:
        assert client.delete(f"/api/v1/tokens/{lost_id}").status_code == 204
        assert client.delete(f"/api/v1/tokens/{lost_id}").status_code == 404
    assert_refused(me(server, auth=(alice, lost)), "token_revoked", "revoked on", "by its owner", "/tokens")
    assert me(server, auth=(alice, kept)).status_code == 200


def test_nobody_revokes_anybody_elses_token(server, alice):
    bob = unique("bob")
    server.create_user(bob)
    alices = server.create_token(alice, "mine")
    bobs = server.create_token(bob, "his")
    with server.client(auth=(bob, bobs)) as client:
        response = client.delete(f"/api/v1/tokens/{server.token_row(alice, 'mine').id}")
        assert response.status_code == 404 and response.json()["error"] == "not_found"
        assert client.delete("/api/v1/tokens/99999999").status_code == 404
        assert client.delete("/api/v1/tokens/not-a-number").status_code == 404  # no such token
        assert client.delete(f"/api/v1/tokens/{2**40}").status_code == 422
    assert me(server, auth=(alice, alices)).status_code == 200


def test_an_expired_token_is_refused_with_the_date(server, alice):
    token = server.create_token(alice, "short-lived", expires_at=utcnow() + timedelta(days=1))
    assert me(server, auth=(alice, token)).status_code == 200
    with server.store() as session:  # a day passes
        session.execute(
            update(PersonalToken)
            .where(PersonalToken.hint == token_format.hint(token, "tks_"))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert_refused(me(server, auth=(alice, token)), "token_expired", "expired on", "/tokens")


def test_a_token_rotates_itself(server, alice):
    old = server.create_token(alice, "CI Chain", expires_at=utcnow() + timedelta(days=30))
    before = server.token_row(alice, "CI Chain")
    with server.client(auth=(alice, old)) as client:
        response = client.post(f"/api/v1/tokens/{before.id}/rotate")
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"  # it carries a secret
    body = response.json()
    new = remember(body["token"])
    assert new != old and token_format.parse(new, "tks_")
    assert body["name"] == "CI Chain" and body["scopes"] == before.scopes
    assert body["expires_at"].startswith(before.expires_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert me(server, auth=(alice, new)).json()["token"]["id"] == body["id"]


def test_a_rotated_token_used_again_revokes_its_replacement(server, alice):
    """Rotation reuse: the old secret still in use means it was copied before the rotation, so the
    copier may hold the new one too. Both are refused, and the owner reads why."""
    old = server.create_token(alice, "Deploy Chain")
    with server.client(auth=(alice, old)) as client:
        rotated = client.post(f"/api/v1/tokens/{server.token_row(alice, 'Deploy Chain').id}/rotate").json()
    new = remember(rotated["token"])
    assert me(server, auth=(alice, new)).status_code == 200
    refused = assert_refused(
        me(server, auth=(alice, old)),
        "token_revoked",
        "rotated",
        "somebody copied it before the rotation",
        "has been revoked as well",
    )
    assert "/tokens" in refused["message"] + str(refused.get("advice", ""))
    assert_refused(me(server, auth=(alice, new)), "token_revoked", "the token it replaced was used after its rotation")
    with server.store() as session:
        events = [e for e in trail.events_for_user(session, server.user(alice).id) if e.action == "token.revoked"]
        reuse = [e for e in events if e.details["reason"] == "rotation_reuse"]
        assert [e.details["token_id"] for e in reuse] == [rotated["id"]]
        assert "had been copied before it was rotated" in trail.describe(reuse[0])


def test_a_token_cannot_rotate_another(server, alice):
    first = server.create_token(alice, "first")
    server.create_token(alice, "second")
    second_id = server.token_row(alice, "second").id
    with server.client(auth=(alice, first)) as client:
        response = client.post(f"/api/v1/tokens/{second_id}/rotate")
    assert response.status_code == 403 and "only itself" in response.json()["message"]


def test_someone_elses_token_id_is_a_404_on_rotate_as_everywhere(server, alice):
    """Whether an id is somebody's token is nobody else's business: the same 404, in the same
    words, as an id that was never issued."""
    mine = server.create_token(alice, "mine")
    stranger = unique("stranger")
    server.create_user(stranger)
    server.create_token(stranger, "theirs")
    theirs = server.token_row(stranger, "theirs").id
    with server.client(auth=(alice, mine)) as client:
        answers = [client.post(f"/api/v1/tokens/{token_id}/rotate") for token_id in (theirs, 2**31 - 1)]
        revoke = client.delete(f"/api/v1/tokens/{theirs}")
    assert [a.status_code for a in answers] == [404, 404] and revoke.status_code == 404
    assert answers[0].json() == answers[1].json() == revoke.json()
    assert me(server, auth=(stranger, server.create_token(stranger, "still works"))).status_code == 200
    assert server.token_row(stranger, "theirs").revoked_at is None


def test_anyone_can_report_leaked_tokens_without_learning_anything(server, alice):
    leaked = server.create_token(alice, "pasted in a chat")
    safe = server.create_token(alice, "safe")
    with server.client() as client:
        real = client.post("/api/v1/tokens/revoke", json={"tokens": [leaked, "junk"]})
        fake = client.post("/api/v1/tokens/revoke", json={"tokens": [token_format.generate("tks_")]})
        again = client.post("/api/v1/tokens/revoke", json={"tokens": [leaked]})
    assert real.status_code == fake.status_code == again.status_code == 202
    assert real.json() == fake.json() == again.json()
    assert_refused(me(server, auth=(alice, leaked)), "token_revoked", "reported leaked")
    assert me(server, auth=(alice, safe)).status_code == 200
    with server.store() as session:
        user = server.user(alice)
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.user_id == user.id, AuditEvent.action == "token.leak_reported")
        ).all()
    assert len(events) == 1 and events[0].details["name"] == "pasted in a chat"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"not json", "must be JSON like"),
        (b'{"tokens": "x"}', "tokens: Input should be a valid list"),
        (b'{"tokens": []}', "tokens: List should have at least 1 item"),
        (b"[]", "not of the right shape"),
        (b'{"tokens": [' + b'"x",' * 100 + b'"x"]}', "tokens: List should have at most 100 items"),
        (b'{"tokens": ["' + b"x" * 201 + b'"]}', "tokens.0: String should have at most 200 characters"),
    ],
)
def test_malformed_leak_reports_get_a_clear_422(server, body, words):
    with server.client() as client:
        response = client.post("/api/v1/tokens/revoke", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_input"
    assert words in response.json()["message"]
    assert b"x" * 50 not in response.content  # what was sent is never echoed


# --- what is refused, and how it is said ---------------------------------------------------------


def test_a_password_is_refused_with_directions_to_a_token(server, alice):
    body = assert_refused(
        me(server, auth=(alice, PASSWORD)),
        "password_not_accepted",
        "Passwords are not accepted here",
        "My Tokens",
        f"{server.base_url}/tokens",
    )
    # The same words for a username that does not exist: nothing to learn about accounts.
    assert me(server, auth=("nobody-" + alice, "some password!")).json() == body


def test_warn_policy_accepts_a_password_with_deprecation_headers_and_records_it(warn_server):
    name = unique("walt")
    warn_server.create_user(name, password=PASSWORD)
    response = me(warn_server, auth=(name, PASSWORD), headers={"User-Agent": "Apache-Maven/3.8.7"})
    assert response.status_code == 200, response.text
    assert response.json()["authenticated_with"] == "password"
    assert response.headers["deprecation"] == "true"
    assert response.headers["warning"].startswith('299 tokensmith "Password authentication is deprecated')
    assert f"{warn_server.base_url}/tokens" in response.headers["warning"]
    with warn_server.store() as session:
        user = warn_server.user(name)
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.user_id == user.id, AuditEvent.action == "auth.password_used")
        ).all()
    assert [e.details["agent"] for e in events] == ["Apache-Maven/3.8.7"]
    wrong = me(warn_server, auth=(name, "not the password!"))
    assert_refused(wrong, "bad_credentials", "Incorrect username or password")
    token = warn_server.create_token(name, "still best")
    with_token = me(warn_server, auth=(name, token))
    assert with_token.status_code == 200 and "deprecation" not in with_token.headers


def test_a_wrong_checksum_is_refused_as_mistyped(server, alice):
    token = server.create_token(alice, "typo")
    typo = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert_refused(me(server, auth=(alice, typo)), "credential_malformed", "checksum", "/tokens")
    assert_refused(me(server, auth=(alice, token[:-3])), "credential_malformed", "truncated")


def test_a_basic_username_that_does_not_own_the_token_is_refused(server, alice):
    token = server.create_token(alice, "mine")
    mallory = unique("mallory")
    server.create_user(mallory)
    assert_refused(me(server, auth=(mallory, token)), "token_unknown", "Unknown or mistyped token")
    assert_refused(me(server, auth=("no-such-user", token)), "token_unknown", "Unknown or mistyped token")


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    "header, words",
    [
        ("", "empty"),
        ("Basic", "empty"),
        ("Basic !!!not-base64!!!", "not valid base64"),
        (basic(b"no colon at all"), "no ':'"),
        (basic(b"alice:\xff\xfe\xfd"), "not valid UTF-8"),
        (basic(b"\xc3\x28:tks_x"), "not valid UTF-8"),
        ("Bearer", "empty"),
        ("Digest username=alice", "Unsupported authorization scheme"),
        (basic(b"alice:"), "empty password"),
    ],
)
def test_malformed_authorization_headers_get_a_clear_401(server, header, words):
    response = me(server, headers={"Authorization": header})
    body = assert_refused(response, "credential_malformed", words)
    assert "Traceback" not in response.text and len(body["message"]) < 400


@pytest.mark.parametrize("header", ["Basic " + "QUFB" * 4096, "Bearer tks_" + "a" * 1_000_000])
def test_an_oversized_authorization_header_is_a_431_before_anything_else(server, header):
    """Too long to be a credential (a token is 42 characters): 431, the header's size limit,
    whatever it holds."""
    response = me(server, headers={"Authorization": header})
    assert response.status_code == 431
    assert response.json()["error"] == "header_too_large"
    assert "at most 4,096 are accepted" in response.json()["message"] and len(response.content) < 400


def test_an_authorization_header_with_raw_non_ascii_bytes_is_refused_cleanly(server):
    response = me(server, headers=[(b"Authorization", b"Basic \xe9\xe9\xe9")])
    assert_refused(response, "credential_malformed", "base64")


def test_no_credentials_get_the_challenge_git_and_maven_wait_for(server):
    response = me(server)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="tokensmith", charset="UTF-8"'
    assert response.json()["error"] == "authentication_required"


def test_a_disabled_user_is_locked_out_at_once(server):
    name = unique("leaver")
    server.create_user(name, password=PASSWORD)
    token = server.create_token(name, "build box")
    assert me(server, auth=(name, token)).status_code == 200
    result = server.cli("users", "disable", name)
    assert result.returncode == 0, result.stderr
    assert "1 token(s) revoked" in result.stderr
    assert_refused(me(server, auth=(name, token)), "token_revoked", "account was disabled")


# --- operations ------------------------------------------------------------------------------------


def test_health_metrics_and_docs_need_no_credentials(server, alice):
    token = server.create_token(alice, "metrics")
    me(server, auth=(alice, token))
    me(server, auth=(alice, PASSWORD))
    me(server, headers={"Authorization": "Basic !!!"})
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        metrics = client.get("/metrics")
        docs = client.get("/docs")
        spec = client.get("/openapi.json").json()
    assert metrics.status_code == 200
    counts = {
        (method, outcome): float(value)
        for method, outcome, value in re.findall(
            r'^tokensmith_authentications_total\{method="(\w+)",outcome="(\w+)"\} (\S+)$', metrics.text, re.M
        )
    }
    for outcome in ("ok", "unknown", "revoked", "expired", "malformed"):
        assert ("token", outcome) in counts
    assert ("password", "password_refused") in counts
    assert counts["token", "ok"] >= 1 and counts["token", "malformed"] >= 1
    assert counts["password", "password_refused"] >= 1
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert {
        "/api/v1/me",
        "/api/v1/tokens",
        "/api/v1/tokens/{token_id}",
        "/api/v1/tokens/{token_id}/rotate",
        "/api/v1/tokens/revoke",
        "/healthz",
    } <= set(spec["paths"])


def test_unknown_routes_and_methods_answer_in_json(server):
    with server.client() as client:
        missing = client.get("/api/v1/nothing")
        wrong_method = client.put("/api/v1/me")
    assert missing.status_code == 404 and missing.json()["error"] == "http_error"
    assert wrong_method.status_code == 405
