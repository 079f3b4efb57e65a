"""Real Maven against a Tokensmith server: central mirrored to Debian's repository (RECIPES)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

CENTRAL_MIRROR = (
    "<mirrors><mirror><id>debian</id><mirrorOf>central</mirrorOf><url>file:///usr/share/maven-repo</url></mirror>"
    "</mirrors>"
)


def settings_xml(path: Path, base_url: str, username: str, password: str) -> Path:
    """A settings.xml with the Studio repository of ``base_url`` and these credentials, mode 0600."""
    path.write_text(f"""<settings>
  {CENTRAL_MIRROR}
  <servers><server><id>tokensmith-studio</id><username>{username}</username><password>{password}</password></server></servers>
  <profiles><profile><id>studio</id><repositories><repository><id>tokensmith-studio</id>
    <url>{base_url}/maven/studio/</url></repository></repositories></profile></profiles>
  <activeProfiles><activeProfile>studio</activeProfile></activeProfiles>
</settings>
""")
    path.chmod(0o600)
    return path


def get_artifact(
    mvn: str, settings: Path, local: Path, artifact: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``mvn dependency:get`` of ``artifact`` (G:A:V) into the local repository ``local``."""
    return subprocess.run(
        [
            mvn,
            "-B",
            "-s",
            str(settings),
            f"-Dmaven.repo.local={local}",
            "org.apache.maven.plugins:maven-dependency-plugin:get",
            f"-Dartifact={artifact}",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "MAVEN_OPTS": "-Xmx256m", **(env or {})},
    )
