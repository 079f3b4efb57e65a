"""What the server trusts and what it lets out: forwarded addresses only from trusted proxies,
/metrics only to this machine or a secret, no cache for an answer with a secret in it, and a
405 that says which methods are allowed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.git import GitUser
from tests.support.ledger import remember
from tests.support.pages import csrf_of
from tests.support.scim import SCIM_JSON, provisioning_secret
from tests.support.servers import LiveServer

pytestmark = pytest.mark.slow  # starts servers of its own (behind a proxy, on other addresses)

METRICS_SECRET = remember("metrics-" + uuid.uuid4().hex + uuid.uuid4().hex)
SCIM_SECRET = provisioning_secret()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server that trusts a proxy on this machine, and keeps /metrics behind a secret."""
    live = LiveServer(
        tmp_path_factory.mktemp("proxied") / "data",
        name="proxied",
        env={
            "TOKENSMITH_TRUSTED_PROXIES": "127.0.0.1/32, 10.0.0.0/8",
            "TOKENSMITH_METRICS_TOKEN": METRICS_SECRET,
            "TOKENSMITH_SCIM_TOKEN": SCIM_SECRET,
        },
    ).start()
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
            wrong = browser.post(
                "/login",
                headers=headers,
                data={"username": user, "password": "wrong" * 3, "csrf_token": csrf_of(form), "next": "/tokens"},
            )
            assert wrong.status_code == 401
        form = browser.get("/login")
        return browser.post(
            "/login",
            headers={"X-Forwarded-For": "198.51.100.200"} if spoofed else {},
            data={"username": user, "password": password, "csrf_token": csrf_of(form), "next": "/tokens"},
        ).status_code


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
        for headers in (
            {},
            {"Authorization": "Bearer wrong-secret-of-enough-length"},
            {"Authorization": f"Basic {METRICS_SECRET}"},
        ):
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


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/v1/me", "GET"),
        ("POST", "/healthz", "GET"),
        ("PATCH", "/api/v1/tokens/1", "DELETE"),
        ("DELETE", "/tokens", "GET, POST"),
        ("POST", "/static/style.css", "GET, HEAD"),
        ("PUT", "/git/demo.git/info/refs", "GET, POST"),
        ("POST", "/maven/studio/com/acme/x.pom", "GET, HEAD"),
    ],
)
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


# --- nothing is sniffed -------------------------------------------------------------------------------


def test_every_answer_tells_browsers_not_to_sniff(behind_proxy, tmp_path):
    """Issue 18: JSON, SCIM, git and Maven answers lacked X-Content-Type-Options. Every answer
    carries it once, successes and refusals alike, whichever layer wrote it."""
    live = behind_proxy
    user, project = unique("sniff"), unique("sniffed")
    live.create_user(user)
    assert live.cli("projects", "create", project, "--group-id", "com.acme", "--owner", user).returncode == 0
    token = live.create_token(user, "everything")
    person = GitUser(tmp_path / "home", user, token)
    person.remember_credentials(live.base_url)
    person.git("clone", f"{live.base_url}/git/{project}.git", str(tmp_path / "work"))
    (tmp_path / "work" / "a.txt").write_text("a\n")
    person.git("add", ".", cwd=tmp_path / "work")
    person.git("commit", "-m", "a", cwd=tmp_path / "work")
    person.git("push", "origin", "HEAD:master", cwd=tmp_path / "work")
    jar = f"/maven/studio/com/acme/{project}/1.0.0/{project}-1.0.0.jar"
    with live.client() as client:
        released = client.post(
            f"/studio/v2/project/{project}/releases",
            auth=(user, token),
            json={"revision": "master", "versionName": "1.0.0"},
        )
        assert released.status_code == 201, released.text
        stylesheet = client.get("/login").text.split('href="/static/style.')[1].split('"')[0]
        scim = {"Authorization": f"Bearer {SCIM_SECRET}", "Content-Type": SCIM_JSON}
        answers = {
            "JSON": client.get("/api/v1/me", auth=(user, token)),
            "JSON 401": client.get("/api/v1/tokens"),
            "JSON 422": client.get("/api/v1/audit", params={"limit": 0}, auth=(user, token)),
            "JSON 404": client.get("/api/v1/nothing-here"),
            "JSON 413": client.post("/api/v1/tokens/revoke", content=b"x" * 70_000),
            "SCIM": client.get("/scim/v2/Users", headers=scim),
            "SCIM 401": client.get("/scim/v2/Users"),
            "git": client.get(
                f"/git/{project}.git/info/refs", params={"service": "git-upload-pack"}, auth=(user, token)
            ),
            "git 401": client.get(f"/git/{project}.git/info/refs", params={"service": "git-upload-pack"}),
            "Maven": client.get(jar, auth=(user, token)),
            "Maven HEAD": client.head(jar, auth=(user, token)),
            "Maven 401": client.get(jar),
            "Maven 404": client.get(jar.replace("1.0.0", "9.9.9"), auth=(user, token)),
            "hotfix 401": client.get("/packages/hotfix/com/acme/x/1/x-1.zip", auth=(user, token)),
            "page": client.get("/login"),
            "page redirect": client.get("/tokens"),
            "static": client.get(f"/static/style.{stylesheet}"),
            "static redirect": client.get("/static/style.css"),
            "static 404": client.get("/static/nothing.css"),
            "icon": client.get("/favicon.ico"),
            "health": client.get("/healthz"),
            "metrics": client.get("/metrics"),
            "OpenAPI": client.get("/openapi.json"),
            "405": client.request("PUT", "/api/v1/me"),
        }
    for what, answer in answers.items():
        assert answer.headers.get_list("x-content-type-options") == ["nosniff"], (what, answer.status_code)
    assert answers["git"].status_code == answers["Maven"].status_code == answers["SCIM"].status_code == 200
