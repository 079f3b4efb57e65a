"""Least privilege over real HTTP, with real git: every route × every scope, the project in and
out of the token's list, the address in and out of its blocks.

The server trusts loopback as its proxy, so that ``X-Forwarded-For`` chooses the address it
sees (as behind nginx): the tokens allow 198.51.100.0/24; requests come "from" 198.51.100.7
(in) or 203.0.113.9 (out). Each token holds one scope and reaches project A only; B is the
owner's too. What each case must get follows from the contract alone (``expected``): a refused
address first, then a missing scope, then a project outside the list, which reads exactly like
one that does not exist.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from tests.conftest import start_server
from tests.support.git import GitUser
from tests.support.ledger import remember
from tests.support.pages import sign_in
from tests.support.servers import LiveServer
from tokensmith.clock import utcnow
from tokensmith.config import load_settings
from tokensmith.projects import publishers as trusted_publishers
from tokensmith.scopes import ALL_SCOPES
from tokensmith.store.models import PublisherToken
from tokensmith.store.server_keys import load_server_keys
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import limits as token_limits
from tokensmith.web import nuxeo
from tokensmith.web.app import ROUTERS
from tokensmith.web.auth import requirements, requirements_table

GROUP = "com.acme.studio"
BLOCK, INSIDE, OUTSIDE = "198.51.100.0/24", "198.51.100.7", "203.0.113.9"
SCOPES = ALL_SCOPES


@dataclass
class World:
    server: LiveServer
    owner: str
    a: str  # the project the tokens name
    b: str  # another of the owner's projects
    admin_token: str  # all five scopes, every project, anywhere
    home: Path

    def token(self, scope: str, label: str) -> str:
        return self.server.create_token(
            self.owner,
            f"{scope} {label} {uuid.uuid4().hex[:8]}",
            scopes=[scope],
            projects=[self.a],
            allowed_ips=[BLOCK],
        )

    def client(self, token: str, address: str) -> httpx.Client:
        return self.server.client(auth=(self.owner, token), headers={"X-Forwarded-For": address})

    def token_id(self, token: str) -> int:
        with self.server.client(auth=(self.owner, token), headers={"X-Forwarded-For": INSIDE}) as client:
            return client.get("/api/v1/me").json()["token"]["id"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = start_server(tmp_path_factory.mktemp("limits"), name="limits", TOKENSMITH_TRUSTED_PROXIES="127.0.0.1")
    try:
        suffix = uuid.uuid4().hex[:6]
        owner, a, b = f"lim-{suffix}", f"lim-a-{suffix}", f"lim-b-{suffix}"
        server.create_user(owner)
        for project in (a, b):
            assert server.cli("projects", "create", project, "--group-id", GROUP, "--owner", owner).returncode == 0
        admin_token = server.create_token(owner, "everything")
        home = tmp_path_factory.mktemp("lim-home")
        person = GitUser(home / "setup", owner, admin_token)
        person.remember_credentials(server.base_url)
        for project in (a, b):  # something on master, released as 1.0.0
            work = home / f"setup-{project}"
            person.git("clone", f"{server.base_url}/git/{project}.git", str(work))
            (work / "README.md").write_text(f"# {project}\n")
            person.git("add", ".", cwd=work)
            person.git("commit", "-m", "first", cwd=work)
            person.git("push", "origin", "HEAD:master", cwd=work)
            with server.client(auth=(owner, admin_token)) as client:
                released = client.post(
                    f"/studio/v2/project/{project}/releases", json={"revision": "master", "versionName": "1.0.0"}
                )
                assert released.status_code == 201, released.text
        yield World(server, owner, a, b, admin_token, home)
    finally:
        server.stop()


def expected(scope: str, needed: str | None, project_in: bool | None, address_in: bool) -> str:
    """What a token holding ``scope`` gets: ok, ip_not_allowed, insufficient_scope or not_found."""
    if not address_in:
        return "ip_not_allowed"
    if needed is not None and needed not in token_limits.validate_scopes([scope]):
        return "insufficient_scope"
    if project_in is False:
        return "not_found"
    return "ok"


def check_refusal(
    outcome: str,
    response: httpx.Response,
    scope: str,
    needed: str | None,
    missing: Callable[[], httpx.Response] | None = None,
    project: str = "",
) -> None:
    if outcome == "ip_not_allowed" and response.headers["content-type"].startswith("text/plain"):
        assert response.status_code == 403, response.text  # the reference's token route: its words in plain text
        assert f"This token may not be used from {OUTSIDE}" in response.text
    elif outcome == "ip_not_allowed":
        assert response.status_code == 403, response.text
        body = response.json()
        assert body["error"] == "ip_not_allowed" and body["address"] == OUTSIDE
        assert f"may not be used from {OUTSIDE}" in body["message"]
    elif outcome == "insufficient_scope":
        assert response.status_code == 403, response.text
        held = list(token_limits.validate_scopes([scope]))
        body = response.json()
        assert body["error"] == "insufficient_scope"
        assert (body["needed_scope"], body["token_scopes"]) == (needed, held)
        assert f"does not have the {needed} scope" in body["message"]
        assert response.headers["X-Accepted-Scopes"] == needed
        assert response.headers["X-Tokensmith-Scopes"] == ", ".join(held)
    elif outcome == "not_found":
        # Exactly what a project that does not exist gets, with its name in place of B's.
        assert response.status_code == 404, response.text
        absent = missing()
        assert absent.status_code == 404
        assert response.json()["error"] == absent.json()["error"] == "not_found"
        assert response.json()["message"].replace(project, "X") == absent.json()["message"].replace(ABSENT, "X")


ABSENT = "no-such-project"


# --- routes without a project -----------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str
    needed: str | None  # the scope the contract says the route needs
    path: str  # as the route declares it
    reference: bool = False  # called at the reference's address of the route (web/nuxeo.py)


PLAIN_ROUTES = [
    Route("GET /api/v1/me", None, "/api/v1/me"),
    Route("GET /api/v1/tokens", "api:read", "/api/v1/tokens"),
    Route("GET /api/v1/projects", "api:read", "/api/v1/projects"),
    Route("GET /api/v1/audit", "api:read", "/api/v1/audit"),
    Route("DELETE /api/v1/tokens/{id}", "api:write", "/api/v1/tokens/{token_id:int}"),
    Route("POST /api/v1/tokens/{id}/rotate", "api:write", "/api/v1/tokens/{token_id:int}/rotate"),
    Route("GET /nuxeo/authentication/token", None, "/nuxeo/authentication/token"),
]


def call_plain(world: World, route: Route, token: str, address: str) -> httpx.Response:
    with world.client(token, address) as client:
        if route.name.startswith("DELETE"):
            victim = world.server.create_token(world.owner, f"victim {uuid.uuid4().hex[:8]}")
            return client.delete(f"/api/v1/tokens/{world.token_id(victim)}")
        if route.name.startswith("POST"):
            return client.post(f"/api/v1/tokens/{world.token_id(token)}/rotate")
        if route.path == "/nuxeo/authentication/token":
            return client.get(route.path, params={"applicationName": "matrix", "deviceId": uuid.uuid4().hex[:8]})
        return client.get(route.name.split()[1])


@pytest.mark.parametrize("address_in", [True, False], ids=["address-in", "address-out"])
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("route", PLAIN_ROUTES, ids=lambda route: route.name)
def test_routes_without_a_project(world: World, route: Route, scope: str, address_in: bool) -> None:
    token = world.token(scope, route.name)
    outcome = expected(scope, route.needed, None, address_in)
    response = call_plain(world, route, token, INSIDE if address_in else OUTSIDE)
    if outcome == "ok":
        assert response.status_code in (200, 201, 204), response.text
        if route.name == "GET /api/v1/me":
            limits = response.json()["token"]
            assert (limits["scopes"], limits["projects"], limits["allowed_ips"]) == (
                list(token_limits.validate_scopes([scope])),
                [world.a],
                [BLOCK],
            )
        if route.name == "GET /api/v1/projects":  # B is outside its list: not even listed
            assert [project["id"] for project in response.json()] == [world.a]
        if route.name.startswith("POST"):  # rotated: the new secret keeps every limit
            rotated = response.json()
            assert (rotated["scopes"], rotated["projects"], rotated["allowed_ips"]) == (
                list(token_limits.validate_scopes([scope])),
                [world.a],
                [BLOCK],
            )
        if route.path == "/nuxeo/authentication/token":  # an application token: its parent's limits, no wider
            derived = remember(response.text)
            with world.server.client(headers={"X-Authentication-Token": derived, "X-Forwarded-For": INSIDE}) as client:
                limits = client.get("/api/v1/me").json()["token"]
            assert (limits["scopes"], limits["projects"], limits["allowed_ips"]) == (
                list(token_limits.validate_scopes([scope])),
                [world.a],
                [BLOCK],
            )
            assert limits["parent_id"] == world.token_id(token)
    else:
        check_refusal(outcome, response, scope, route.needed)


# --- routes on a project ------------------------------------------------------------------------------

STUDIO_READS = ("administrativeInformation", "workspace/ws.maven", "workspace/ws.registries")
PUBLISHERS = "/api/v1/projects/{project}/publishers"
PROJECT_ROUTES = [
    Route("POST /api/v1/instances", "api:write", "/api/v1/instances"),
    Route("GET /api/v1/projects/{project}/publishers", "api:read", PUBLISHERS),
    Route("POST /api/v1/projects/{project}/publishers", "api:write", PUBLISHERS),
    Route("DELETE /api/v1/projects/{project}/publishers/{id}", "api:write", f"{PUBLISHERS}/{{publisher_id}}"),
    Route(
        "DELETE /api/v1/projects/{project}/publishers/{id}/tokens/{id}",
        "api:write",
        f"{PUBLISHERS}/{{publisher_id}}/tokens/{{token_id}}",
    ),
    *(
        route
        for reference in (False, True)
        for route in (
            Route(
                f"POST {'/nuxeo/site' if reference else ''}/studio/v2/.../releases",
                "api:write",
                "/studio/v2/project/{project_id}/releases",
                reference,
            ),
            Route(
                f"GET {'/nuxeo/site/studio/maven' if reference else '/maven/studio'}/...",
                "maven:read",
                "/maven/studio/{path:path}",
                reference,
            ),
            Route(
                f"HEAD {'/nuxeo/site/studio/maven' if reference else '/maven/studio'}/...",
                "maven:read",
                "/maven/studio/{path:path}",
                reference,
            ),
            *(
                Route(
                    f"GET {'/nuxeo/site' if reference else ''}/studio/v2/.../{read}",
                    "api:read",
                    f"/studio/v2/project/{{project_id}}/{read}",
                    reference,
                )
                for read in STUDIO_READS
            ),
        )
    ),
]
GIT_ROUTES = [
    Route("git clone", "git:read", "/git/{project_id}.git/{path:path}"),
    Route("git push", "git:write", "/git/{project_id}.git/{path:path}"),
    # The same repositories without ".git" at the end of the URL, as GitHub and GitLab take them.
    Route("git clone", "git:read", "/git/{project_id}/{path:path}"),
    Route("git push", "git:write", "/git/{project_id}/{path:path}"),
]


def call_on_project(world: World, route: Route, token: str, address: str, project: str) -> httpx.Response:
    studio = "/nuxeo/site/studio/v2" if route.reference else "/studio/v2"
    with world.client(token, address) as client:
        if route.path.startswith(PUBLISHERS):
            return call_on_publishers(world, client, route, project)
        if route.name.startswith("POST /api/v1/instances"):
            return client.post("/api/v1/instances", json={"project": project, "description": "matrix"})
        if route.name.endswith("/releases"):
            return client.post(
                f"{studio}/project/{project}/releases",
                json={"revision": "master", "versionName": f"2.0.0-m{uuid.uuid4().hex[:8]}"},
            )
        if route.path.startswith("/studio/"):
            return client.get(f"{studio}/project/{project}/{route.path.rsplit('}/', 1)[1]}")
        path = (
            f"/nuxeo/site/studio/maven/nuxeo-studio/{project}/1.0.0/{project}-1.0.0.pom"
            if route.reference
            else f"/maven/studio/com/acme/studio/{project}/1.0.0/{project}-1.0.0.pom"
        )
        if route.name.startswith("HEAD"):
            # HEAD has no body to compare: the refusal is read from a GET of the same file.
            head = client.head(path)
            return head if head.status_code < 300 else client.get(path)
        return client.get(path)


def call_on_publishers(world: World, client: httpx.Client, route: Route, project: str) -> httpx.Response:
    """A project's trusted publishers (workload identity); one to remove, with a token it gave, is
    made on A through the store."""
    listed = f"/api/v1/projects/{project}/publishers"
    if route.name.startswith("GET"):
        return client.get(listed)
    if route.name.startswith("POST"):
        claims = {"repository": f"matrix/{uuid.uuid4().hex[:8]}"}
        return client.post(listed, json={"issuer": trusted_publishers.GITHUB_ACTIONS, "claims": claims})
    settings = load_settings(world.server.env)
    with world.server.store() as session:
        publisher = trusted_publishers.add_publisher(
            session,
            world.a,
            issuer=trusted_publishers.GITHUB_ACTIONS,
            claims={"repository": f"matrix/{uuid.uuid4().hex[:8]}"},
            actor="tests",
        )
        secret, row = token_lifecycle.mint_checked(
            session,
            load_server_keys(settings),
            publisher.account_id,
            f"matrix {uuid.uuid4().hex[:8]}",
            token_limits.Limits(("git:read",), (world.a,), None),
            prefix=settings.token_prefix,
            actor="tests",
            expires_at=utcnow() + timedelta(minutes=15),
            now=utcnow(),
            ip=None,
        )
        session.add(PublisherToken(token_id=row.id, publisher_id=publisher.id))
        remember(secret)
        publisher_id, token_id = publisher.id, row.id
    if route.path.endswith("{token_id}"):
        return client.delete(f"{listed}/{publisher_id}/tokens/{token_id}")
    return client.delete(f"{listed}/{publisher_id}")


@pytest.mark.parametrize("address_in", [True, False], ids=["address-in", "address-out"])
@pytest.mark.parametrize("project_in", [True, False], ids=["project-in", "project-out"])
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("route", PROJECT_ROUTES, ids=lambda route: route.name)
def test_routes_on_a_project(world: World, route: Route, scope: str, project_in: bool, address_in: bool) -> None:
    token = world.token(scope, route.name)
    outcome = expected(scope, route.needed, project_in, address_in)
    address = INSIDE if address_in else OUTSIDE
    response = call_on_project(world, route, token, address, world.a if project_in else world.b)
    if outcome == "ok":
        assert response.status_code in (200, 201, 204), response.text
        return
    check_refusal(
        outcome,
        response,
        scope,
        route.needed,
        lambda: call_on_project(world, route, world.admin_token, INSIDE, ABSENT),
        world.b,
    )


# --- git, with git ------------------------------------------------------------------------------------


def git_as(world: World, token: str, address: str, label: str) -> GitUser:
    person = GitUser(world.home / f"{label}-{uuid.uuid4().hex[:8]}", world.owner, token)
    person.remember_credentials(world.server.base_url)
    person.git("config", "--global", "http.extraHeader", f"X-Forwarded-For: {address}")
    return person


def push_attempt(
    world: World, person: GitUser, project: str, suffix: str = ".git", at: str = "/git/"
) -> subprocess.CompletedProcess[str]:
    """A new commit pushed by ``person``, from a copy of the repository taken on the disk."""
    work = person.home / "work"
    bare = world.server.data_dir / "git" / f"{project}.git"
    person.git("clone", "--quiet", f"file://{bare}", str(work))
    person.git("remote", "set-url", "origin", f"{world.server.base_url}{at}{project}{suffix}", cwd=work)
    (work / f"{uuid.uuid4().hex[:8]}.txt").write_text("pushed\n")
    person.git("add", ".", cwd=work)
    person.git("commit", "-m", "matrix", cwd=work)
    return person.git("push", "origin", "HEAD:master", cwd=work, check=False)


def git_refusal(outcome: str, stderr: str, scope: str, needed: str) -> None:
    if outcome == "ip_not_allowed":
        assert f"remote: This token may not be used from {OUTSIDE}" in stderr, stderr
    elif outcome == "insufficient_scope":
        held = ", ".join(token_limits.validate_scopes([scope]))
        assert f"remote: This token does not have the {needed} scope this needs; it has {held}." in stderr, stderr
    else:
        assert "remote: There is no project" in stderr and "or you are not a member of it" in stderr, stderr
        assert "not found" in stderr, stderr


def git_attempt(
    world: World, action: str, scope: str, project_in: bool, address_in: bool, suffix: str = ".git", at: str = "/git/"
) -> None:
    """``git clone`` or ``git push`` with a token of one scope, checked against the contract;
    ``at``: /git/, or the reference's /nuxeo/git/."""
    needed = "git:read" if action == "clone" else "git:write"
    outcome = expected(scope, needed, project_in, address_in)
    person = git_as(world, world.token(scope, action), INSIDE if address_in else OUTSIDE, action)
    project = world.a if project_in else world.b
    if action == "clone":
        result = person.git(
            "clone", f"{world.server.base_url}{at}{project}{suffix}", str(person.home / "clone"), check=False
        )
    else:
        result = push_attempt(world, person, project, suffix, at)
    if outcome == "ok":
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode != 0
    git_refusal(outcome, result.stderr, scope, needed)
    if outcome == "not_found":  # word for word what a missing project gets
        missing = git_as(world, world.admin_token, INSIDE, "missing").git(
            "clone",
            f"{world.server.base_url}{at}{ABSENT}{suffix}",
            str(world.home / f"m-{uuid.uuid4().hex[:6]}"),
            check=False,
        )
        remote = [line.replace(project, "X") for line in result.stderr.splitlines() if line.startswith("remote:")]
        assert remote == [
            line.replace(ABSENT, "X") for line in missing.stderr.splitlines() if line.startswith("remote:")
        ]


@pytest.mark.parametrize("address_in", [True, False], ids=["address-in", "address-out"])
@pytest.mark.parametrize("project_in", [True, False], ids=["project-in", "project-out"])
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("action", ["clone", "push"])
def test_git(world: World, action: str, scope: str, project_in: bool, address_in: bool) -> None:
    git_attempt(world, action, scope, project_in, address_in)


@pytest.mark.parametrize("project_in", [True, False], ids=["project-in", "project-out"])
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("action", ["clone", "push"])
def test_git_without_dot_git(world: World, action: str, scope: str, project_in: bool) -> None:
    """The URL without ".git" is the same route's declaration: every scope, a project in and out
    (the address refusal is the check's, not the URL's, and walked above)."""
    git_attempt(world, action, scope, project_in, True, suffix="")


@pytest.mark.parametrize("project_in", [True, False], ids=["project-in", "project-out"])
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("action", ["clone", "push"])
def test_git_at_the_reference_address(world: World, action: str, scope: str, project_in: bool) -> None:
    """/nuxeo/git/{project}.git is the same route as /git/…: the same declaration and words."""
    git_attempt(world, action, scope, project_in, True, at="/nuxeo/git/")


# --- addresses ---------------------------------------------------------------------------------------


def test_ipv6_blocks_and_single_addresses(world: World) -> None:
    token = world.server.create_token(
        world.owner, f"v6 {uuid.uuid4().hex[:6]}", allowed_ips=["2001:db8::/32", "192.0.2.10"]
    )
    for address, status in (("2001:db8:1::5", 200), ("2001:db9::5", 403), ("192.0.2.10", 200), ("192.0.2.11", 403)):
        with world.client(token, address) as client:
            assert client.get("/api/v1/me").status_code == status, address


def test_forwarded_addresses_count_only_from_a_trusted_proxy(server: LiveServer) -> None:
    """On a server that trusts no proxy, X-Forwarded-For is ignored: the address seen (and
    named in the refusal) is the socket's."""
    name = f"lim-direct-{uuid.uuid4().hex[:6]}"
    server.create_user(name)
    loopback = server.create_token(name, "loopback", allowed_ips=["127.0.0.0/8"])
    elsewhere = server.create_token(name, "elsewhere", allowed_ips=[BLOCK])
    with server.client(auth=(name, loopback), headers={"X-Forwarded-For": OUTSIDE}) as client:
        assert client.get("/api/v1/me").status_code == 200
    with server.client(auth=(name, elsewhere), headers={"X-Forwarded-For": INSIDE}) as client:
        refused = client.get("/api/v1/me")
    assert refused.status_code == 403 and refused.json()["address"] == "127.0.0.1"


def test_where_a_token_was_used_its_last_five_addresses_on_the_api_and_my_tokens(world: World) -> None:
    """Seven addresses within a minute (behind the trusted proxy): each is seen, though the token's
    last use is written once a minute otherwise; the five most recent are kept, each with when it
    was first and last seen and the client."""
    person, password = f"where-{uuid.uuid4().hex[:6]}", remember(f"pw-{uuid.uuid4().hex}")
    world.server.create_user(person, password=password)
    token = world.server.create_token(person, "roaming")
    reader = world.server.create_token(person, "reader")  # the listing's own use is the reader's
    addresses = [f"198.51.100.{n}" for n in range(1, 8)]
    for number, address in enumerate(addresses):
        with world.server.client(headers={"X-Forwarded-For": address, "User-Agent": f"client/{number}"}) as client:
            assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        deadline = time.monotonic() + 5  # written behind the request: one after the other here
        while world.server.token_row(person, "roaming").last_used_ip != address and time.monotonic() < deadline:
            time.sleep(0.05)
    with world.server.client(auth=(person, reader)) as client:
        [listed] = [item for item in client.get("/api/v1/tokens").json() if item["name"] == "roaming"]
    seen = listed["last_used_ips"]
    assert [item["ip"] for item in seen] == list(reversed(addresses))[:5]
    assert [item["agent"] for item in seen] == [f"client/{number}" for number in (6, 5, 4, 3, 2)]
    assert all(item["first_seen_at"] == item["last_seen_at"] for item in seen)
    assert listed["last_used_ip"] == addresses[-1]
    with world.server.client() as browser:
        assert sign_in(browser, person, password).status_code == 303
        page = browser.get("/tokens").text
    assert "Where it was used" in page
    assert [address for address in addresses if f'data-address="{address}"' in page] == addresses[2:]
    assert "client/6" in page and "client/0" not in page


def test_the_project_list_shows_what_the_token_opens(world: World) -> None:
    """Issue 18: a token limited to A listed B too. Every project for a token of every project."""
    with world.client(world.admin_token, INSIDE) as client:
        everything = [project["id"] for project in client.get("/api/v1/projects").json()]
    assert {world.a, world.b} <= set(everything)
    with world.client(world.token("api:read", "listing"), INSIDE) as client:
        assert [project["id"] for project in client.get("/api/v1/projects").json()] == [world.a]


def test_a_refused_request_is_not_recorded_as_a_use(world: World) -> None:
    name = f"unused {uuid.uuid4().hex[:6]}"
    token = world.server.create_token(world.owner, name, scopes=["git:read"], allowed_ips=[BLOCK])
    with world.client(token, OUTSIDE) as client:
        assert client.get("/api/v1/me").status_code == 403
    with world.client(token, INSIDE) as client:
        assert client.get("/api/v1/tokens").status_code == 403  # insufficient scope
    assert world.server.token_row(world.owner, name).last_used_at is None
    with world.client(token, INSIDE) as client:
        assert client.get("/api/v1/me").status_code == 200
    assert world.server.used_token_row(world.owner, name).last_used_ip == INSIDE


def test_refusals_are_counted_for_the_operator(world: World) -> None:
    token = world.token("git:read", "metrics")
    with world.client(token, OUTSIDE) as client:
        client.get("/api/v1/me")
    with world.client(token, INSIDE) as client:
        client.get("/api/v1/tokens")
    metrics = httpx.get(f"{world.server.base_url}/metrics", timeout=10).text
    assert 'outcome="ip_not_allowed"' in metrics and 'outcome="insufficient_scope"' in metrics


def test_a_read_member_cannot_register_an_instance(world: World) -> None:
    """Instance keys open the hotfix repository: registering one takes write access."""
    reader = f"lim-reader-{uuid.uuid4().hex[:6]}"
    world.server.create_user(reader)
    assert world.server.cli("projects", "add-member", world.a, reader, "--role", "read").returncode == 0
    token = world.server.create_token(reader, "everything")
    with world.server.client(auth=(reader, token)) as client:
        refused = client.post("/api/v1/instances", json={"project": world.a, "description": "sneaky"})
    assert refused.status_code == 403
    assert f"You have read access to {world.a}; this needs write access" in refused.json()["message"]


# --- the declarations, the table in the docs, and this matrix agree --------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "scopes.md"


def test_the_table_in_the_docs_is_written_from_the_routes_declarations() -> None:
    text = DOC.read_text()
    documented = text.split("<!-- scopes:table:start -->\n")[1].split("<!-- scopes:table:end -->")[0]
    table = requirements_table(ROUTERS, nuxeo.reference_path)
    assert documented.strip() == table.strip(), f"docs/scopes.md is out of date; its table is now:\n{table}"


def test_the_matrix_walks_every_declared_route_with_the_contracts_scope() -> None:
    declared = {(route.path, scope) for route, needs in requirements(ROUTERS) for _what, scope in needs.rows()}
    walked = {(route.path, route.needed) for route in PLAIN_ROUTES + PROJECT_ROUTES + GIT_ROUTES}
    assert declared == walked


def test_every_route_that_takes_a_token_declares_what_it_needs() -> None:
    """Denied by default: a route under the token-taking prefixes that declares nothing is either
    public on purpose (the leak report; GitHub's secret scanning, signed) or refuses tokens
    outright (the hotfix repository)."""
    declared = {route.path for route, _needs in requirements(ROUTERS)}
    public = {
        "/api/v1/tokens/revoke",
        "/api/v1/secret-scanning/github",
        "/packages/hotfix/{path:path}",
        "/nuxeo/site/connect/tokens",
        # Workload identity: the ID token is the credential of the exchange; the audience is public.
        "/api/v1/oidc/audience",
        "/api/v1/oidc/exchange",
    }
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.path.startswith(
                ("/api/", "/git/", "/maven/", "/studio/", "/packages/", "/nuxeo/")
            ):
                assert (route.path in declared) != (route.path in public), route.path
