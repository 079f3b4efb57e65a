"""Real Maven resolving from a Tokensmith repository: a settings file naming it (Debian's
/usr/share/maven-repo standing in for central, which is out of reach here: RECIPES) and
``dependency:get`` of one artifact or version range."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

CENTRAL_MIRROR = (
    "<mirrors><mirror><id>debian</id><mirrorOf>central</mirrorOf><url>file:///usr/share/maven-repo</url></mirror>"
    "</mirrors>"
)
SETTINGS = (
    "<settings>\n  "
    + CENTRAL_MIRROR
    + """
  <servers><server><id>{id}</id><username>{username}</username><password>{token}</password></server></servers>
  <profiles><profile><id>{id}</id><repositories><repository><id>{id}</id>
    <url>{url}/maven/studio/</url></repository></repositories></profile></profiles>
  <activeProfiles><activeProfile>{id}</activeProfile></activeProfiles>
</settings>
"""
)


def write_settings(path: Path, url: str, username: str, token: str, repository_id: str = "studio") -> Path:
    """A settings.xml (0600: it holds the token) whose one repository is ``url``'s Studio one."""
    path.write_text(SETTINGS.format(id=repository_id, username=username, token=token, url=url))
    path.chmod(0o600)
    return path


def dependency_get(
    mvn: str,
    settings: Path,
    local: Path,
    artifact: str,
    *,
    quiet: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``mvn dependency:get -Dartifact=artifact`` (G:A:V or a version range) into the local
    repository ``local``; ``quiet=False`` keeps Maven's warnings and progress in the output (for
    tests that read them); ``env``: variables on top of this process's."""
    return subprocess.run(
        [
            mvn,
            "-B",
            *(["-q"] if quiet else []),
            "-s",
            str(settings),
            f"-Dmaven.repo.local={local}",
            "org.apache.maven.plugins:maven-dependency-plugin:get",
            f"-Dartifact={artifact}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MAVEN_OPTS": "-Xmx256m", **(env or {})},
    )
