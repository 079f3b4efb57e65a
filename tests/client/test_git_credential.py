"""git with the client as its credential helper, as a person sets it up: `tokensmith git setup`,
then real `git clone` and `git push` over HTTP with no prompt possible (GIT_TERMINAL_PROMPT=0),
from a HOME of their own and with a PATH that does not hold the client."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support.client import TOKENSMITH, answering, client_env, login_at_terminal, tokensmith
from tests.support.ledger import remember


@pytest.fixture
def person(server):
    name = f"gitter-{uuid.uuid4().hex[:8]}"
    server.create_user(name)
    return name


@pytest.fixture
def project(server, person):
    name = f"git-{uuid.uuid4().hex[:8]}"
    assert server.cli("projects", "create", name, "--group-id", "com.acme.studio", "--owner", person).returncode == 0
    return name


def git(*args: str, env: dict[str, str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    # git runs the helper through /bin/sh with this PATH: the client is not on it.
    result = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.test", *args],
        env={**env, "PATH": "/usr/bin:/bin"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert result.returncode == 0, f"git {' '.join(args)}:\n{result.stderr}"
    return result


def set_up(server, person, home: Path) -> tuple[str, dict[str, str]]:
    token = server.create_token(person, "git laptop")
    env = client_env(home)
    assert login_at_terminal(server, person, token, env)[0] == 0
    setup = tokensmith("git", "setup", env=env)
    assert setup.returncode == 0 and f"git now asks tokensmith for {server.base_url}" in setup.stdout
    return token, env


def test_git_setup_then_clone_and_push_without_a_prompt_and_without_dot_git(server, person, project, tmp_path):
    home = tmp_path / "home"
    # An older helper configured for every server, holding a dead token: it must not answer for this one.
    env = client_env(home)
    home.mkdir()
    (home / ".git-credentials").write_text(
        f"http://{person}:tks_{'A' * 38}@{server.base_url.removeprefix('http://')}\n"
    )
    git("config", "--global", "credential.helper", "store", env=env, cwd=home)
    _token, env = set_up(server, person, home)
    helpers = git("config", "--global", "--get-all", f"credential.{server.base_url}.helper", env=env, cwd=home)
    assert helpers.stdout.splitlines() == ["", f"!{TOKENSMITH} git-credential"]

    git("clone", f"{server.base_url}/git/{project}", "work", env=env, cwd=home)  # no .git, as on GitHub
    (home / "work" / "README.md").write_text("pushed with the client's token\n")
    git("add", "README.md", env=env, cwd=home / "work")
    git("commit", "-m", "First page", env=env, cwd=home / "work")
    git("push", "origin", "HEAD:master", env=env, cwd=home / "work")
    git("clone", f"{server.base_url}/git/{project}.git", "again", env=env, cwd=home)
    assert (home / "again" / "README.md").read_text() == "pushed with the client's token\n"
    assert "password" not in (home / "work" / ".git" / "config").read_text()
    # git setup twice leaves one helper, not two.
    assert tokensmith("git", "setup", env=env).returncode == 0
    again = git("config", "--global", "--get-all", f"credential.{server.base_url}.helper", env=env, cwd=home)
    assert again.stdout.splitlines() == ["", f"!{TOKENSMITH} git-credential"]


def test_a_refused_clone_does_not_log_the_person_out(server, person, project, tmp_path):
    home = tmp_path / "home"
    token, env = set_up(server, person, home)
    host = server.base_url.removeprefix("http://")
    # A token mistyped into the URL: git is refused (401), then tells every helper to erase it.
    wrong = f"tks_{'B' * 38}"
    refused = git(
        "clone",
        f"http://{person}:{wrong}@{host}/git/{project}",
        "refused",
        env={**env, "GIT_TRACE": "1"},
        cwd=home,
        check=False,
    )
    assert refused.returncode != 0 and "git-credential erase" in refused.stderr
    # What git sends after the client's own token is refused, word for word: `git credential reject`.
    subprocess.run(
        ["git", "credential", "reject"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        input=f"protocol=http\nhost={host}\nusername={person}\npassword={token}\n\n",
        text=True,
        timeout=60,
        check=True,
    )
    whoami = tokensmith("whoami", env=env)
    assert whoami.returncode == 0 and f"{person} with token “git laptop”" in whoami.stdout
    git("clone", f"{server.base_url}/git/{project}", "works", env=env, cwd=home)


def test_a_revoked_token_is_refused_and_the_next_command_says_to_log_in_again(server, person, project, tmp_path):
    home = tmp_path / "home"
    _token, env = set_up(server, person, home)
    assert server.cli("tokens", "revoke-all", "--user", person).returncode == 0
    refused = git("clone", f"{server.base_url}/git/{project}", "refused", env=env, cwd=home, check=False)
    assert refused.returncode != 0 and not (home / "refused").exists()
    whoami = tokensmith("whoami", env=env)
    assert whoami.returncode == 5 and "revoked" in whoami.stderr
    assert f"Log in again: tokensmith login --server {server.base_url}" in whoami.stderr
    assert login_at_terminal(server, person, server.create_token(person, "git laptop 2"), env)[0] == 0
    git("clone", f"{server.base_url}/git/{project}", "works", env=env, cwd=home)


def test_the_helper_answers_only_for_its_server_and_its_person(server, person, tmp_path):
    home = tmp_path / "home"
    token, env = set_up(server, person, home)
    host = server.base_url.removeprefix("http://")

    def get(request: str) -> str:
        result = tokensmith("git-credential", "get", env=env, input=request)
        assert result.returncode == 0 and result.stderr == ""
        return result.stdout

    assert get(f"protocol=http\nhost={host}\n\n") == f"username={person}\npassword={token}\n"
    assert (
        get(f"protocol=http\nhost={host}\nusername={person}\npath=git/x\n\n")
        == f"username={person}\npassword={token}\n"
    )
    assert get(f"protocol=http\nhost={host}\nusername=someone-else\n\n") == ""
    assert get(f"protocol=https\nhost={host}\n\n") == ""
    assert get("protocol=http\nhost=github.com\n\n") == ""
    assert get("protocol=http\n\n") == ""
    for operation in ("store", "erase"):
        assert (
            tokensmith(
                "git-credential",
                operation,
                env=env,
                input=f"protocol=http\nhost={host}\nusername={person}\npassword={token}\n\n",
            ).stdout
            == ""
        )
    assert get(f"protocol=http\nhost={host}\n\n") == f"username={person}\npassword={token}\n"
    # CI: the environment's token, for the environment's server only.
    ci = remember(f"tks_{'C' * 38}")
    ci_env = {
        **client_env(tmp_path / "ci"),
        "TOKENSMITH_SERVER": server.base_url,
        "TOKENSMITH_USERNAME": "ci-bot",
        "TOKENSMITH_TOKEN": ci,
    }
    answer = tokensmith("git-credential", "get", env=ci_env, input=f"protocol=http\nhost={host}\n\n")
    assert answer.stdout == f"username=ci-bot\npassword={ci}\n"


# --- git's own store after a rotation ------------------------------------------------------------------


def test_a_rotation_puts_the_new_secret_in_gits_store_and_git_keeps_working(server, person, project, tmp_path):
    """Issue 18: after `tokens rotate` the old secret stayed in ~/.git-credentials, without a word;
    git's next fetch presented it and, a rotated secret coming back, the server revoked the new
    one too. The person here gave git the token at its prompt, with git's `store` helper, and
    logged the client in with the same token."""
    home = tmp_path / "home"
    home.mkdir()
    env = client_env(home)
    git("config", "--global", "credential.helper", "store", env=env, cwd=home)
    token = server.create_token(person, "laptop")
    status, screen = answering(
        "git",
        ["clone", f"{server.base_url}/git/{project}.git", str(home / "work")],
        env={**env, "GIT_TERMINAL_PROMPT": "1"},
        cwd=home,
        answers=[
            (f"Username for '{server.base_url}': ", person),
            (f"Password for 'http://{person}@{server.base_url.removeprefix('http://')}': ", token),
        ],
    )
    assert status == 0, screen
    assert token in (home / ".git-credentials").read_text()  # what git's store kept, after the prompt
    assert login_at_terminal(server, person, token, env)[0] == 0

    rotated = tokensmith("tokens", "rotate", env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert (
        f"Updated {home / '.git-credentials'}: git's saved credential for {server.base_url} has the new token."
        in rotated.stdout
    )
    new = remember(json.loads((home / "config" / "tokensmith" / "credentials").read_text())[server.base_url]["token"])
    stored = (home / ".git-credentials").read_text()
    assert token not in stored and new in stored
    assert oct((home / ".git-credentials").stat().st_mode & 0o777) == "0o600"
    assert "may still hold the old secret" not in rotated.stdout  # store was the only helper

    fetched = git("fetch", env=env, cwd=home / "work", check=False)
    assert fetched.returncode == 0, fetched.stderr
    with server.client() as client:  # and the new token lives on: no reuse of the old one was seen
        assert client.get("/api/v1/me", auth=(person, new)).status_code == 200


def test_a_rotation_names_the_helpers_it_cannot_read(server, person, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = client_env(home)
    git("config", "--global", "credential.helper", "cache --timeout=60", env=env, cwd=home)
    assert login_at_terminal(server, person, server.create_token(person, "cached"), env)[0] == 0
    rotated = tokensmith("tokens", "rotate", env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert (
        f"git's credential helper “cache --timeout=60” may still hold the old secret for {server.base_url}"
        in rotated.stdout
    )
    remember(json.loads((home / "config" / "tokensmith" / "credentials").read_text())[server.base_url]["token"])
    # Once git asks tokensmith for this server, no other helper answers for it: nothing to say.
    assert tokensmith("git", "setup", env=env).returncode == 0
    again = tokensmith("tokens", "rotate", env=env)
    assert again.returncode == 0 and "may still hold" not in again.stdout, again.stdout
    remember(json.loads((home / "config" / "tokensmith" / "credentials").read_text())[server.base_url]["token"])
