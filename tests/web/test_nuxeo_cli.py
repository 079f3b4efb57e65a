"""The reference's own command-line tool, unmodified, against Tokensmith: npm nuxeo-cli 3.0.5 at
its prompts in a pseudo-terminal, on loopback only. Each case is proved by what the tool wrote
(``.yo-rc.json``, ``~/.m2/settings.xml``, ``pom.xml``) and by real ``mvn`` and ``git``.

What the tool shows of the server's answers is little, and fixed: "Unable to authenticate to NOS
Server" for any refused token, "Unknow project" for any project it may not read, "FAILURE / The
version already exists" for a 409, "SUCCESS" for a release; anything else it swallows. So the
server answers the status each of its branches expects (201, 202, 200, 409), and the tests check
the person sees the branch meant for them.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pexpect
import pytest

from tests.conftest import start_server, unavailable
from tests.support import nuxeo_cli
from tests.support.git import GitUser
from tests.support.ledger import remember
from tests.support.nuxeo_cli import NuxeoCli, screen_of, tool_state
from tests.support.servers import LiveServer

GROUP = "com.acme.studio"
TOKEN = re.compile(r"^tks_[0-9A-Za-z]{38}$")
# The tool asks before it writes a new version into pom.xml (its conflict check): yes.
OVERWRITE_POM = (r"Overwrite pom\.xml\?", "y")
CHOICE = {"MAJOR": "1", "MINOR": "2", "PATCH": "3"}  # the keys of the release's list
POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>com.acme</groupId>
  <artifactId>{name}</artifactId>
  <version>1.0.0-SNAPSHOT</version>
  <packaging>jar</packaging>
</project>
"""


@dataclass
class Site:
    server: LiveServer
    owner: str
    project: str
    token: str  # the owner's personal token, typed at "NOS Token:"
    base: Path

    @property
    def connect_url(self) -> str:
        return f"{self.server.base_url}/nuxeo"

    def settings(self, home: Path) -> Path:
        """A settings.xml as a person coming from the reference has it, the host changed: the
        Studio repository and the hotfix repository by the reference's ids, and no servers yet."""
        path = home / ".m2" / "settings.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"""<settings>
  <mirrors><mirror><id>debian</id><mirrorOf>central</mirrorOf><url>file:///usr/share/maven-repo</url></mirror></mirrors>
  <profiles><profile><id>nuxeo</id><repositories>
    <repository><id>nuxeo-studio</id><url>{self.connect_url}/site/studio/maven</url></repository>
    <repository><id>hotfix-releases</id><url>{self.server.base_url}/packages/hotfix/</url></repository>
  </repositories></profile></profiles>
  <activeProfiles><activeProfile>nuxeo</activeProfile></activeProfiles>
</settings>
""")
        return path

    def with_tool_token(self, token: str) -> httpx.Client:
        return self.server.client(headers={"X-Authentication-Token": token})


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    reason = nuxeo_cli.missing()
    if reason:
        unavailable(reason)
    base = tmp_path_factory.mktemp("nuxeo-cli")
    server = start_server(base, name="nuxeo-cli")
    try:
        owner, project = f"ncli-{uuid.uuid4().hex[:6]}", f"ncli-{uuid.uuid4().hex[:6]}"
        server.create_user(owner)
        server.create_project(project, GROUP, owner=owner)
        token = server.create_token(owner, "Workstation")
        person = GitUser(base / "git", owner, token)
        person.remember_credentials(server.base_url)
        work = base / "work"
        person.git("clone", f"{server.base_url}/nuxeo/git/{project}.git", str(work))
        person.publish(work, {"README.md": "# Studio project\n"}, "first")
        yield Site(server, owner, project, token, base)
    finally:
        server.stop()


def maven(mvn: str, folder: Path, settings: Path, *goal: str) -> subprocess.CompletedProcess[str]:
    """Real mvn in ``folder`` with the settings.xml the tool wrote, a local repository of its own
    (every file comes from the server)."""
    return subprocess.run(
        [mvn, "-B", "-s", str(settings), f"-Dmaven.repo.local={folder / f'm2-{uuid.uuid4().hex[:6]}'}", *goal],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "MAVEN_OPTS": "-Xmx256m"},
    )


def resolves(mvn: str, folder: Path, settings: Path, project: str, version: str) -> None:
    """The pom's dependencies, the Studio project's among them, resolved from the server."""
    result = maven(mvn, folder, settings, "org.apache.maven.plugins:maven-dependency-plugin:list")
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"nuxeo-studio:{project}:jar:{version}:test" in result.stdout, result.stdout[-3000:]
    assert [line for line in result.stdout.splitlines() if "WARNING" in line and project in line] == []


def studio_version(folder: Path) -> str:
    """The Studio project's version the tool wrote in pom.xml (a property its dependency uses)."""
    pom = (folder / "pom.xml").read_text()
    assert "<groupId>nuxeo-studio</groupId>" in pom and "<version>${studio.project.version}</version>" in pom, pom
    return re.search(r"<studio.project.version>([^<]*)</studio.project.version>", pom).group(1)


def release(cli: NuxeoCli, folder: Path, choice: str, branch: str = "master") -> str:
    """``nuxeo studio release``: the branch typed, MAJOR, MINOR or PATCH chosen by its number (the
    list starts on the choice made last time)."""
    status, screen = cli.run(
        "studio",
        "release",
        cwd=folder,
        answers=[("Branch to release:", branch), ("Version to release:", CHOICE[choice])],
        if_asked=OVERWRITE_POM,
    )
    assert status == 0, screen
    return screen


@dataclass
class Linked:
    cli: NuxeoCli
    folder: Path
    settings: Path


@pytest.fixture(scope="module")
def linked(site) -> Linked:
    """A Maven project linked by the tool, with an existing ~/.m2/settings.xml it updated."""
    cli = NuxeoCli(site.base / "maven-home")
    settings = site.settings(cli.home)
    folder = site.base / "acme-app"
    folder.mkdir()
    (folder / "pom.xml").write_text(POM.format(name="acme-app"))
    status, screen = cli.link(folder, site.connect_url, site.owner, site.token, site.project, settings="Y")
    assert status == 0, screen
    assert "We modified" in screen and "settings.xml" in screen, screen
    return Linked(cli, folder, settings)


# --- link -------------------------------------------------------------------------------------------


def test_link_without_a_pom_or_settings_keeps_an_application_token_of_its_own(site, tmp_path):
    cli = NuxeoCli(tmp_path / "home")
    folder = tmp_path / "plain"
    status, screen = cli.link(folder, site.connect_url, site.owner, site.token, site.project)
    assert status == 0, screen
    assert f"New Connect URL saved: {site.connect_url}" in screen
    state = tool_state(folder)
    assert state["connect:url"] == site.connect_url and state["studio:symbolicname"] == site.project
    tool_token = remember(state["connect:token"])
    assert TOKEN.match(tool_token) and tool_token != site.token
    assert not (cli.home / ".m2" / "settings.xml").exists() and not (folder / "pom.xml").exists()
    with site.with_tool_token(tool_token) as client:
        me = client.get("/api/v1/me").json()["token"]
        assert client.get(f"/nuxeo/site/studio/v2/project/{site.project}/administrativeInformation").status_code == 200
    with site.server.client(auth=(site.owner, site.token)) as client:
        listed = client.get("/api/v1/tokens").json()
    parent = next(token for token in listed if token["name"] == "Workstation")
    assert me["name"].startswith("nuxeo-cli on device 1") and me["parent_id"] == parent["id"]
    assert me["scopes"] == parent["scopes"]


def test_link_with_a_pom_and_settings_writes_the_dependency_and_the_servers(site, linked):
    assert studio_version(linked.folder) == "0.0.0-SNAPSHOT"  # no release yet: the workspace, as the reference names it
    settings = linked.settings.read_text()
    for server_id in ("nuxeo-studio", "hotfix-releases", "hotfix-snapshots"):
        entry = re.search(
            rf"<server>\s*<id>{server_id}</id>\s*<username>([^<]*)</username>\s*"
            r"<password>([^<]*)</password>\s*</server>",
            settings,
        )
        assert entry and entry.groups() == (site.owner, site.token), settings
    assert "<mirrorOf>central</mirrorOf>" in settings and "/nuxeo/site/studio/maven" in settings  # kept


def test_link_with_a_pom_and_no_settings_xml_updates_the_pom_alone(site, tmp_path):
    """The tool writes servers only into a settings.xml that exists (with "yes" and none there, it
    stops before writing anything: its own way): "no" links the pom alone."""
    cli = NuxeoCli(tmp_path / "home")
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "pom.xml").write_text(POM.format(name="app"))
    status, screen = cli.link(folder, site.connect_url, site.owner, site.token, site.project, settings="n")
    assert status == 0, screen
    assert studio_version(folder) == "0.0.0-SNAPSHOT" and tool_state(folder)["studio:symbolicname"] == site.project
    assert not (cli.home / ".m2").exists()


def test_release_patch_minor_major_each_resolved_by_maven(site, linked, mvn):
    for choice, version in (("PATCH", "0.0.1"), ("MINOR", "0.1.0"), ("MAJOR", "1.0.0")):
        screen = release(linked.cli, linked.folder, choice)
        assert "SUCCESS" in screen and f"We released a new version {version} of your Studio project" in screen, screen
        assert studio_version(linked.folder) == version
        resolves(mvn, linked.folder, linked.settings, site.project, version)


def test_the_hotfix_servers_the_tool_wrote_are_refused_by_the_package_repository(site, linked, mvn):
    result = maven(
        mvn,
        linked.folder,
        linked.settings,
        "org.apache.maven.plugins:maven-dependency-plugin:get",
        "-Dartifact=com.acme.hotfix:hotfix-12:1.0.0:zip",
    )
    assert result.returncode != 0 and "401" in result.stdout, result.stdout[-3000:]
    entry = re.search(
        r"<id>hotfix-releases</id>\s*<username>([^<]*)</username>\s*<password>([^<]*)</password>",
        linked.settings.read_text(),
    )
    refused = httpx.get(
        f"{site.server.base_url}/packages/hotfix/com/acme/hotfix/hotfix-12/1.0.0/hotfix-12-1.0.0.zip",
        auth=entry.groups(),
    )
    assert refused.status_code == 401
    assert "Personal access tokens and passwords are not valid for the package repository" in refused.json()["message"]


def test_a_revision_that_does_not_exist_releases_nothing(site, linked, mvn):
    before = studio_version(linked.folder)
    screen = release(linked.cli, linked.folder, "MINOR", branch="no-such-branch")
    # The tool shows nothing of a 422 (it swallows every answer but 2xx and 409): no SUCCESS at least.
    assert "SUCCESS" not in screen and "We released" not in screen and "FAILURE" not in screen
    assert studio_version(linked.folder) == before
    result = maven(
        mvn,
        linked.folder,
        linked.settings,
        "org.apache.maven.plugins:maven-dependency-plugin:get",
        f"-Dartifact=nuxeo-studio:{site.project}:[{before},99)",
    )
    assert result.returncode == 0, result.stdout[-3000:]  # the latest there is still the one before:
    assert (
        f"Downloaded from nuxeo-studio: {site.connect_url}/site/studio/maven/nuxeo-studio/{site.project}/{before}/"
        in result.stdout
    ), result.stdout[-3000:]


def test_two_releases_at_once_one_is_told_the_version_exists(site, linked, tmp_path):
    other = tmp_path / "other-app"
    other.mkdir()
    (other / "pom.xml").write_text(POM.format(name="other-app"))
    status, screen = linked.cli.link(other, site.connect_url, site.owner, site.token, site.project, settings="n")
    assert status == 0, screen
    previous = studio_version(other)
    assert studio_version(linked.folder) == previous
    children = [linked.cli.spawn("studio", "release", cwd=folder) for folder in (linked.folder, other)]
    for child in children:
        child.expect("Branch to release:")
        child.sendline("master")
        child.expect("Version to release:")
        child.send(CHOICE["MINOR"])
    # Both asked while the store's write lock is held elsewhere (as an administrator's command may
    # hold it): each release reads the versions there are, works out the same next one, and waits
    # to write it. Nothing outside the server shows when both have read, so the lock is held for a
    # time far longer than that takes (milliseconds), and far shorter than a writer waits (5 s).
    blocker = sqlite3.connect(site.server.data_dir / "tokensmith.db", timeout=10)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        for child in children:
            child.send("\r")
        time.sleep(2)
    finally:
        blocker.rollback()
        blocker.close()
    screens = []
    for child in children:
        output = ""
        while child.expect([OVERWRITE_POM[0], pexpect.EOF]) == 0:  # the winner writes its new version
            output += child.before + child.after
            child.sendline(OVERWRITE_POM[1])
        screens.append(screen_of(output + child.before))
        child.close()
    failed = [screen for screen in screens if "FAILURE" in screen]
    succeeded = [screen for screen in screens if "SUCCESS" in screen]
    assert len(failed) == len(succeeded) == 1, screens
    assert "The version already exists: you should update the MAJOR version this time." in failed[0]
    version = re.search(r"We released a new version (\S+) ", succeeded[0]).group(1)
    assert version != previous  # the winner's pom has the new version, the other's is as it was
    assert sorted([studio_version(linked.folder), studio_version(other)]) == sorted([version, previous])


def test_import_writes_the_constants_class(site, linked):
    status, screen = linked.cli.run(
        "studio",
        "import",
        cwd=linked.folder,
        answers=[("Constant package:", "com.acme.app"), ("Constant class name:", "StudioConstant")],
    )
    assert status == 0, screen
    constants = (linked.folder / "src/main/java/com/acme/app/StudioConstant.java").read_text()
    assert "package com.acme.app;" in constants
    assert f'BUNDLE_NAME = "studio.extensions.{site.project}"' in constants


def test_unlink_signs_out_then_link_again(site, linked, mvn):
    old = tool_state(linked.folder)["connect:token"]
    status, screen = linked.cli.run("studio", "unlink", cwd=linked.folder, answers=[("Are you sure to unlink?", "y")])
    assert status == 0 and "Your NOS account has been unlink." in screen, screen
    assert "connect:token" not in tool_state(linked.folder)
    assert "<groupId>nuxeo-studio</groupId>" not in (linked.folder / "pom.xml").read_text()
    with site.with_tool_token(old) as client:
        refused = client.get("/api/v1/me")
    assert refused.status_code == 401 and "by the application that held it, which signed out" in refused.text
    status, screen = linked.cli.link(
        linked.folder, site.connect_url, site.owner, site.token, site.project, settings="Y"
    )
    assert status == 0, screen
    renewed = remember(tool_state(linked.folder)["connect:token"])
    assert renewed != old
    with site.with_tool_token(renewed) as client:
        assert client.get("/api/v1/me").status_code == 200
    version = studio_version(linked.folder)
    assert version not in ("0.0.0-SNAPSHOT", "0.0.1")  # the latest release
    resolves(mvn, linked.folder, linked.settings, site.project, version)


def test_link_again_after_the_personal_token_was_revoked(site, tmp_path):
    cli = NuxeoCli(tmp_path / "home")
    folder = tmp_path / "app"
    lost = site.server.create_token(site.owner, f"Lost laptop {uuid.uuid4().hex[:6]}")
    assert cli.link(folder, site.connect_url, site.owner, lost, site.project)[0] == 0
    first = tool_state(folder)["connect:token"]
    with site.server.client(auth=(site.owner, lost)) as client:
        lost_id = client.get("/api/v1/me").json()["token"]["id"]
    with site.server.client(auth=(site.owner, site.token)) as client:
        assert client.delete(f"/api/v1/tokens/{lost_id}").status_code == 204
    with site.with_tool_token(first) as client:
        refused = client.get("/api/v1/me")
    assert refused.status_code == 401 and "(with the personal token it was made from)" in refused.text
    # The tool first revokes the token it holds (already revoked: 202), then asks with the new one.
    replacement = site.server.create_token(site.owner, f"New laptop {uuid.uuid4().hex[:6]}")
    status, screen = cli.link(folder, site.connect_url, site.owner, replacement, site.project)
    assert status == 0, screen
    with site.with_tool_token(tool_state(folder)["connect:token"]) as client:
        assert client.get("/api/v1/me").json()["token"]["parent_id"] is not None


def test_a_wrong_token_then_the_right_one_and_a_connect_url_ending_in_a_slash(site, tmp_path):
    cli = NuxeoCli(tmp_path / "home")
    folder = tmp_path / "app"
    child = cli.spawn("studio", "link", f"--connectUrl={site.connect_url}", cwd=folder)
    child.expect("NOS Username:")
    child.sendline(site.owner)
    child.expect("NOS Token:")
    child.sendline("tks_" + "z" * 38)
    child.expect("Unable to authenticate to NOS Server")
    child.expect("/nuxeo/site/connect/tokens")  # a page of ours too: My Tokens
    child.sendcontrol("u")
    child.sendline(site.token)
    child.expect("Studio Project:")
    child.sendline(site.project)
    child.expect(pexpect.EOF)
    child.close()
    assert TOKEN.match(remember(tool_state(folder)["connect:token"]))
    assert httpx.get(f"{site.connect_url}/site/connect/tokens").headers["location"] == "/tokens"

    slashed = tmp_path / "slashed"
    child = cli.spawn("studio", "link", f"--connectUrl={site.connect_url}/", cwd=slashed)
    child.expect("NOS Username:")
    child.sendline(site.owner)
    child.expect("NOS Token:")
    child.sendline(site.token)
    child.expect("Unable to authenticate to NOS Server")  # all the tool says; the server says why:
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    answer = httpx.get(
        f"{site.connect_url}//authentication/token",
        auth=(site.owner, site.token),
        params={"applicationName": "nuxeo-cli", "deviceId": "1"},
    )
    assert answer.status_code == 404 and "The connect URL must not end with a slash" in answer.text
