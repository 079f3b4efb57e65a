"""Administration from the server's shell, run as the real `tokensmith` command."""

from __future__ import annotations

import uuid

import pytest

from tests.support.ledger import remember
from tests.support.pages import sign_in
from tokensmith import tokens

PASSWORD = "admin-made password"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def me(server, username, token):
    with server.client() as client:
        return client.get("/api/v1/me", auth=(username, token))


def test_users_create_with_a_password_from_stdin_then_sign_in(server):
    name = unique("ursula")
    remember(PASSWORD)
    result = server.cli("users", "create", name, "--email", f"{name}@example.test", "--password-stdin",
                        input=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert f"Created user {name}." in result.stderr and PASSWORD not in result.stdout + result.stderr
    with server.client() as client:
        assert sign_in(client, name, PASSWORD).status_code == 303


def test_users_create_refuses_duplicates_and_bad_input_with_exit_codes(server):
    name = unique("victor")
    assert server.cli("users", "create", name, "--email", "v@example.test").returncode == 0
    again = server.cli("users", "create", name.upper(), "--email", "v@example.test")
    assert again.returncode == 4 and "already exists" in again.stderr and "Traceback" not in again.stderr
    bad_email = server.cli("users", "create", unique("w"), "--email", "nope")
    assert bad_email.returncode == 2 and "not an email address" in bad_email.stderr
    weak = server.cli("users", "create", unique("w"), "--email", "w@example.test", "--password-stdin", input="short\n")
    assert weak.returncode == 2 and "at least 12" in weak.stderr
    empty = server.cli("users", "create", unique("w"), "--email", "w@example.test", "--password-stdin", input="")
    assert empty.returncode == 2 and "stdin held no password" in empty.stderr


def test_admin_flag_makes_an_administrator(server):
    name = unique("ada")
    result = server.cli("users", "create", name, "--email", "ada@example.test", "--admin")
    assert result.returncode == 0 and "(administrator)" in result.stderr
    assert server.user(name).is_admin


def test_tokens_create_prints_the_token_once_on_stdout(server):
    name = unique("svc")
    server.cli("users", "create", name, "--email", "svc@example.test")
    result = server.cli("tokens", "create", "--user", name, "--name", "deploy bot", "--expires-in", "30")
    assert result.returncode == 0, result.stderr
    token = remember(result.stdout.strip())
    assert tokens.parse(token, "tks_") and result.stdout == token + "\n"
    assert token not in result.stderr and "will not be shown again" in result.stderr
    body = me(server, name, token).json()
    assert body["token"]["name"] == "deploy bot" and body["token"]["expires_at"] is not None
    duplicate = server.cli("tokens", "create", "--user", name, "--name", "deploy bot")
    assert duplicate.returncode == 4 and duplicate.stdout == ""
    ghost = server.cli("tokens", "create", "--user", "ghost-" + name, "--name", "x")
    assert ghost.returncode == 3 and "no user named" in ghost.stderr
    for bad in ("0", "-5", "soon"):
        refused = server.cli("tokens", "create", "--user", name, "--name", f"bad {bad}", "--expires-in", bad)
        assert refused.returncode == 2 and refused.stdout == ""


def test_revoke_all_stops_every_token_but_not_the_password(server):
    name = unique("lost")
    server.create_user(name, password=PASSWORD)
    first = server.create_token(name, "laptop")
    second = server.create_token(name, "phone")
    result = server.cli("tokens", "revoke-all", "--user", name)
    assert result.returncode == 0 and "Revoked 2 token(s)" in result.stderr
    for token in (first, second):
        assert "revoked" in me(server, name, token).json()["message"]
    with server.client() as client:
        assert sign_in(client, name, PASSWORD).status_code == 303


def test_users_disable_reports_and_unknown_users_are_named(server):
    missing = server.cli("users", "disable", "nobody-at-all")
    assert missing.returncode == 3 and "no user named 'nobody-at-all'" in missing.stderr


def test_users_enable_lets_a_disabled_user_back_in_without_their_old_tokens(server):
    name = unique("rita")
    server.create_user(name, password=PASSWORD)
    token = server.create_token(name, "laptop")
    assert server.cli("users", "disable", name).returncode == 0
    result = server.cli("users", "enable", name)
    assert result.returncode == 0 and "stay revoked" in result.stderr
    assert "revoked" in me(server, name, token).json()["message"]
    with server.client() as client:
        assert sign_in(client, name, PASSWORD).status_code == 303


def test_users_link_ties_an_account_to_a_provider_identity(server):
    name = unique("lena")
    server.create_user(name)
    no_provider = server.cli("users", "link", name, "--subject", "00u42")
    assert no_provider.returncode == 2 and "--issuer" in no_provider.stderr
    result = server.cli("users", "link", name, "--subject", "00u42", "--issuer", "https://idp.example.test")
    assert result.returncode == 0, result.stderr
    assert (server.user(name).oidc_issuer, server.user(name).oidc_subject) == ("https://idp.example.test", "00u42")
    other = unique("lars")
    server.create_user(other)
    taken = server.cli("users", "link", other, "--subject", "00u42", "--issuer", "https://idp.example.test")
    assert taken.returncode == 2 and f"already linked to the account '{name}'" in taken.stderr


def test_help_lists_the_admin_commands(server):
    result = server.cli("--help")
    assert result.returncode == 0
    for command in ("serve", "users", "tokens"):
        assert command in result.stdout
    assert "revoke-all" in server.cli("tokens", "--help").stdout


def test_tokens_create_with_limits(server):
    name = unique("narrow")
    server.cli("users", "create", name, "--email", f"{name}@example.test")
    project = unique("adm-lim")
    assert server.cli("projects", "create", project, "--group-id", "com.acme", "--owner", name).returncode == 0
    result = server.cli("tokens", "create", "--user", name, "--name", "CI fetch", "--scope", "git:read",
                        "--scope", "maven:read", "--project", project, "--allow-ip", "127.0.0.0/8",
                        "--allow-ip", "2001:db8::/32")
    assert result.returncode == 0, result.stderr
    token = remember(result.stdout.strip())
    assert (f"scopes: git:read, maven:read; projects: {project}; from: 127.0.0.0/8, 2001:db8::/32"
            in result.stderr)
    body = me(server, name, token).json()["token"]
    assert (body["scopes"], body["projects"], body["allowed_ips"]) == (
        ["git:read", "maven:read"], [project], ["127.0.0.0/8", "2001:db8::/32"])
    with server.client() as client:
        refused = client.get("/api/v1/tokens", auth=(name, token))
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"
    everything = remember(server.cli("tokens", "create", "--user", name, "--name", "all").stdout.strip())
    assert me(server, name, everything).json()["token"]["scopes"] == [
        "api:read", "api:write", "git:read", "git:write", "maven:read"]


@pytest.mark.parametrize("args, words", [
    (("--scope", "write"), "Unknown scope 'write'"),
    (("--scope", ""), "Choose at least one scope"),
    (("--allow-ip", "192.168.1.1/16"), "did you mean 192.168.0.0/16?"),
    (("--allow-ip", "10.0.0.0/8,10.1.0.0/16"), "is not an address or a CIDR block"),
    (("--project", "nobody-has-this"), "You are not a member of 'nobody-has-this'"),
], ids=["unknown-scope", "empty-scope", "host-bits", "comma-list", "unreachable-project"])
def test_tokens_create_refuses_bad_limits_and_creates_nothing(server, args, words):
    name = unique("badlim")
    server.cli("users", "create", name, "--email", f"{name}@example.test")
    refused = server.cli("tokens", "create", "--user", name, "--name", "narrow", *args)
    assert refused.returncode == 2 and refused.stdout == "" and words in refused.stderr
    assert "Traceback" not in refused.stderr
    with server.store() as session:
        from tokensmith import accounts, personal_tokens

        assert personal_tokens.list_tokens(session, accounts.get_user(session, name).id) == []
