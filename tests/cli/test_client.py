"""The client as a person runs it: in a pseudo-terminal, answering its prompts (pexpect), and
as git's credential helper, against a real server."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pexpect
import pytest

from tests.support.git import GitUser
from tests.support.ledger import remember
from tests.support.ports import free_port

PASSWORD = "client person's password"
NO_KEYRING = "keyring.backends.fail.Keyring"
FILE_KEYRING = "keyrings.alt.file.PlaintextKeyring"


@pytest.fixture
def person(server):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    server.create_user(name, password=PASSWORD)
    return name


def client_env(home: Path, keyring_backend: str = NO_KEYRING, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TOKENSMITH_")}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "data"),
                "PYTHON_KEYRING_BACKEND": keyring_backend, "COLUMNS": "200", **extra})
    return env


def tokensmith(*args: str, env: dict[str, str], input: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tokensmith", *args], env=env, input=input,
                          capture_output=True, text=True, timeout=60)


def login_at_terminal(server, username: str, secret: str, env: dict[str, str]) -> tuple[int, str]:
    """Type at the prompts; return the exit status and everything the terminal showed."""
    child = pexpect.spawn(sys.executable, ["-m", "tokensmith", "login", "--server", server.base_url],
                          env=env, encoding="utf-8", timeout=30)
    child.expect("Username: ")
    child.sendline(username)
    child.expect("Token: ")
    child.sendline(secret)
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, child.before


def test_login_prompts_checks_and_stores_in_a_private_file_without_a_keyring(server, person, tmp_path):
    token = server.create_token(person, "laptop")
    env = client_env(tmp_path)
    status, screen = login_at_terminal(server, person, token, env)
    assert status == 0, screen
    assert f"Logged in to {server.base_url} as {person} with token “laptop”" in screen
    stored = tmp_path / "config" / "tokensmith" / "credentials"
    assert f"Credentials stored in {stored} (mode 0600; no system keyring here)" in screen
    assert token not in screen  # typed hidden, never echoed
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    whoami = tokensmith("whoami", env=env)
    assert whoami.returncode == 0 and f"{person} with token “laptop”" in whoami.stdout
    assert token not in whoami.stdout + whoami.stderr
    logout = tokensmith("logout", env=env)
    assert logout.returncode == 0 and token not in stored.read_text()
    after = tokensmith("whoami", env=env)
    assert after.returncode == 5 and "Not logged in" in after.stderr


def test_login_uses_the_system_keyring_when_there_is_one(server, person, tmp_path):
    token = server.create_token(person, "keyring")
    env = client_env(tmp_path, FILE_KEYRING)
    status, screen = login_at_terminal(server, person, token, env)
    assert status == 0, screen
    assert "Credentials stored in the system keyring" in screen
    assert not (tmp_path / "config" / "tokensmith" / "credentials").exists()
    assert tokensmith("whoami", env=env).returncode == 0
    assert tokensmith("logout", env=env).returncode == 0
    assert tokensmith("whoami", env=env).returncode == 5


@pytest.mark.parametrize("case", ["wrong token", "revoked token", "password"])
def test_a_refused_login_says_why_and_stores_nothing(server, person, tmp_path, case):
    token = server.create_token(person, f"refused {case}")
    secret = {"wrong token": token[:-4] + "AAAA", "revoked token": token, "password": PASSWORD}[case]
    if case == "revoked token":
        assert server.cli("tokens", "revoke-all", "--user", person).returncode == 0
    status, screen = login_at_terminal(server, person, secret, client_env(tmp_path))
    assert status == 5, screen
    expected = {"wrong token": "mistyped", "revoked token": "revoked",
                "password": f"takes a personal access token here. Create one on the My Tokens page, {server.base_url}/tokens"}
    assert expected[case] in screen and "Traceback" not in screen
    assert not (tmp_path / "config" / "tokensmith").exists() or not list((tmp_path / "config" / "tokensmith").iterdir())


def test_without_a_terminal_nothing_is_asked_and_the_error_says_what_is_missing(server, tmp_path):
    env = client_env(tmp_path)
    result = tokensmith("whoami", env=env)
    assert result.returncode == 5 and "Not logged in" in result.stderr and "TOKENSMITH_TOKEN" in result.stderr
    login = tokensmith("login", "--server", server.base_url, env=env)
    assert login.returncode == 5 and "No terminal to ask for the username" in login.stderr
    partial = tokensmith("whoami", env={**env, "TOKENSMITH_TOKEN": "tks_x"})
    assert partial.returncode == 5 and "TOKENSMITH_SERVER and TOKENSMITH_USERNAME are not" in partial.stderr


def test_environment_variables_override_everything_for_ci(server, person, tmp_path):
    token = server.create_token(person, "ci")
    env = client_env(tmp_path, TOKENSMITH_SERVER=server.base_url, TOKENSMITH_USERNAME=person, TOKENSMITH_TOKEN=token)
    whoami = tokensmith("whoami", env=env)
    assert whoami.returncode == 0 and "credentials from environment" in whoami.stdout
    listed = tokensmith("tokens", "list", "--json", env=env)
    assert listed.returncode == 0 and "ci" in [t["name"] for t in json.loads(listed.stdout)]
    assert token not in listed.stdout
    table = tokensmith("tokens", "list", env=env)
    assert table.returncode == 0 and "ci" in table.stdout and token[-4:] in table.stdout and token not in table.stdout


def test_a_server_that_is_down_is_reported_with_exit_code_6(tmp_path):
    env = client_env(tmp_path, TOKENSMITH_SERVER=f"http://127.0.0.1:{free_port()}", TOKENSMITH_USERNAME="x",
                     TOKENSMITH_TOKEN="tks_" + "A" * 38)
    result = tokensmith("whoami", env=env)
    assert result.returncode == 6 and "Cannot reach" in result.stderr and "Traceback" not in result.stderr
    assert "tks_" not in result.stderr


def test_git_uses_the_stored_token_and_forgets_it_once_revoked(server, person, tmp_path):
    project = f"cli-git-{uuid.uuid4().hex[:6]}"
    assert server.cli("projects", "create", project, "--group-id", "com.acme.studio", "--owner", person).returncode == 0
    token = server.create_token(person, "git via client")
    env = client_env(tmp_path)
    assert login_at_terminal(server, person, token, env)[0] == 0
    git = GitUser(tmp_path, person, token)
    helper = f"!{sys.executable} -m tokensmith git-credential"
    clone = subprocess.run(["git", "-c", f"credential.helper={helper}", "clone", f"{server.base_url}/git/{project}.git",
                            str(tmp_path / "clone")], env={**git.env(), **env}, capture_output=True, text=True, timeout=60)
    assert clone.returncode == 0, clone.stderr
    assert server.cli("tokens", "revoke-all", "--user", person).returncode == 0
    refused = subprocess.run(["git", "-c", f"credential.helper={helper}", "clone", f"{server.base_url}/git/{project}.git",
                              str(tmp_path / "again")], env={**git.env(), **env}, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "revoked" in refused.stderr
    # git told the helper to erase the refused credential: the revoked token is gone.
    assert tokensmith("whoami", env=env).returncode == 5


def logged_in(server, person, tmp_path, name="client") -> tuple[str, dict[str, str]]:
    token = server.create_token(person, name)
    env = client_env(tmp_path)
    assert login_at_terminal(server, person, token, env)[0] == 0
    return token, env


def project_with_a_commit(server, person: str, tmp_path: Path) -> str:
    """A new project of ``person``'s with one commit on master, pushed with real git."""
    project = f"cli-{uuid.uuid4().hex[:8]}"
    assert server.cli("projects", "create", project, "--group-id", "com.acme.studio", "--owner", person).returncode == 0
    git = GitUser(tmp_path / "git", person, server.create_token(person, f"git {project}"))
    git.remember_credentials(server.base_url)
    git.git("clone", f"{server.base_url}/git/{project}.git", str(tmp_path / "work"))
    (tmp_path / "work" / "README.md").write_text("hello\n")
    git.git("add", ".", cwd=tmp_path / "work")
    git.git("commit", "-m", "first", cwd=tmp_path / "work")
    git.git("push", "origin", "HEAD:master", cwd=tmp_path / "work")
    return project


def test_tokens_revoke_asks_first_unless_told_yes(server, person, tmp_path):
    _token, env = logged_in(server, person, tmp_path)
    server.create_token(person, "old phone")
    server.create_token(person, "old tablet")
    no_terminal = tokensmith("tokens", "revoke", "old phone", env=env)
    assert no_terminal.returncode == 2 and "--yes" in no_terminal.stderr
    child = pexpect.spawn(sys.executable, ["-m", "tokensmith", "tokens", "revoke", "old phone"], env=env,
                          encoding="utf-8", timeout=30)
    child.expect(r"Revoke token “old phone” \(tks_…\w{4}\)\? \[y/N\]: ")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and "Revoked token “old phone”" in child.before
    tablet_id = server.token_row(person, "old tablet").id
    assert tokensmith("tokens", "revoke", str(tablet_id), "--yes", env=env).returncode == 0
    names = [t["name"] for t in json.loads(tokensmith("tokens", "list", "--json", env=env).stdout)]
    assert "old phone" not in names and "old tablet" not in names and "client" in names
    missing = tokensmith("tokens", "revoke", "nope", "--yes", env=env)
    assert missing.returncode == 3 and "tokens list" in missing.stderr


def test_tokens_rotate_replaces_the_stored_token(server, person, tmp_path):
    old, env = logged_in(server, person, tmp_path)
    result = tokensmith("tokens", "rotate", env=env)
    assert result.returncode == 0 and "the old secret no longer works" in result.stdout
    assert old not in result.stdout
    assert tokensmith("whoami", env=env).returncode == 0  # with the new, stored token
    with server.client(auth=(person, old)) as client:
        assert "rotated" in client.get("/api/v1/me").json()["message"]
    stored = json.loads((tmp_path / "config" / "tokensmith" / "credentials").read_text())
    remember(stored[server.base_url]["token"])


def test_release_and_register_from_the_client(server, person, tmp_path):
    _token, env = logged_in(server, person, tmp_path)
    project = project_with_a_commit(server, person, tmp_path)

    plain = tokensmith("release", project, "--revision", "master", "--version", "MINOR", env=env)
    assert plain.returncode == 0 and plain.stdout == f"Released {project} 0.1.0: com.acme.studio:{project}:0.1.0\n"
    as_json = tokensmith("release", project, "--version", "1.0.0-rc1", "--json", env=env)
    assert json.loads(as_json.stdout)["mavenCoordinates"] == f"com.acme.studio:{project}:1.0.0-rc1"
    again = tokensmith("release", project, "--version", "0.1.0", env=env)
    assert again.returncode == 4 and "already released" in again.stderr

    key_file = tmp_path / "staging.key"
    registered = tokensmith("register", "--project", project, "--description", "staging",
                            "--key-file", str(key_file), env=env)
    assert registered.returncode == 0 and str(key_file) in registered.stdout
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    instance_id, key = key_file.read_text().strip().split(":", 1)
    remember(key)
    assert key not in registered.stdout and instance_id in registered.stdout


def test_studio_link_git_setup_and_maven_settings(server, person, tmp_path):
    token, env = logged_in(server, person, tmp_path, name="workstation")
    project = f"cli-link-{uuid.uuid4().hex[:6]}"
    assert server.cli("projects", "create", project, "--group-id", "com.acme.studio", "--owner", person).returncode == 0
    folder = tmp_path / "folder"
    folder.mkdir()
    linked = subprocess.run([sys.executable, "-m", "tokensmith", "studio", "link", project], env=env, cwd=folder,
                            capture_output=True, text=True, timeout=60)
    assert linked.returncode == 0, linked.stderr
    assert f"Git:   {server.base_url}/git/{project}.git" in linked.stdout
    assert f"Maven: com.acme.studio:{project} from {server.base_url}/maven/studio/" in linked.stdout
    assert json.loads((folder / ".tokensmith.json").read_text()) == {"server": server.base_url, "project": project}
    hidden = tokensmith("studio", "link", "someone-elses", env=env)
    assert hidden.returncode == 3 and "not a member" in hidden.stderr

    assert tokensmith("git", "setup", env=env).returncode == 0
    gitconfig = (tmp_path / ".gitconfig").read_text()
    assert f'[credential "{server.base_url}"]' in gitconfig and "helper = tokensmith git-credential" in gitconfig

    settings = tmp_path / ".m2" / "settings.xml"
    printed = tokensmith("maven-settings", "--print", env=env)
    assert "<id>tokensmith-studio</id>" in printed.stdout and token not in printed.stdout
    written = tokensmith("maven-settings", env=env)
    assert written.returncode == 0 and f"Created {settings}" in written.stdout and token not in written.stdout
    assert f"<password>{token}</password>" in settings.read_text()


def test_errors_are_one_line_without_a_traceback_unless_debug(tmp_path):
    env = client_env(tmp_path, TOKENSMITH_SERVER=f"http://127.0.0.1:{free_port()}", TOKENSMITH_USERNAME="x",
                     TOKENSMITH_TOKEN="tks_" + "B" * 38)
    plain = tokensmith("whoami", env=env)
    assert plain.returncode == 6 and len(plain.stderr.strip().splitlines()) == 1 and "Traceback" not in plain.stderr
    debug = tokensmith("--debug", "whoami", env=env)
    assert debug.returncode == 6 and "Traceback" in debug.stderr and "Cannot reach" in debug.stderr


def test_commands_ask_for_credentials_on_a_terminal_when_not_logged_in(server, person, tmp_path):
    project = f"cli-ask-{uuid.uuid4().hex[:6]}"
    assert server.cli("projects", "create", project, "--group-id", "com.acme.studio", "--owner", person).returncode == 0
    token = server.create_token(person, "asked")
    key_file = tmp_path / "asked.key"
    child = pexpect.spawn(sys.executable, ["-m", "tokensmith", "register", "--server", server.base_url, "--project",
                                           project, "--key-file", str(key_file)],
                          env=client_env(tmp_path), encoding="utf-8", timeout=30)
    child.expect("Username: ")
    child.sendline(person)
    child.expect("Token: ")
    child.sendline(token)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and "Registered instance" in child.before and token not in child.before
    remember(key_file.read_text().strip().split(":", 1)[1])


def test_a_release_shows_progress_on_a_terminal_only(server, person, tmp_path):
    _token, env = logged_in(server, person, tmp_path)
    project = project_with_a_commit(server, person, tmp_path)
    child = pexpect.spawn(sys.executable, ["-m", "tokensmith", "release", project], env=env, encoding="utf-8", timeout=60)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and f"Released {project} 0.1.0" in child.before
    assert "Releasing" in child.before  # the spinner's line, drawn on the terminal
    piped = tokensmith("release", project, "--version", "PATCH", env=env)
    assert piped.stdout == f"Released {project} 0.1.1: com.acme.studio:{project}:0.1.1\n"
