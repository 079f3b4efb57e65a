"""The settings.xml edit keeps everything else byte for byte; a rotation puts the new token there
and real Maven goes on resolving with it."""

from __future__ import annotations

import shutil
import stat
import subprocess
import uuid

import pytest

from tests.conftest import unavailable
from tests.support.client import client_env, login_at_terminal, project_with_a_commit, tokensmith
from tests.support.ledger import remember
from tokensmith.client import maven_settings
from tokensmith.client.errors import InvalidInput

EXISTING = """<?xml version="1.0" encoding="UTF-8"?>
<!-- my settings: keep this comment -->
<settings xmlns="http://maven.apache.org/SETTINGS/1.0.0">
\t<localRepository>/srv/m2</localRepository>
  <servers>
    <server><id>corporate</id><username>me</username><password>{secret}</password></server>
  </servers>
  <mirrors><mirror><id>m</id><mirrorOf>*</mirrorOf><url>https://mirror.example/</url></mirror></mirrors>
</settings>
"""


def test_the_entry_is_added_and_nothing_else_moves():
    after = maven_settings.updated(EXISTING, "alice", "TOKEN-ONE")
    entry = maven_settings.server_entry("alice", "TOKEN-ONE")
    assert "<password>TOKEN-ONE</password>" in entry
    # Take out exactly what was added: the original comes back, byte for byte.
    assert after.replace(f"  {entry}\n  ", "", 1) == EXISTING


def test_updating_replaces_only_our_entry():
    once = maven_settings.updated(EXISTING, "alice", "TOKEN-ONE")
    twice = maven_settings.updated(once, "alice", "TOKEN-TWO")
    assert twice == once.replace("TOKEN-ONE", "TOKEN-TWO")
    assert twice.count("<id>tokensmith-studio</id>") == 1 and "corporate" in twice


@pytest.mark.parametrize(
    "text",
    [
        "<settings>\n</settings>\n",
        '<settings xmlns="x">\n  <servers/>\n</settings>\n',
        '<?xml version="1.0"?>\n<settings>\n  <servers>\n  </servers>\n</settings>\n',
    ],
)
def test_files_without_servers_get_them(text):
    after = maven_settings.updated(text, "bob", "T")
    assert after.count("<servers>") == 1 and "<id>tokensmith-studio</id>" in after and after.endswith("</settings>\n")


def test_a_file_that_is_not_settings_is_refused():
    with pytest.raises(InvalidInput, match="no <settings>"):
        maven_settings.updated("<project/>", "bob", "T")


def test_markup_in_values_is_escaped(tmp_path):
    path = tmp_path / "m2" / "settings.xml"
    assert maven_settings.write(path, "a&b", "<t>") is True
    assert "<username>a&amp;b</username>" in path.read_text() and "<password>&lt;t&gt;</password>" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert maven_settings.write(path, "a&b", "<u>") is False


def test_a_rotation_replaces_only_the_token_it_replaces(tmp_path):
    path = tmp_path / "settings.xml"
    path.write_text(EXISTING.format(secret="corporate-password"))
    maven_settings.write(path, "alice", "OLD-TOKEN")
    assert maven_settings.rotate(path, "alice", "OLD-TOKEN", "NEW-TOKEN") is True
    assert maven_settings.holds(path.read_text(), "NEW-TOKEN") and "OLD-TOKEN" not in path.read_text()
    assert "corporate-password" in path.read_text()
    # Someone changed the entry since: it is theirs now.
    assert maven_settings.rotate(path, "alice", "OLD-TOKEN", "OTHER") is False
    assert maven_settings.rotate(tmp_path / "missing.xml", "alice", "A", "B") is False


# --- with real Maven ------------------------------------------------------------------------------

MAVEN_SETTINGS = """<?xml version="1.0" encoding="UTF-8"?>
<!-- the person's own settings: kept as they are -->
<settings>
  <mirrors><mirror><id>debian</id><mirrorOf>central</mirrorOf><url>file:///usr/share/maven-repo</url></mirror></mirrors>
  <profiles><profile><id>studio</id><repositories><repository>
    <id>tokensmith-studio</id><url>{url}/maven/studio/</url>
  </repository></repositories></profile></profiles>
  <activeProfiles><activeProfile>studio</activeProfile></activeProfiles>
</settings>
"""


def test_tokens_rotate_updates_the_settings_maven_settings_wrote_and_mvn_keeps_working(server, tmp_path):
    if not shutil.which("mvn"):
        unavailable("mvn is missing: install Debian's maven (make system-packages)")
    person = f"maven-{uuid.uuid4().hex[:8]}"
    server.create_user(person)
    env = client_env(tmp_path / "home")
    token = server.create_token(person, "maven laptop")
    assert login_at_terminal(server, person, token, env)[0] == 0
    project = project_with_a_commit(server, person, tmp_path)
    assert tokensmith("release", project, "--version", "1.0.0", env=env).returncode == 0
    settings = tmp_path / "home" / ".m2" / "settings.xml"
    settings.parent.mkdir(parents=True)
    settings.write_text(MAVEN_SETTINGS.format(url=server.base_url))
    assert tokensmith("maven-settings", env=env).returncode == 0  # its default: ~/.m2/settings.xml

    def resolve(repository: str) -> subprocess.CompletedProcess[str]:
        # Java finds ~ in /etc/passwd, not in $HOME: name this HOME's settings.xml explicitly.
        return subprocess.run(
            [
                "mvn",
                "-B",
                "-q",
                "-s",
                str(settings),
                f"-Dmaven.repo.local={tmp_path / repository}",
                "dependency:get",
                f"-Dartifact=com.acme.studio:{project}:1.0.0",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )

    before = resolve("m2-before")
    assert before.returncode == 0, before.stdout[-2000:]
    rotated = tokensmith("tokens", "rotate", env=env)
    assert (
        rotated.returncode == 0
        and f"Updated {settings}: its <server> tokensmith-studio has the new token." in rotated.stdout
    )
    assert token not in settings.read_text() and "the person's own settings" in settings.read_text()
    new_token = remember(settings.read_text().split("<password>")[1].split("</password>")[0])
    after = resolve("m2-after")  # a fresh local repository: every file comes from the server again
    assert after.returncode == 0, after.stdout[-2000:]
    assert (tmp_path / "m2-after" / "com" / "acme" / "studio" / project / "1.0.0" / f"{project}-1.0.0.jar").exists()
    with server.client(auth=(person, new_token)) as client:
        assert client.get("/api/v1/me").status_code == 200
    logout = tokensmith("logout", env=env)
    assert f"{settings} still holds it" in logout.stdout
    with server.client(auth=(person, token)) as client:  # last: a rotated secret's reuse revokes the new one
        assert client.get("/api/v1/me").status_code == 401  # the old secret is dead
