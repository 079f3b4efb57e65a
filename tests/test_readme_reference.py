"""The README's "Coming from Nuxeo Online Services" runs as written: its shell blocks in order, in
one bash at a terminal (the Nuxeo CLI asks its questions there), against one server left as the
README's earlier sections leave it: user admin, project acme-contracts with release 0.1.0 and a
clone of it in ./work, TOKENSMITH_URL, TOKENSMITH_USER and TOKEN exported, and the
~/.m2/settings.xml of the Maven section with this section's mirror added.

The only liberties: the token typed at the prompts, the server's URL in the settings.xml, Java
told where HOME is (it reads ~ from /etc/passwd), Debian's copy of Maven Central, and the CLI on
the PATH from the tests' own install of it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import unavailable
from tests.support import nuxeo_cli
from tests.support.client import answering
from tests.support.git import GitUser
from tests.support.ledger import remember
from tests.support.nuxeo_cli import screen_of
from tests.support.servers import LiveServer

README = Path(__file__).parents[1] / "README.md"
SECTION = "Coming from Nuxeo Online Services"


def blocks(section: str, language: str = "sh") -> list[str]:
    text = README.read_text()
    start = re.search(rf"^##+ {re.escape(section)}\n", text, re.M).end()
    following = re.search(r"^##+ ", text[start:], re.M)
    body = text[start:start + following.start()] if following else text[start:]
    return re.findall(rf"```{language}\n(.*?)```", body, re.S)


@pytest.fixture(scope="module")
def readme(tmp_path_factory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("readme-reference") / "var", name="readme-reference").start()
    yield live
    live.stop()


def test_coming_from_nuxeo_online_services_runs_as_written(readme, tmp_path):
    reason = nuxeo_cli.missing()
    if reason:
        unavailable(reason)
    # As the earlier sections leave things.
    readme.create_project("acme-contracts", "com.acme.studio", owner="admin")
    token = readme.create_token("admin", "README")
    home = tmp_path / "home"
    person = GitUser(home, "admin", token)
    person.remember_credentials(readme.base_url)
    person.git("clone", f"{readme.base_url}/git/acme-contracts.git", str(tmp_path / "work"))
    person.publish(tmp_path / "work", {"README.md": "# ACME contracts\n"}, "First page")
    with readme.client(auth=("admin", token)) as client:
        assert client.post("/studio/v2/project/acme-contracts/releases",
                           json={"revision": "master", "versionName": "MINOR"}).json()["version"] == "0.1.0"
    maven_section = blocks("Maven", "xml")[0].replace("<username>alice</username>", "<username>admin</username>")
    mirror = blocks(SECTION, "xml")[0].strip().removeprefix("<mirrors>").removesuffix("</mirrors>")
    settings = maven_section.replace("PASTE-A-PERSONAL-ACCESS-TOKEN-HERE", token).replace(
        "<settings>", "<settings><mirrors><mirror><id>debian</id><mirrorOf>central</mirrorOf>"
        f"<url>file:///usr/share/maven-repo</url></mirror>{mirror}</mirrors>", 1)
    (home / ".m2").mkdir()
    (home / ".m2" / "settings.xml").write_text(settings.replace("http://127.0.0.1:8000", readme.base_url))

    env = {key: value for key, value in os.environ.items() if not key.startswith(("TOKENSMITH_", "GIT_"))}
    env.update({**nuxeo_cli.NuxeoCli(home).env(), "PATH": f"{nuxeo_cli.NUXEO.parent}:{os.environ['PATH']}",
                "GIT_CONFIG_NOSYSTEM": "1", "MAVEN_OPTS": f"-Duser.home={home} -Xmx256m",
                "TOKENSMITH_URL": readme.base_url, "TOKENSMITH_USER": "admin", "TOKEN": token})
    script = "\n".join(blocks(SECTION))
    status, screen = answering("bash", ["-euo", "pipefail", "-c", script], env=env, cwd=tmp_path, timeout=120,
                               answers=[("NOS Username:", "admin"), ("NOS Token:", token),
                                        ("Studio Project:", "acme-contracts"),
                                        ("settings.xml file accordingly", "Y"), (r"Overwrite \S*settings\.xml\?", "y"),
                                        ("Branch to release:", "master"), ("Version to release:", "3"),
                                        (r"Overwrite pom\.xml\?", "y"), ("Constant package:", "com.acme.app"),
                                        ("Constant class name:", "StudioConstant"),
                                        ("Are you sure to unlink?", "y")])
    screen = screen_of(screen)
    assert status == 0, screen
    for said in ('"mavenCoordinates":"com.acme.studio:acme-contracts:0.1.1"',
                 '{"groupId":"nuxeo-studio","artifactId":"acme-contracts","version":"0.1.1"}',
                 "nuxeo-studio:acme-contracts:jar:0.1.1:test",
                 "We released a new version 0.1.2 of your Studio project",
                 "Your NOS account has been unlink.",
                 '"name":"nightly-build on device ci-7"', '"scopes":["maven:read"]',
                 "Revoked the application token “nightly-build on device ci-7”"):
        assert said in screen, said
    assert token not in screen
    app = tmp_path / "acme-app"
    assert "<groupId>nuxeo-studio</groupId>" not in (app / "pom.xml").read_text()  # unlinked: its dependency is gone
    assert 'BUNDLE_NAME = "studio.extensions.acme-contracts"' in (
        app / "src/main/java/com/acme/app/StudioConstant.java").read_text()
    written = (home / ".m2" / "settings.xml").read_text()
    assert re.search(r"<id>nuxeo-studio</id>\s*<username>admin</username>", written)
    assert "<id>tokensmith-studio</id>" in written  # what was there stays
    for found in re.findall(r"tks_[0-9A-Za-z]{38}", (app / ".yo-rc.json").read_text()):
        remember(found)
