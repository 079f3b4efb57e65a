"""`tokensmith tokens lookup` from the server's shell, as the real command, on the shared server:
the values on stdin (piped, or typed at a hidden prompt), never shown back. (`tokens sweep`:
tests/tokens/test_sweep.py, against two instances on PostgreSQL.)"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pexpect
import pytest

from tests.support.ledger import SECRETS
from tokensmith.tokens import format as token_format


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def works(server, token: str) -> bool:
    with server.client() as client:
        return client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_lookup_says_whose_each_token_is_without_showing_any(server):
    alice, bob = unique("alice"), unique("bob")
    server.create_user(alice)
    server.create_user(bob)
    laptop = server.create_token(alice, "laptop", scopes=["git:read"], allowed_ips=["10.0.0.0/8"])
    ci = server.create_token(bob, "ci")
    with server.client() as client:
        client.get("/api/v1/me", headers={"Authorization": f"Bearer {ci}", "User-Agent": "build-bot/3"})
    server.used_token_row(bob, "ci")
    stranger = token_format.generate("tks_")
    pasted = f"{laptop}\nCI_TOKEN={ci}   # from a build log\n{stranger}\nhunter2-not-a-token\n"
    result = server.cli("tokens", "lookup", input=pasted)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["#", "TOKEN", "OWNER", "NAME", "STATE", "LIMITS", "LAST", "USED"]
    assert alice in lines[1] and "laptop" in lines[1] and " live " in lines[1] and "10.0.0.0/8" in lines[1]
    assert bob in lines[2] and "from 127.0.0.1 (build-bot/3)" in lines[2]
    assert "no token here has this value" in lines[3] and "not a Tokensmith token" in lines[4]
    assert "Looked up 4 value(s): 2 token(s) of this server." in result.stderr
    for secret in (laptop, ci, stranger, "hunter2-not-a-token", *SECRETS):
        assert secret not in result.stdout + result.stderr
    assert works(server, ci) and server.token_row(alice, "laptop").revoked_at is None  # looking is not revoking

    as_json = json.loads(server.cli("tokens", "lookup", "--json", input=pasted).stdout)
    assert [(entry["found"], entry.get("owner"), entry["state"][:4]) for entry in as_json[:2]] == [
        (True, alice, "live"),
        (True, bob, "live"),
    ]
    assert as_json[1]["last_used_ips"][0]["ip"] == "127.0.0.1" and as_json[1]["last_used_agent"] == "build-bot/3"
    assert set(as_json[2]) == {"position", "hint", "found", "state"}  # nothing more is known of a stranger
    assert as_json[2]["hint"] == token_format.hint(stranger, "tks_") and not as_json[2]["found"]


def test_lookup_revoke_revokes_every_live_token_found_and_tells_its_owner(server):
    owner = unique("carol")
    server.create_user(owner)
    leaked = server.create_token(owner, "pasted in a chat")
    kept = server.create_token(owner, "kept")
    result = server.cli("tokens", "lookup", "--revoke", input=leaked + "\n")
    assert result.returncode == 0, result.stderr
    assert "revoked now on" in result.stdout and "by an administrator" in result.stdout
    assert "1 revoked now (each owner told)" in result.stderr
    assert not works(server, leaked) and works(server, kept)
    with server.client() as client:
        events = client.get("/api/v1/audit", auth=(owner, kept)).json()["events"]
    assert any(
        event["action"] == "token.revoked"
        and event["details"]["reason"] == "admin"
        and event["actor"] == "admin (shell)"
        for event in events
    )


def test_lookup_takes_no_token_as_an_argument_and_needs_one_on_stdin(server):
    token = server.create_token("admin", unique("argument"))
    as_argument = server.cli("tokens", "lookup", token)
    assert as_argument.returncode == 2 and token not in as_argument.stderr + as_argument.stdout
    empty = server.cli("tokens", "lookup", input="\n \n")
    assert empty.returncode == 2 and "No token given" in empty.stderr


def test_at_a_terminal_lookup_asks_for_each_token_without_echoing_it(server):
    owner = unique("erin")
    server.create_user(owner)
    token = server.create_token(owner, "typed")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "tokensmith", "tokens", "lookup"],
        env=server.env,
        cwd=str(server.data_dir.parent),
        encoding="utf-8",
        timeout=60,
    )
    try:
        child.expect("Token \\(hidden; an empty line to finish\\): ")
        child.sendline(token)
        child.expect("Token \\(hidden; an empty line to finish\\): ")
        child.sendline("")
        child.expect(pexpect.EOF)
        output = child.before
    finally:
        child.close()
    assert child.exitstatus == 0, output
    assert owner in output and "typed" in output and token not in output


@pytest.mark.slow  # starts the command itself
def test_the_client_alone_names_lookup_and_sweep_as_server_commands():
    result = subprocess.run(
        [sys.executable, "-m", "tokensmith", "tokens", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "lookup" in result.stdout and "sweep" in result.stdout
