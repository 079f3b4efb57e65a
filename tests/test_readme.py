"""The README's examples really run: its shell blocks, against a real server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.ledger import remember
from tests.support.servers import LiveServer

README = Path(__file__).parents[1] / "README.md"
PLACEHOLDER = "TOKEN=tks_...paste-yours-here..."


def blocks(section: str, language: str = "sh") -> list[str]:
    """The code blocks of a section (``## Title`` or ``### Title``), up to the next heading."""
    text = README.read_text()
    start = re.search(rf"^##+ {re.escape(section)}\n", text, re.M).end()
    following = re.search(r"^##+ ", text[start:], re.M)  # (a shell comment is "# ")
    body = text[start:start + following.start()] if following else text[start:]
    return re.findall(rf"```{language}\n(.*?)```", body, re.S)


def shell_blocks(section: str) -> list[str]:
    return blocks(section)


def run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, cwd=README.parent)


def test_the_curl_examples_run_as_written(server):
    server.create_user("readme-reader", password="readme reader password")
    token = server.create_token("readme-reader", "README")
    blocks = shell_blocks("Using a token")
    assert len(blocks) == 4 and PLACEHOLDER in blocks[0]
    script = "\n".join(blocks).replace(PLACEHOLDER, f"TOKEN={token}").replace(
        "TOKENSMITH_USER=admin", "TOKENSMITH_USER=readme-reader")
    result = run(script, {**server.env, "TOKENSMITH_URL": server.base_url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('"username":"readme-reader"') == 3
    assert result.stdout.count('"authenticated_with":"token"') == 3
    assert '"name":"README"' in result.stdout and "}204\n" in result.stdout  # the DELETE's status, after the JSON above
    assert "is now revoked, and its owner told" in result.stdout
    for new_token in re.findall(r"tks_[0-9A-Za-z]{38}", result.stdout):
        remember(new_token)


def test_the_administration_examples_run_as_written(server):
    script = "\n".join(shell_blocks("Administration (from the server's shell)"))
    script = script.replace(".venv/bin/tokensmith", f"{Path(sys.executable).parent}/tokensmith")
    remember("a long password")
    result = run(script, server.env)
    assert result.returncode == 0, result.stderr
    minted = [remember(line) for line in result.stdout.split()]
    assert len(minted) == 2 and all(re.fullmatch(r"tks_[0-9A-Za-z]{38}", token) for token in minted)
    assert "Disabled alice" in result.stderr
    with server.client(auth=("ci-bot", minted[1])) as client:  # one scope, from this machine only
        narrow = client.get("/api/v1/me").json()["token"]
    assert (narrow["scopes"], narrow["allowed_ips"]) == (["maven:read"], ["127.0.0.0/8", "::1/128"])


def test_the_git_release_maven_and_instance_examples_run_as_written(server, tmp_path):
    import shutil

    user, project = "readme-dev", "readme-project"
    server.create_user(user, password="readme developer password")
    assert server.cli("projects", "create", project, "--group-id", "com.acme.studio", "--owner", user).returncode == 0
    token = server.create_token(user, "README git")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
           "TOKENSMITH_URL": server.base_url, "TOKENSMITH_USER": user, "TOKEN": token, "PROJECT": project,
           "GIT_AUTHOR_NAME": "Readme", "GIT_AUTHOR_EMAIL": "readme@example.test",
           "GIT_COMMITTER_NAME": "Readme", "GIT_COMMITTER_EMAIL": "readme@example.test"}
    register = "\n".join(blocks("Instances and the hotfix repository")[0].splitlines()[:2])  # the curl
    script = "\n".join([blocks("Git")[1], blocks("Releases (curl)")[0], register])
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f'"mavenCoordinates":"com.acme.studio:{project}:0.1.0"' in result.stdout
    instance = json.loads(re.search(r'\{"instance_id".*?\}', result.stdout).group(0))
    remember(instance["instance_key"])
    assert instance["project"] == project and instance["description"] == "staging"
    assert token not in (tmp_path / "work" / ".git" / "config").read_text()

    if not shutil.which("mvn"):
        return
    settings = blocks("Maven", "xml")[0].replace("<username>alice</username>", f"<username>{user}</username>")
    settings = settings.replace("PASTE-A-PERSONAL-ACCESS-TOKEN-HERE", token).replace("http://127.0.0.1:8000", server.base_url)
    # Central is out of reach here: Debian's copy of it stands in (as in RECIPES).
    settings = settings.replace("<settings>", "<settings><mirrors><mirror><id>debian</id><mirrorOf>central</mirrorOf>"
                                "<url>file:///usr/share/maven-repo</url></mirror></mirrors>", 1)
    (tmp_path / ".m2").mkdir()
    (tmp_path / ".m2" / "settings.xml").write_text(settings)
    command = blocks("Maven")[0].strip().replace("acme-contracts", project)
    # Java finds ~ in /etc/passwd, not in $HOME: name this HOME's settings.xml explicitly.
    maven = subprocess.run(["bash", "-c", f"{command} -B -q -s {tmp_path / '.m2' / 'settings.xml'} -Dmaven.repo.local={tmp_path / 'm2'}"], env=env,
                           capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert maven.returncode == 0, maven.stdout[-2000:]
    assert (tmp_path / "m2" / "com" / "acme" / "studio" / project / "0.1.0" / f"{project}-0.1.0.jar").exists()


def test_the_ci_example_of_the_client_runs_as_written(server, tmp_path):
    server.create_user("readme-ci", password="readme ci password")
    token = server.create_token("readme-ci", "README CI")
    script = blocks("The command-line client")[1].replace("tokensmith ", f"{Path(sys.executable).parent}/tokensmith ")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TOKENSMITH_URL": server.base_url,
           "TOKENSMITH_USER": "readme-ci", "TOKEN": token}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "readme-ci with token “README CI”" in result.stdout and '"name": "README CI"' in result.stdout
    assert token not in result.stdout
    assert not (tmp_path / ".config").exists()  # nothing stored


def test_the_scim_example_runs_as_written(tmp_path):
    scim_token = remember("readme-scim-secret-" + "s" * 20)
    live = LiveServer(tmp_path / "data", env={"TOKENSMITH_SCIM_TOKEN": scim_token}, name="readme-scim").start()
    try:
        script = "\n".join(shell_blocks("Deprovisioning with SCIM"))
        # A token grace made before she left: it must stop working.
        script = script.replace("# She leaves:", f"{sys.executable} -m tokensmith tokens create --user grace --name laptop > grace.token\n# She leaves:")
        env = {**live.env, "TOKENSMITH_URL": live.base_url, "SCIM_TOKEN": scim_token}
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True,
                                text=True, timeout=120, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        listed, patched = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")][-2:]
        assert listed["totalResults"] == 1 and listed["Resources"][0]["name"]["familyName"] == "Hopper"
        assert patched["active"] is False
        token = remember((tmp_path / "grace.token").read_text().strip())
        with live.client() as client:
            refused = client.get("/api/v1/me", auth=("grace", token))
        assert refused.status_code == 401 and "the account was disabled" in refused.json()["message"]
    finally:
        live.stop()
