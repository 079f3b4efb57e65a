"""The README's examples really run: its shell blocks, in the README's order, against a server
of their own started fresh (its first start made `admin`, as `make serve`'s does). Blocks that
ask something (git's prompt, the client's login) run in a pseudo-terminal and get their answers
typed. The only liberties: the token a reader pastes, the server's URL, the path of the
installed command, and a hotfix file at hand."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.client import answering
from tests.support.ledger import remember
from tests.support.servers import LiveServer

README = Path(__file__).parents[1] / "README.md"
PLACEHOLDER = "TOKEN=tks_...paste-yours-here..."
BIN = Path(sys.executable).parent
TOKEN_PATTERN = re.compile(r"tks_[0-9A-Za-z]{38}")


def blocks(section: str, language: str = "sh") -> list[str]:
    """The code blocks of a section (``## Title`` or ``### Title``), up to the next heading."""
    text = README.read_text()
    start = re.search(rf"^##+ {re.escape(section)}\n", text, re.M).end()
    following = re.search(r"^##+ ", text[start:], re.M)  # (a shell comment is "# ")
    body = text[start:start + following.start()] if following else text[start:]
    return re.findall(rf"```{language}\n(.*?)```", body, re.S)


def installed(script: str) -> str:
    return script.replace(".venv/bin/tokensmith", f"{BIN}/tokensmith")


def run(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True,
                          timeout=240, cwd=cwd)


def at_terminal(script: str, env: dict[str, str], cwd: Path, answers: list[tuple[str, str]]) -> tuple[int, str]:
    return answering("bash", ["-euo", "pipefail", "-c", script], env=env, cwd=cwd, answers=answers, timeout=120)


@pytest.fixture(scope="module")
def readme(tmp_path_factory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("readme") / "var", name="readme").start()
    yield live
    live.stop()


def person_env(readme: LiveServer, home: Path, **extra: str) -> dict[str, str]:
    """A reader's shell: their HOME, the installed command on the PATH, the server's URL."""
    home.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TOKENSMITH_", "GIT_"))}
    return {**env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "PATH": f"{BIN}:{env['PATH']}",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring", "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Readme", "GIT_AUTHOR_EMAIL": "readme@example.test",
            "GIT_COMMITTER_NAME": "Readme", "GIT_COMMITTER_EMAIL": "readme@example.test",
            "TOKENSMITH_URL": readme.base_url, "TOKENSMITH_USER": "admin", **extra}


def test_1_the_curl_examples_run_as_written(readme, tmp_path):
    token = readme.create_token("admin", "README")
    script = "\n".join(blocks("Using a token"))
    assert PLACEHOLDER in script
    result = run(script.replace(PLACEHOLDER, f"TOKEN={token}"), person_env(readme, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('"username":"admin"') == 3
    assert result.stdout.count('"authenticated_with":"token"') == 3
    assert '"name":"README"' in result.stdout and "}204\n" in result.stdout  # the DELETE's status, after the JSON above
    assert "is now revoked, and its owner told" in result.stdout
    for new_token in TOKEN_PATTERN.findall(result.stdout):
        remember(new_token)


def test_2_projects_git_releases_instances_and_maven_run_as_written(readme, tmp_path):
    admin_shell = run(installed(blocks("Projects: Git, Maven, releases")[0]), readme.env, readme.data_dir.parent)
    assert admin_shell.returncode == 0, admin_shell.stderr
    assert re.search(r"^acme-contracts\s+com\.acme\.studio\s+2\s", admin_shell.stdout, re.M)
    token = readme.create_token("admin", "README git")
    env = person_env(readme, tmp_path / "home", TOKEN=token)

    prompted, screen = at_terminal(blocks("Git")[0], env, tmp_path, answers=[
        (f"Username for '{readme.base_url}': ", "admin"),
        (f"Password for 'http://admin@{readme.base_url.removeprefix('http://')}': ", token)])
    assert prompted == 0, screen
    assert token not in screen and (tmp_path / "acme-contracts" / ".git").is_dir()

    (tmp_path / "hotfix-12.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # the hotfix at the administrator's hand
    instances = installed(blocks("Instances and the hotfix repository")[0])
    script = "\n".join([blocks("Git")[1], blocks("Releases (curl)")[0], instances,
                        'printf %s "$INSTANCE_KEY" > "$HOME/key-for-the-ledger"'])  # the test's, not the README's
    result = run(script, {**env, **{k: v for k, v in readme.env.items() if k.startswith("TOKENSMITH_DATA")}},
                 tmp_path)
    assert result.returncode == 0, result.stderr
    remember((tmp_path / "home" / "key-for-the-ledger").read_text())
    assert '"mavenCoordinates":"com.acme.studio:acme-contracts:0.1.0"' in result.stdout
    assert (tmp_path / "downloaded-hotfix-12.zip").read_bytes() == (tmp_path / "hotfix-12.zip").read_bytes()
    assert token not in (tmp_path / "work" / ".git" / "config").read_text()

    if not shutil.which("mvn"):
        return
    settings = blocks("Maven", "xml")[0].replace("<username>alice</username>", "<username>admin</username>")
    settings = settings.replace("PASTE-A-PERSONAL-ACCESS-TOKEN-HERE", token).replace("http://127.0.0.1:8000", readme.base_url)
    # Central is out of reach here: Debian's copy of it stands in (as in RECIPES).
    settings = settings.replace("<settings>", "<settings><mirrors><mirror><id>debian</id><mirrorOf>central</mirrorOf>"
                                "<url>file:///usr/share/maven-repo</url></mirror></mirrors>", 1)
    (tmp_path / "home" / ".m2").mkdir()
    (tmp_path / "home" / ".m2" / "settings.xml").write_text(settings)
    command = blocks("Maven")[0].strip()
    # Java finds ~ in /etc/passwd, not in $HOME: name this HOME's settings.xml explicitly.
    maven = run(f"{command} -B -q -s {tmp_path / 'home' / '.m2' / 'settings.xml'} -Dmaven.repo.local={tmp_path / 'm2'}",
                env, tmp_path)
    assert maven.returncode == 0, maven.stdout[-2000:]
    assert (tmp_path / "m2" / "com" / "acme" / "studio" / "acme-contracts" / "0.1.0" / "acme-contracts-0.1.0.jar").exists()


def test_3_the_client_walkthrough_runs_as_written_at_a_terminal(readme, tmp_path):
    token = readme.create_token("admin", "Laptop")
    readme.create_token("admin", "Old laptop")
    script = blocks("The command-line client")[0].replace("http://127.0.0.1:8000", readme.base_url)
    env = person_env(readme, tmp_path / "home", GIT_TERMINAL_PROMPT="0")
    status, screen = at_terminal(script, env, tmp_path, answers=[
        ("Username: ", "admin"), ("Token: ", token), (r"Revoke token “Old laptop” \(tks_…\w{4}\)\? \[y/N\]: ", "y")])
    assert status == 0, screen
    for said in ("Logged in to", "admin with token “Laptop”", "Logged in as admin with token “Laptop”",
                 "Revoked token “Old laptop”", "Rotated token “Laptop”", "git now asks tokensmith",
                 "tokensmith-studio for admin", "Linked", "Released acme-contracts 0.2.0",
                 "Registered instance", f"Logged out of {readme.base_url}"):
        assert said in screen, said
    assert token not in screen
    assert (tmp_path / "acme-contracts" / ".tokensmith.json").exists()
    settings = (tmp_path / "home" / ".m2" / "settings.xml").read_text()
    remember(settings.split("<password>")[1].split("</password>")[0])  # the rotated token
    key = next((tmp_path / "home" / ".config" / "tokensmith" / "instances").iterdir()).read_text()
    remember(key.strip().split(":", 1)[1])


def test_4_the_ci_example_of_the_client_runs_as_written(readme, tmp_path):
    token = readme.create_token("admin", "README CI")
    env = person_env(readme, tmp_path, TOKEN=token)
    result = run(blocks("The command-line client")[1], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "admin with token “README CI”" in result.stdout and '"name": "README CI"' in result.stdout
    assert token not in result.stdout
    assert not (tmp_path / ".config").exists()  # nothing stored


def test_5_the_administration_examples_run_as_written(readme):
    remember("a long password")
    remember("a new long password")
    result = run(installed("\n".join(blocks("Administration (from the server's shell)"))), readme.env,
                 readme.data_dir.parent)
    assert result.returncode == 0, result.stderr
    minted = [remember(token) for token in TOKEN_PATTERN.findall(result.stdout)]
    assert len(minted) == 2 and result.stdout.startswith(f"{minted[0]}\n{minted[1]}\n")
    with readme.client(auth=("ci-bot", minted[1])) as client:  # one scope, from this machine only
        narrow = client.get("/api/v1/me").json()["token"]
    assert (narrow["scopes"], narrow["allowed_ips"]) == (["maven:read"], ["127.0.0.0/8", "::1/128"])
    assert "Disabled alice" in result.stderr and "Set the password of alice" in result.stderr
    assert re.search(r"^ci-bot\s+ci@example\.com\s", result.stdout, re.M)
    assert re.search(r"^acme-contracts\s+com\.acme\.studio\s", result.stdout, re.M)


def test_the_scim_example_runs_as_written(tmp_path):
    scim_token = remember("readme-scim-secret-" + "s" * 20)
    live = LiveServer(tmp_path / "data", env={"TOKENSMITH_SCIM_TOKEN": scim_token}, name="readme-scim").start()
    try:
        script = "\n".join(blocks("Deprovisioning with SCIM"))
        # A token grace made before she left: it must stop working.
        script = script.replace("# She leaves:", f"{sys.executable} -m tokensmith tokens create --user grace --name laptop > grace.token\n# She leaves:")
        env = {**live.env, "TOKENSMITH_URL": live.base_url, "SCIM_TOKEN": scim_token}
        result = run(script, env, tmp_path)
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
