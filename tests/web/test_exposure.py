"""What the server trusts and what it lets out: forwarded addresses only from trusted proxies,
/metrics only to this machine or a secret, no cache for an answer with a secret in it, and a
405 that says which methods are allowed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.ledger import remember
from tests.support.pages import csrf_of
from tests.support.servers import LiveServer

METRICS_SECRET = remember("metrics-" + uuid.uuid4().hex + uuid.uuid4().hex)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server that trusts a proxy on this machine, and keeps /metrics behind a secret."""
    live = LiveServer(tmp_path_factory.mktemp("proxied") / "data", name="proxied", env={
        "TOKENSMITH_TRUSTED_PROXIES": "127.0.0.1/32, 10.0.0.0/8",
        "TOKENSMITH_METRICS_TOKEN": METRICS_SECRET,
    }).start()
    yield live
    live.stop()


def last_used_from(live: LiveServer, forwarded_for: str | None) -> str | None:
    user = unique("forwarded")
    live.create_user(user)
    token = live.create_token(user, "laptop")
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    with live.client() as client:
        assert client.get("/api/v1/me", auth=(user, token), headers=headers).status_code == 200
    return live.used_token_row(user, "laptop").last_used_ip


# --- X-Forwarded-For -----------------------------------------------------------------------------


def test_a_forwarded_address_is_ignored_unless_a_proxy_is_trusted(server):
    assert last_used_from(server, "203.0.113.9") == "127.0.0.1"


def test_a_trusted_proxy_names_the_client(behind_proxy):
    assert last_used_from(behind_proxy, "203.0.113.9") == "203.0.113.9"
    # Each proxy appends the address it saw: the client is the last one not trusted.
    assert last_used_from(behind_proxy, "198.51.100.7, 203.0.113.9, 10.1.2.3") == "203.0.113.9"
    assert last_used_from(behind_proxy, "not an address") is None
    assert last_used_from(behind_proxy, "fe80::1%" + "z" * 60) is None  # an address, but longer than one is kept


def failed_sign_ins_then_the_right_password(live: LiveServer, spoofed: bool) -> int:
    user, password = unique("throttled"), remember("the right password " + uuid.uuid4().hex)
    live.create_user(user, password=password)
    with live.client() as browser:
        for attempt in range(10):
            form = browser.get("/login")
            headers = {"X-Forwarded-For": f"198.51.100.{attempt + 1}"} if spoofed else {}
            wrong = browser.post("/login", headers=headers, data={
                "username": user, "password": "wrong" * 3, "csrf_token": csrf_of(form), "next": "/tokens"})
            assert wrong.status_code == 401
        form = browser.get("/login")
        return browser.post("/login", headers={"X-Forwarded-For": "198.51.100.200"} if spoofed else {}, data={
            "username": user, "password": password, "csrf_token": csrf_of(form), "next": "/tokens"}).status_code


def test_a_forged_forwarded_address_does_not_reset_the_sign_in_throttle(server):
    """From this machine, X-Forwarded-For is believed from no one: ten failures from one
    address throttle that address, whatever each request claimed."""
    assert failed_sign_ins_then_the_right_password(server, spoofed=True) == 429


def test_the_proxy_setting_is_checked_at_start(tmp_path):
    live = LiveServer(tmp_path / "data", env={"TOKENSMITH_TRUSTED_PROXIES": "10.0.0.0/8, nginx"})
    with pytest.raises(Exception, match="TOKENSMITH_TRUSTED_PROXIES"):
        live.start(timeout=120)
    assert "'nginx' is neither" in live.console()


# --- /metrics ------------------------------------------------------------------------------------


def test_metrics_are_for_this_machine_when_no_secret_is_set(server, behind_proxy):
    with server.client() as client:
        answer = client.get("/metrics")
    assert answer.status_code == 200 and "tokensmith_authentications_total" in answer.text


def test_metrics_from_elsewhere_need_the_secret(behind_proxy):
    with behind_proxy.client() as client:
        for headers in ({}, {"Authorization": "Bearer wrong-secret-of-enough-length"},
                        {"Authorization": f"Basic {METRICS_SECRET}"}):
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 401, refused.text
            assert refused.headers["www-authenticate"] == 'Bearer realm="tokensmith-metrics"'
            assert "TOKENSMITH_METRICS_TOKEN" in refused.json()["message"]
        allowed = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_SECRET}"})
    assert allowed.status_code == 200 and "tokensmith_usage_records_total" in allowed.text


def test_metrics_without_a_secret_are_refused_to_another_machine(tmp_path):
    live = LiveServer(tmp_path / "data", env={"TOKENSMITH_TRUSTED_PROXIES": "127.0.0.1"}).start()
    try:
        with live.client() as client:
            refused = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
            here = client.get("/metrics")
    finally:
        live.stop()
    assert refused.status_code == 403 and "this machine only" in refused.json()["message"]
    assert here.status_code == 200


# --- secrets are not cached; 405 says what is allowed ---------------------------------------------


def test_an_instance_key_is_never_cached(server):
    user = unique("instance-owner")
    server.create_user(user)
    project = unique("cached")
    assert server.cli("projects", "create", project, "--group-id", "com.acme", "--owner", user).returncode == 0
    with server.client(auth=(user, server.create_token(user, "registers"))) as client:
        registered = client.post("/api/v1/instances", json={"project": project, "description": "staging"})
    assert registered.status_code == 201
    remember(registered.json()["instance_key"])
    assert registered.headers["cache-control"] == "no-store" and registered.headers["pragma"] == "no-cache"


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/api/v1/me", "GET"),
    ("POST", "/healthz", "GET"),
    ("PATCH", "/api/v1/tokens/1", "DELETE"),
    ("DELETE", "/tokens", "GET, POST"),
    ("POST", "/static/style.css", "GET, HEAD"),
    ("PUT", "/git/demo.git/info/refs", "GET, POST"),
    ("POST", "/maven/studio/com/acme/x.pom", "GET, HEAD"),
])
def test_a_405_names_the_methods_allowed(server, method, path, allowed):
    with server.client() as client:
        answer = client.request(method, path)
    assert answer.status_code == 405
    assert answer.headers["allow"] == allowed
    assert allowed in answer.text


def test_a_405_never_shows_a_traceback(server):
    with server.client() as client:
        answer = client.request("OPTIONS", "/api/v1/tokens")
    assert answer.status_code == 405 and "Traceback" not in answer.text
