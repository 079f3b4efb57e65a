"""`tokensmith status`: every server the client knows, each login checked with its server."""

from __future__ import annotations

import json
import re
import uuid

from tests.support.client import client_env, login_at_terminal, tokensmith
from tests.support.servers import LiveServer


def new_person(server) -> str:
    name = f"status-{uuid.uuid4().hex[:8]}"
    server.create_user(name)
    return name


def test_status_shows_every_login_and_what_became_of_it(server, warn_server, tmp_path):
    env = client_env(tmp_path / "home")
    nobody = tokensmith("status", env=env)
    assert nobody.returncode == 5 and nobody.stdout.startswith("Not logged in to any server")

    gone = LiveServer(tmp_path / "gone-data", name="gone").start()
    try:
        dropped = new_person(gone)
        assert login_at_terminal(gone, dropped, gone.create_token(dropped, "soon gone"), env)[0] == 0
    finally:
        gone.stop()
    revoked = new_person(warn_server)
    assert login_at_terminal(warn_server, revoked, warn_server.create_token(revoked, "to revoke"), env)[0] == 0
    assert warn_server.cli("tokens", "revoke-all", "--user", revoked).returncode == 0
    fine = new_person(server)
    assert login_at_terminal(server, fine, server.create_token(fine, "works"), env)[0] == 0

    status = tokensmith("status", env=env)
    assert status.returncode == 5, status.stderr  # a refused token is worth an exit status
    kept = tmp_path / "home" / "config" / "tokensmith" / "credentials"
    sections = {block.splitlines()[0]: block for block in ("\n" + status.stdout).split("\nhttp")[1:]}
    ok = sections[f"://127.0.0.1:{server.port} (default)"]
    assert f"Logged in as {fine} with token “works” (tks_…" in ok
    assert "Scopes:  api:read, api:write, git:read, git:write, maven:read" in ok
    assert (
        "Limits:  every project; from anywhere" in ok
        and "Expires: never" in ok
        and f"Kept in: {kept} (mode 0600)" in ok
    )
    refused = sections[f"://127.0.0.1:{warn_server.port}"]
    assert "The server refused the token: " in refused and "revoked" in refused
    assert f"Log in again: tokensmith login --server {warn_server.base_url}" in refused
    assert f"Not checked: Cannot reach {gone.base_url}" in sections[f"://127.0.0.1:{gone.port}"]

    as_json = json.loads(tokensmith("status", "--json", env=env).stdout)
    states = {login["server"]: login for login in as_json["servers"]}
    assert states[server.base_url]["state"] == "ok" and states[server.base_url]["token"]["name"] == "works"
    assert states[server.base_url]["default"] is True and states[server.base_url]["kept"] == "file"
    assert states[warn_server.base_url]["state"] == "refused" and states[gone.base_url]["state"] == "unreachable"
    assert as_json["project"] is None
    assert re.search(r"tks_[0-9A-Za-z]{38}", json.dumps(as_json)) is None  # hints only, never a token


def test_status_in_ci_shows_the_environments_login(server, tmp_path):
    person = new_person(server)
    env = client_env(
        tmp_path,
        TOKENSMITH_SERVER=server.base_url,
        TOKENSMITH_USERNAME=person,
        TOKENSMITH_TOKEN=server.create_token(person, "ci job"),
    )
    status = tokensmith("status", env=env)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[:2] == [
        f"{server.base_url} (default)",
        f"  Logged in as {person} with token “ci job” (tks_…" + status.stdout.split("(tks_…")[1].split(")")[0] + ")",
    ]
    assert "Kept in: the environment (TOKENSMITH_TOKEN)" in status.stdout
