"""`tokensmith publishers add|list|remove` from the server's shell, run as the real command, and
what the shell may not do to a project's CI account."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.support.ci_issuer import CiIssuer
from tests.support.ledger import remember

GITHUB = "https://token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def project(server) -> str:
    return server.create_project(f"shell-{uuid.uuid4().hex[:6]}", "com.shell", owner="admin")


def test_add_list_and_remove_a_publisher(server, project):
    added = server.cli(
        "publishers", "add", project, "--issuer", GITHUB, "--claim", "repository=acme/shell",
        "--claim", "ref=refs/heads/main", "--scope", "git:write", "--name", "Release from main",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    publisher_id = int(added.stdout)
    assert f"Added trusted publisher {publisher_id} “Release from main” to {project}" in added.stderr
    assert "ref=refs/heads/main, repository=acme/shell get git:read, git:write for 15 minutes" in added.stderr
    assert f"as ci+{project}" in added.stderr
    listed = json.loads(server.cli("publishers", "list", project, "--json").stdout)
    assert listed == [
        {
            "id": publisher_id,
            "project": project,
            "name": "Release from main",
            "issuer": GITHUB,
            "claims": {"ref": "refs/heads/main", "repository": "acme/shell"},
            "scopes": ["git:read", "git:write"],
            "username": f"ci+{project}",
            "live_tokens": 0,
            "created_at": listed[0]["created_at"],
            "created_by": "admin (shell)",
        }
    ]
    rows = {line.split()[0]: line for line in server.cli("publishers", "list").stdout.splitlines()}
    assert "Release from main" in rows[str(publisher_id)] and "repository=acme/shell" in rows[str(publisher_id)]
    removed = server.cli("publishers", "remove", str(publisher_id))
    assert removed.returncode == 0 and "revoked 0 live token(s)" in removed.stderr
    assert json.loads(server.cli("publishers", "list", project, "--json").stdout) == []
    again = server.cli("publishers", "remove", str(publisher_id))
    assert again.returncode == 3 and f"There is no trusted publisher {publisher_id}." in again.stderr


@pytest.mark.parametrize(
    "arguments, code, words",
    [
        (["--issuer", "http://ci.example.com", "--claim", "repository=a/b"], 2, "https:// URL"),
        (["--issuer", GITHUB, "--claim", "ref=main"], 2, "must pin the repository or project"),
        (["--issuer", GITHUB, "--claim", "repository"], 2, "NAME=VALUE"),
        (["--issuer", GITHUB, "--claim", "repository=a/b", "--scope", "root"], 2, "Unknown scope"),
        (["--issuer", GITHUB], 2, "Missing option '--claim'"),
    ],
)
def test_what_is_wrong_is_said_with_its_exit_code(server, project, arguments, code, words):
    result = server.cli("publishers", "add", project, *arguments)
    assert result.returncode == code and words in result.stderr, result.stderr
    assert result.stdout == ""


def test_an_unknown_project_and_the_same_publisher_twice(server, project):
    missing = server.cli("publishers", "add", "no-such-project", "--issuer", GITHUB, "--claim", "repository=a/b")
    assert missing.returncode == 3 and "There is no project 'no-such-project'" in missing.stderr
    assert server.cli("publishers", "list", "no-such-project").returncode == 3
    first = server.cli("publishers", "add", project, "--issuer", GITHUB, "--claim", "repository=twice/app")
    assert first.returncode == 0
    second = server.cli("publishers", "add", project, "--issuer", GITHUB, "--claim", "repository=twice/app")
    assert second.returncode == 4 and "matches these very ID tokens already" in second.stderr


def test_removing_a_publisher_revokes_the_tokens_it_gave_and_lists_count_them(server, project):
    with CiIssuer().running() as issuer:
        added = server.cli("publishers", "add", project, "--issuer", issuer.issuer, "--claim", "repository=acme/live")
        publisher_id = int(added.stdout)
        answer = httpx.post(
            f"{server.base_url}/api/v1/oidc/exchange",
            json={"token": issuer.sign(issuer.github_claims(server.base_url, repository="acme/live"))},
        )
        body = answer.json()
        remember(body["token"])
    listed = {row["id"]: row for row in json.loads(server.cli("publishers", "list", "--json").stdout)}
    assert listed[publisher_id]["live_tokens"] == 1
    removed = server.cli("publishers", "remove", str(publisher_id))
    assert "revoked 1 live token(s)" in removed.stderr
    use = httpx.get(f"{server.base_url}/api/v1/me", auth=(body["username"], body["token"]))
    assert use.status_code == 401 and "the trusted publisher it was made for was removed" in use.json()["message"]


def test_the_shell_gives_a_ci_account_no_token_no_password_no_sign_in(server, project):
    server.cli("publishers", "add", project, "--issuer", GITHUB, "--claim", "repository=acme/guard")
    account = f"ci+{project}"
    made = server.cli("tokens", "create", "--user", account, "--name", "by hand")
    assert made.returncode == 5 and "is the CI account of a project" in made.stderr and made.stdout == ""
    password = server.cli("users", "set-password", account, "--password-stdin", input="a long new password\n")
    assert password.returncode == 5 and "a password is not for it" in password.stderr
    linked = server.cli("users", "link", account, "--subject", "s1", "--issuer", "https://idp.example")
    assert linked.returncode == 5 and "signing in through an identity provider" in linked.stderr
    users = {row["username"]: row for row in json.loads(server.cli("users", "list", "--json").stdout)}
    assert users[account]["origin"] == "ci" and users[account]["active"]


def test_publishers_is_in_the_commands_help(server):
    assert "publishers" in server.cli("--help").stdout
    assert {"add", "list", "remove"} <= set(server.cli("publishers", "--help").stdout.split())
