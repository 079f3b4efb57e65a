"""The reference's addresses under /nuxeo/, over real HTTP, with real git and a real mvn: the same
routes as Tokensmith's own, the releases at the reference's Maven coordinates, application tokens
(GET /nuxeo/authentication/token), the X-Authentication-Token header, and bad input in words."""

from __future__ import annotations

import shutil
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server
from tests.support.git import GitUser
from tests.support.ledger import remember
from tests.support.maven import dependency_get
from tests.support.pages import sign_in
from tests.support.servers import LiveServer

GROUP = "com.acme.studio"
PASSWORD = "the reference person's password"
TOKEN_ROUTE = "/nuxeo/authentication/token"
CLI = {"applicationName": "nuxeo-cli", "deviceId": "1", "permission": "AMIREAD"}


@dataclass
class World:
    server: LiveServer
    owner: str
    project: str
    token: str  # the owner's personal token, every scope
    home: Path

    def client(self, **kwargs: object) -> httpx.Client:
        return self.server.client(**kwargs)

    def as_owner(self) -> httpx.Client:
        return self.server.client(auth=(self.owner, self.token))

    def derive(self, parent: str | None = None, **params: str) -> httpx.Response:
        with self.server.client(auth=(self.owner, parent or self.token)) as client:
            return client.get(TOKEN_ROUTE, params={**CLI, **params})

    def derived(self, parent: str | None = None) -> str:
        answer = self.derive(parent)
        assert answer.status_code == 201, answer.text
        return remember(answer.text)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    """A server of the module's own (one test restarts it), a project with a commit pushed and
    released through the reference's addresses."""
    base = tmp_path_factory.mktemp("nuxeo")
    server = start_server(base, name="nuxeo")
    try:
        owner, project = f"nos-{uuid.uuid4().hex[:6]}", f"nos-{uuid.uuid4().hex[:6]}"
        server.create_user(owner, password=PASSWORD)
        server.create_project(project, GROUP, owner=owner)
        token = server.create_token(owner, "Laptop")
        person = GitUser(base / "person", owner, token)
        person.remember_credentials(server.base_url)
        work = base / "work"
        person.git("clone", f"{server.base_url}/nuxeo/git/{project}.git", str(work))
        person.publish(work, {"README.md": "# Reference\n"}, "first")
        yield World(server, owner, project, token, base)
    finally:
        server.stop()


# --- the same routes at the reference's addresses -------------------------------------------------------


def test_git_clones_from_the_reference_address_what_was_pushed_there(world):
    person = GitUser(world.home / f"clone-{uuid.uuid4().hex[:6]}", world.owner, world.token)
    person.remember_credentials(world.server.base_url)
    for address in ("/nuxeo/git/", "/git/"):
        target = person.home / address.strip("/").replace("/", "-")
        person.git("clone", f"{world.server.base_url}{address}{world.project}.git", str(target))
        assert (target / "README.md").read_text() == "# Reference\n"


def test_the_release_api_answers_at_the_reference_address_as_at_its_own(world):
    with world.as_owner() as client:
        before = client.get(f"/nuxeo/site/studio/v2/project/{world.project}/workspace/ws.maven")
        released = client.post(
            f"/nuxeo/site/studio/v2/project/{world.project}/releases",
            json={"revision": "master", "versionName": "MINOR"},
        )
        again = client.post(
            f"/studio/v2/project/{world.project}/releases",
            json={"revision": "master", "versionName": released.json()["version"]},
        )
        after = client.get(f"/nuxeo/site/studio/v2/project/{world.project}/workspace/ws.maven")
        information = client.get(f"/nuxeo/site/studio/v2/project/{world.project}/administrativeInformation")
        registries = client.get(
            f"/nuxeo/site/studio/v2/project/{world.project}/workspace/ws.registries", params={"exclude": "tp"}
        )
    # Before any release: the reference's name for the workspace, so that its tool finishes linking.
    assert before.json() == {"groupId": "nuxeo-studio", "artifactId": world.project, "version": "0.0.0-SNAPSHOT"}
    assert released.status_code == 201 and released.json() == {
        "version": "0.1.0",
        "bundleSymbolicName": f"studio.extensions.{world.project}",
        "mavenCoordinates": f"{GROUP}:{world.project}:0.1.0",
    }
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert after.json() == {"groupId": "nuxeo-studio", "artifactId": world.project, "version": "0.1.0"}
    assert information.status_code == 200 and information.json() == {
        "symbolicName": world.project,
        "bundleSymbolicName": f"studio.extensions.{world.project}",
        "role": "write",
        "releases": ["0.1.0"],
    }
    assert registries.json() == {
        name: []
        for name in (
            "documentTypes",
            "schemas",
            "facets",
            "lifeCycles",
            "operationChains",
            "operationScriptings",
            "pageProviders",
        )
    }


def release_at_least_once(world) -> str:
    with world.as_owner() as client:
        coordinates = client.get(f"/nuxeo/site/studio/v2/project/{world.project}/workspace/ws.maven").json()
        if coordinates["version"] == "0.0.0-SNAPSHOT":
            return client.post(
                f"/nuxeo/site/studio/v2/project/{world.project}/releases",
                json={"revision": "master", "versionName": "MINOR"},
            ).json()["version"]
    return coordinates["version"]


def reference_settings(path: Path, base_url: str, username: str, token: str) -> Path:
    """settings.xml as written for the reference, with its server ids; only the host changed."""
    path.write_text(f"""<settings>
  <mirrors><mirror><id>debian</id><mirrorOf>central</mirrorOf><url>file:///usr/share/maven-repo</url></mirror></mirrors>
  <servers><server><id>nuxeo-studio</id><username>{username}</username><password>{token}</password></server></servers>
  <profiles><profile><id>nuxeo-studio</id><repositories><repository><id>nuxeo-studio</id>
    <url>{base_url}/nuxeo/site/studio/maven</url></repository></repositories></profile></profiles>
  <activeProfiles><activeProfile>nuxeo-studio</activeProfile></activeProfiles>
</settings>
""")
    path.chmod(0o600)
    return path


def maven_warnings_about(output: str, project: str) -> list[str]:
    """Maven's warnings about our artifact (not those about Debian's repository, which has no
    checksums): an invalid POM, a checksum that does not match, metadata it cannot use."""
    return [
        line
        for line in output.splitlines()
        if "WARNING" in line and (project in line or "POM" in line or "127.0.0.1" in line)
    ]


@pytest.mark.parametrize("wanted", ["exact", "range"])
def test_real_maven_resolves_a_release_at_the_reference_coordinates(world, mvn, tmp_path, wanted):
    version = release_at_least_once(world)
    settings = reference_settings(tmp_path / "settings.xml", world.server.base_url, world.owner, world.token)
    local = tmp_path / "m2"
    asked = version if wanted == "exact" else "[0.0.1,99)"
    result = dependency_get(mvn, settings, local, f"nuxeo-studio:{world.project}:{asked}", quiet=False)
    assert result.returncode == 0, result.stdout[-3000:]
    assert maven_warnings_about(result.stdout, world.project) == []  # no invalid POM, no checksum mismatch
    artifact_dir = local / "nuxeo-studio" / world.project
    jar = artifact_dir / version / f"{world.project}-{version}.jar"
    assert zipfile.ZipFile(jar).read("README.md") == b"# Reference\n"
    if wanted == "range":  # read from the reference copy's own maven-metadata.xml
        assert (artifact_dir / "maven-metadata-nuxeo-studio.xml").read_text().count(
            "<groupId>nuxeo-studio</groupId>"
        ) == 1


def test_a_release_made_before_the_reference_copy_gets_one_at_the_next_start(world):
    version = release_at_least_once(world)
    copy = world.server.data_dir / "maven" / "studio" / "nuxeo-studio" / world.project
    shutil.rmtree(copy)  # as a release published before both coordinates were
    pom = f"/nuxeo/site/studio/maven/nuxeo-studio/{world.project}/{version}/{world.project}-{version}.pom"
    with world.as_owner() as client:
        assert client.get(pom).status_code == 404
    world.server.restart()
    with world.as_owner() as client:
        answer = client.get(pom)
        own = client.get(f"/maven/studio/com/acme/studio/{world.project}/{version}/{world.project}-{version}.jar")
        reference = client.get(pom.replace(".pom", ".jar"))
    assert answer.status_code == 200 and "<groupId>nuxeo-studio</groupId>" in answer.text
    assert reference.content == own.content


# --- X-Authentication-Token: wherever Bearer is ------------------------------------------------------------


def test_the_reference_header_is_read_by_the_one_extractor(world):
    version = release_at_least_once(world)
    header = {"X-Authentication-Token": world.token}
    with world.client(headers=header) as client:
        me = client.get("/api/v1/me")  # answered before the framework's dispatch
        tokens = client.get("/api/v1/tokens")
        pom = client.get(
            f"/nuxeo/site/studio/maven/nuxeo-studio/{world.project}/{version}/{world.project}-{version}.pom"
        )
        hotfix = client.get("/packages/hotfix/com/acme/hotfix/hf/1.0.0/hf-1.0.0.zip")
    assert me.status_code == 200 and me.json()["user"]["username"] == world.owner
    assert tokens.status_code == 200 and pom.status_code == 200
    assert hotfix.status_code == 401 and "not valid for the package repository" in hotfix.json()["message"]
    with world.client(headers={"X-Authentication-Token": "tks_" + "x" * 38}) as client:
        mistyped = client.get("/api/v1/me")
    with world.client(headers={"X-Authentication-Token": ""}) as client:
        empty = client.get("/api/v1/tokens")
    with world.client(headers={"X-Authentication-Token": "t" * 5000}) as client:
        huge = client.get("/api/v1/me")
    assert mistyped.status_code == 401 and "This token is mistyped" in mistyped.json()["message"]
    assert empty.status_code == 401 and "The X-Authentication-Token header is empty" in empty.json()["message"]
    assert huge.status_code == 431 and "X-Authentication-Token header is 5,000 characters" in huge.json()["message"]


# --- application tokens -----------------------------------------------------------------------------------


def test_an_application_token_is_plain_text_works_and_is_listed_under_its_parent(world):
    answer = world.derive()
    assert answer.status_code == 201 and answer.headers["content-type"].startswith("text/plain")
    assert answer.headers["cache-control"] == "no-store"
    derived = remember(answer.text)
    assert len(derived) == 42 and derived != world.token
    with world.client(headers={"X-Authentication-Token": derived}) as client:
        me = client.get("/api/v1/me").json()["token"]
    with world.as_owner() as client:
        listed = client.get("/api/v1/tokens").json()
    parent = next(token for token in listed if token["name"] == "Laptop")
    at = listed.index(parent)
    assert me["parent_id"] == parent["id"] and me["name"].startswith("nuxeo-cli on device 1")
    assert [token["parent_id"] for token in listed[at + 1 :] if token["parent_id"]] and listed[at + 1][
        "parent_id"
    ] == parent["id"]


def test_my_tokens_shows_an_application_token_under_its_parent_without_regenerate(world):
    name = f"desk-{uuid.uuid4().hex[:6]}"
    parent = world.server.create_token(world.owner, name)
    world.derived(parent)
    with world.client() as browser:
        assert sign_in(browser, world.owner, PASSWORD).status_code == 303
        page = browser.get("/tokens").text
    rows = page.split('<tr data-token-id="')
    at = next(index for index, row in enumerate(rows) if f">{name}<" in row)
    child = rows[at + 1]
    assert 'class="application-token"' in child and f"Application token of “{name}”: revoked with it" in child
    assert "Regenerate" not in child and "Revoke" in child


def test_revoke_true_signs_the_application_out_and_again_is_still_202(world):
    derived = world.derived()
    with world.client(headers={"X-Authentication-Token": derived}) as client:
        first = client.get(TOKEN_ROUTE, params={**CLI, "revoke": "true"})
        again = client.get(TOKEN_ROUTE, params={"applicationName": "nuxeo-cli", "deviceId": "1", "revoke": "true"})
        used = client.get("/api/v1/me")
    assert first.status_code == 202 and first.text.startswith("Revoked the application token “nuxeo-cli on device 1")
    # Revoked already: so be it (the reference's tool forgets its token on a 202 only, and can then link again).
    assert again.status_code == 202 and "was revoked" in again.text and "Nothing left to revoke" in again.text
    assert used.status_code == 401 and "by the application that held it, which signed out" in used.json()["message"]


def test_revoking_the_parent_revokes_its_application_tokens_and_a_new_parent_links_again(world):
    name = f"doomed-{uuid.uuid4().hex[:6]}"
    parent = world.server.create_token(world.owner, name)
    derived = world.derived(parent)
    with world.server.client(auth=(world.owner, parent)) as client:
        parent_id = client.get("/api/v1/me").json()["token"]["id"]
        assert client.delete(f"/api/v1/tokens/{parent_id}").status_code == 204
    with world.client(headers={"X-Authentication-Token": derived}) as client:
        refused = client.get("/api/v1/me")
    assert refused.status_code == 401
    assert "(with the personal token it was made from)" in refused.json()["message"]
    again = world.derive(parent)  # the revoked parent cannot make another
    assert again.status_code == 401 and again.headers["www-authenticate"].startswith("Basic")
    assert "This token was revoked" in again.text and again.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "params, status, words",
    [
        ({"applicationName": None}, 422, "applicationName is missing: give the application's name"),
        ({"deviceId": None}, 422, "deviceId is missing: give an identifier of the device"),
        ({"applicationName": "a" * 5_000}, 422, "applicationName has at most 50 characters; this one has 5,000"),
        (
            {"deviceId": "laptop\r\nX-Injected: 1"},
            422,
            "deviceId cannot contain control or invisible formatting characters",
        ),
        ({"deviceId": "\x00"}, 422, "deviceId cannot contain control"),
        ({"permission": "git:read maven:read admin"}, 422, "Unknown scope 'admin'"),
        ({"revoke": "perhaps"}, 422, "revoke"),
    ],
)
def test_bad_requests_for_a_token_are_refused_in_words_and_make_nothing(world, params, status, words):
    with world.as_owner() as client:
        before = len(client.get("/api/v1/tokens").json())
        asked = {key: value for key, value in {**CLI, **params}.items() if value is not None}
        answer = client.get(TOKEN_ROUTE, params=asked)
        after = len(client.get("/api/v1/tokens").json())
    assert answer.status_code == status and words in answer.text, answer.text
    assert after == before


def test_bad_query_is_refused_before_the_credentials_cost_anything(world):
    with world.client(auth=(world.owner, "tks_" + "y" * 38)) as client:  # a forged token, and no deviceId
        answer = client.get(TOKEN_ROUTE, params={"applicationName": "nuxeo-cli"})
    assert answer.status_code == 422 and "deviceId is missing" in answer.text


def test_a_token_without_a_scope_gets_an_application_token_without_it_and_no_wider(world):
    narrow = world.server.create_token(world.owner, f"narrow-{uuid.uuid4().hex[:6]}", scopes=["maven:read"])
    derived = world.derived(narrow)
    with world.client(headers={"X-Authentication-Token": derived}) as client:
        release = client.post(
            f"/nuxeo/site/studio/v2/project/{world.project}/releases",
            json={"revision": "master", "versionName": "PATCH"},
        )
        information = client.get(f"/nuxeo/site/studio/v2/project/{world.project}/administrativeInformation")
    assert release.status_code == 403 and release.json()["needed_scope"] == "api:write"
    assert "does not have the api:write scope this needs; it has maven:read" in release.json()["message"]
    assert information.status_code == 403 and information.headers["x-accepted-scopes"] == "api:read"
    with world.server.client(auth=(world.owner, narrow)) as client:
        wider = client.get(TOKEN_ROUTE, params={**CLI, "permission": "maven:read api:read"})
    assert wider.status_code == 403 and "does not have the api:read scope" in wider.text


def test_an_application_token_cannot_ask_for_another(world):
    derived = world.derived()
    with world.client(headers={"X-Authentication-Token": derived}) as client:
        answer = client.get(TOKEN_ROUTE, params=CLI)
    with world.client(auth=(world.owner, derived)) as client:
        basic = client.get(TOKEN_ROUTE, params=CLI)
    for refused in (answer, basic):
        assert refused.status_code == 403 and "An application token cannot make another" in refused.text


def test_revoke_true_with_a_personal_token_revokes_nothing(world):
    with world.client(headers={"X-Authentication-Token": world.token}) as client:
        answer = client.get(TOKEN_ROUTE, params={**CLI, "revoke": "true"})
        still = client.get("/api/v1/me")
    assert answer.status_code == 403 and "this is a personal token" in answer.text
    assert still.status_code == 200


def test_a_stranger_a_password_and_an_unknown_project_are_refused_in_words(world):
    with world.client() as client:
        stranger = client.get(TOKEN_ROUTE, params=CLI)
    with world.client(auth=(world.owner, PASSWORD)) as client:
        password = client.get(TOKEN_ROUTE, params=CLI)
    with world.as_owner() as client:
        unknown = [
            client.get(f"/nuxeo/site/studio/v2/project/no-such-project/{what}")
            for what in ("administrativeInformation", "workspace/ws.maven", "workspace/ws.registries")
        ]
        release = client.post(
            "/nuxeo/site/studio/v2/project/no-such-project/releases",
            json={"revision": "master", "versionName": "MINOR"},
        )
        revision = client.post(
            f"/nuxeo/site/studio/v2/project/{world.project}/releases",
            json={"revision": "no-such-branch", "versionName": "MINOR"},
        )
    assert stranger.status_code == 401 and stranger.headers["www-authenticate"].startswith("Basic")
    assert "Authentication required" in stranger.text
    assert password.status_code == 401 and "Passwords are not accepted here" in password.text
    for answer in (*unknown, release):
        assert answer.status_code == 404
        assert answer.json()["message"] == "There is no project 'no-such-project', or you are not a member of it."
    assert (
        revision.status_code == 422 and "'no-such-branch' is not a branch, tag or commit" in revision.json()["message"]
    )


def test_a_connect_url_ending_in_a_slash_is_told_so(world):
    with world.as_owner() as client:
        doubled = client.get("/nuxeo//authentication/token", params=CLI)
        studio = client.get(f"/nuxeo//site/studio/v2/project/{world.project}/administrativeInformation")
        elsewhere = client.get("/nuxeo/site/automation")
    for answer in (doubled, studio):
        assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/plain")
        assert "The connect URL must not end with a slash: use --connectUrl=https://HOST/nuxeo" in answer.text
    assert (
        elsewhere.status_code == 404 and "Under /nuxeo/ this server answers the reference's addresses" in elsewhere.text
    )


def test_the_token_page_the_reference_tool_names_is_my_tokens(world):
    with world.client() as client:
        answer = client.get("/nuxeo/site/connect/tokens")
    assert answer.status_code == 303 and answer.headers["location"] == "/tokens"


def test_other_methods_on_the_token_route_are_405_with_allow(world):
    with world.as_owner() as client:
        answer = client.post(TOKEN_ROUTE, params=CLI)
    assert answer.status_code == 405 and answer.headers["allow"] == "GET"


def test_the_access_log_shows_the_address_as_sent_and_no_query(world):
    world.derived()
    console = world.server.console_once(f'"GET {TOKEN_ROUTE}?… HTTP/1.1" 201')  # written behind the answer
    assert f"POST /nuxeo/git/{world.project}.git/git-receive-pack" in console


def test_a_tool_state_file_pushed_with_its_application_token_is_refused_and_the_token_revoked(world):
    derived = world.derived()
    person = GitUser(world.home / f"careless-{uuid.uuid4().hex[:6]}", world.owner, world.token)
    person.remember_credentials(world.server.base_url)
    work = person.home / "work"
    person.git("clone", f"{world.server.base_url}/nuxeo/git/{world.project}.git", str(work))
    (work / ".yo-rc.json").write_text(f'{{"generator-nuxeo": {{"connect:token": "{derived}"}}}}\n')
    person.git("add", ".yo-rc.json", cwd=work)
    person.git("commit", "-m", "the CLI's state", cwd=work)
    pushed = person.git("push", "origin", "HEAD:master", cwd=work, check=False)
    assert pushed.returncode != 0 and "remote: Push refused: it contains a live Tokensmith" in pushed.stderr
    with world.client(headers={"X-Authentication-Token": derived}) as client:
        assert client.get("/api/v1/me").status_code == 401
