"""The client imports nothing of the server: each command, run as a person runs it, is checked
for what it loaded (sys.modules at its exit). git runs `git-credential get` on every fetch and
push; the server's packages would cost it a second or two."""

from __future__ import annotations

import uuid

import pytest

from tests.support.client import client_env, loaded_by, login_at_terminal

# What only the server needs: none of it may load for a client command.
SERVER_PACKAGES = (
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
    "authlib",
    "argon2",
    "psycopg",
    "jinja2",
    "pydantic",
    "prometheus_client",
    "joserfc",
    "scim2_models",
    "typer",
    "rich",
)
# The only tokensmith modules a client command may load.
CLIENT_MODULES = ("tokensmith", "tokensmith.cli", "tokensmith.cli.entry", "tokensmith.cli.main")


def server_parts(modules: list[str]) -> list[str]:
    return [
        name
        for name in modules
        if name.split(".")[0] in SERVER_PACKAGES
        or (name.startswith("tokensmith") and name not in CLIENT_MODULES and not name.startswith("tokensmith.client"))
    ]


@pytest.fixture
def logged_in_env(server, tmp_path):
    person = f"imports-{uuid.uuid4().hex[:8]}"
    server.create_user(person)
    env = client_env(tmp_path)
    assert login_at_terminal(server, person, server.create_token(person, "imports"), env)[0] == 0
    return env


@pytest.mark.parametrize(
    "arguments",
    [
        ["git-credential", "get"],
        ["whoami"],
        ["tokens", "list"],
        ["status"],
        ["--help"],
        ["tokens", "--help"],
        ["--version"],
        ["whoami", "--bogus"],
        ["logout"],
    ],
)
def test_a_client_command_loads_nothing_of_the_server(server, logged_in_env, tmp_path, arguments):
    host = server.base_url.removeprefix("http://")
    modules, result = loaded_by(arguments, logged_in_env, tmp_path, input=f"protocol=http\nhost={host}\n\n")
    assert result.returncode in (0, 2), result.stderr
    assert server_parts(modules) == []
    if arguments == ["git-credential", "get"]:
        assert result.stdout.startswith("username=imports-")
        assert "httpx" not in modules and "argparse" not in modules and "keyring" not in modules


def test_an_administration_command_does_load_the_server(server, tmp_path):
    modules, result = loaded_by(["users", "disable", "nobody-here"], server.env, tmp_path)
    assert result.returncode == 3 and "sqlalchemy" in modules and "tokensmith.accounts.users" in modules


# What the server's shell commands have no use for, and loaded at every run before: Alembic on a
# store at the latest migration, the identity provider's client, the PostgreSQL driver on
# SQLite, the web application.
NOT_FOR_COMMANDS = (
    "alembic",
    "mako",
    "authlib",
    "joserfc",
    "httpx2",
    "psycopg",
    "fastapi",
    "starlette",
    "uvicorn",
    "jinja2",
)


@pytest.mark.parametrize(
    "arguments",
    [["users", "list"], ["projects", "list"], ["users", "link", "nobody-here", "--subject", "s", "--issuer", "x"]],
)
def test_an_administration_command_loads_only_what_it_uses(server, tmp_path, arguments):
    modules, result = loaded_by(arguments, server.env, tmp_path)
    assert result.returncode in (0, 3), result.stderr
    assert [name for name in modules if name.split(".")[0] in NOT_FOR_COMMANDS] == []
