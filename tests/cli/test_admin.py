"""Administration from the server's shell, run as the real `tokensmith` command."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from tests.support.ledger import remember
from tests.support.pages import sign_in
from tokensmith.tokens import format as token_format
from tokensmith.tokens import listing as token_listing

PASSWORD = "admin-made password"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def me(server, username, token):
    with server.client() as client:
        return client.get("/api/v1/me", auth=(username, token))


def test_users_create_with_a_password_from_stdin_then_sign_in(server):
    name = unique("ursula")
    remember(PASSWORD)
    result = server.cli(
        "users", "create", name, "--email", f"{name}@example.test", "--password-stdin", input=PASSWORD + "\n"
    )
    assert result.returncode == 0, result.stderr
    assert f"Created user {name}." in result.stderr and PASSWORD not in result.stdout + result.stderr
    with server.client() as client:
        assert sign_in(client, name, PASSWORD).status_code == 303


def test_a_user_without_a_password_is_told_what_they_can_do_on_this_server(server):
    """Issue 18: `users create bob` said bob signs in through the identity provider when none was
    configured. What the note says follows the configuration."""
    name = unique("bob")
    alone = server.cli("users", "create", name, "--email", f"{name}@example.test")
    assert alone.returncode == 0, alone.stderr
    assert "no identity provider is configured: they cannot sign in to the web site until you set one" in alone.stderr
    assert f"`tokensmith users set-password {name}`" in alone.stderr
    assert f"`tokensmith tokens create --user {name} --name …`" in alone.stderr
    assert "identity provider, or" not in alone.stderr
    other = unique("bob")
    with_provider = server.cli(
        "users",
        "create",
        other,
        "--email",
        f"{other}@example.test",
        env={
            "TOKENSMITH_OIDC_ISSUER": "https://acme.okta.com",
            "TOKENSMITH_OIDC_CLIENT_ID": "0oa1",
            "TOKENSMITH_OIDC_CLIENT_SECRET": remember("client secret of the test"),
            "TOKENSMITH_OIDC_PROVIDER_NAME": "Okta",
        },
    )
    assert with_provider.returncode == 0, with_provider.stderr
    assert (
        f"they sign in with Okta once this account is linked to them there (`tokensmith users link {other}"
        in with_provider.stderr
    )
    assert "set-password" not in with_provider.stderr


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
    assert token_format.parse(token, "tks_") and result.stdout == token + "\n"
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
    result = server.cli(
        "tokens",
        "create",
        "--user",
        name,
        "--name",
        "CI fetch",
        "--scope",
        "git:read",
        "--scope",
        "maven:read",
        "--project",
        project,
        "--allow-ip",
        "127.0.0.0/8",
        "--allow-ip",
        "2001:db8::/32",
    )
    assert result.returncode == 0, result.stderr
    token = remember(result.stdout.strip())
    assert f"scopes: git:read, maven:read; projects: {project}; from: 127.0.0.0/8, 2001:db8::/32" in result.stderr
    body = me(server, name, token).json()["token"]
    assert (body["scopes"], body["projects"], body["allowed_ips"]) == (
        ["git:read", "maven:read"],
        [project],
        ["127.0.0.0/8", "2001:db8::/32"],
    )
    with server.client() as client:
        refused = client.get("/api/v1/tokens", auth=(name, token))
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"
    everything = remember(server.cli("tokens", "create", "--user", name, "--name", "all").stdout.strip())
    assert me(server, name, everything).json()["token"]["scopes"] == [
        "api:read",
        "api:write",
        "git:read",
        "git:write",
        "maven:read",
    ]


@pytest.mark.parametrize(
    "args, words",
    [
        (("--scope", "write"), "Unknown scope 'write'"),
        (("--scope", ""), "Choose at least one scope"),
        (("--allow-ip", "192.168.1.1/16"), "did you mean 192.168.0.0/16?"),
        (("--allow-ip", "10.0.0.0/8,10.1.0.0/16"), "is not an address or a CIDR block"),
        (("--project", "nobody-has-this"), "You are not a member of 'nobody-has-this'"),
    ],
    ids=["unknown-scope", "empty-scope", "host-bits", "comma-list", "unreachable-project"],
)
def test_tokens_create_refuses_bad_limits_and_creates_nothing(server, args, words):
    name = unique("badlim")
    server.cli("users", "create", name, "--email", f"{name}@example.test")
    refused = server.cli("tokens", "create", "--user", name, "--name", "narrow", *args)
    assert refused.returncode == 2 and refused.stdout == "" and words in refused.stderr
    assert "Traceback" not in refused.stderr
    with server.store() as session:
        from tokensmith.accounts import users

        assert token_listing.list_tokens(session, users.get_user(session, name).id) == []


def test_an_admin_command_where_there_is_no_store_says_so_and_creates_none(server, tmp_path):
    elsewhere = tmp_path / "another-folder"
    elsewhere.mkdir()
    env = {key: value for key, value in server.env.items() if key != "TOKENSMITH_DATA_DIR"}
    (elsewhere / "hotfix.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    for arguments in (
        ["users", "create", "nobody", "--email", "n@example.test"],
        ["users", "list"],
        ["tokens", "create", "--user", "admin", "--name", "x"],
        ["projects", "list"],
        ["packages", "publish", "hotfix.zip", "--coordinates", "com.acme:hotfix:1.0.0"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "tokensmith", *arguments],
            env=env,
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, (arguments, result.stderr)
        assert (
            f"No Tokensmith store at {elsewhere / 'var'}" in result.stderr
            and "set TOKENSMITH_DATA_DIR" in result.stderr
        )
        assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert sorted(path.name for path in elsewhere.iterdir()) == ["hotfix.zip"]  # no var/ made


def test_users_list_shows_every_account(server):
    name = unique("lister")
    server.create_user(name, admin=True)
    assert server.cli("users", "disable", name).returncode == 0
    listed = server.cli("users", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["USERNAME", "EMAIL", "ADMIN", "ACTIVE", "ORIGIN", "CREATED"]
    row = next(row.split() for row in rows if row.startswith(name + " "))
    assert row[:5] == [name, f"{name}@example.test", "yes", "disabled", "local"]
    as_json = {user["username"]: user for user in json.loads(server.cli("users", "list", "--json").stdout)}
    assert as_json[name]["admin"] is True and as_json[name]["active"] is False and as_json["admin"]["active"] is True


def test_projects_list_shows_every_project_with_its_members(server):
    owner, project = unique("owner"), unique("listed")
    server.create_user(owner)
    assert server.cli("projects", "create", project, "--group-id", "com.acme.studio", "--owner", owner).returncode == 0
    assert server.cli("projects", "add-member", project, "admin").returncode == 0
    listed = server.cli("projects", "list")
    assert listed.returncode == 0 and listed.stdout.splitlines()[0].split()[:4] == ["PROJECT", "GROUP", "ID", "MEMBERS"]
    assert next(row for row in listed.stdout.splitlines() if row.startswith(project)).split()[1:3] == [
        "com.acme.studio",
        "2",
    ]
    as_json = json.loads(server.cli("projects", "list", "--json").stdout)
    assert {"id": project, "group_id": "com.acme.studio", "members": 2} == {
        k: v for k, v in next(p for p in as_json if p["id"] == project).items() if k != "created_at"
    }


def test_users_set_password_resets_a_lost_one_and_ends_the_sessions(server):
    name = unique("forgetful")
    server.create_user(name, password=PASSWORD, admin=True)
    token = server.create_token(name, "kept")
    with server.client() as browser:
        assert sign_in(browser, name, PASSWORD).status_code == 303
        assert browser.get("/tokens").status_code == 200
        new_password = remember("a brand new long password")
        result = server.cli("users", "set-password", name, "--password-stdin", input=new_password + "\n")
        assert result.returncode == 0 and f"Set the password of {name}" in result.stderr
        assert new_password not in result.stdout + result.stderr
        assert browser.get("/tokens").status_code == 303  # the session before the reset is over
    with server.client() as fresh:
        assert sign_in(fresh, name, PASSWORD).status_code == 401
        assert sign_in(fresh, name, new_password).status_code == 303
        assert "Password set by an administrator" in fresh.get("/tokens").text
    assert me(server, name, token).status_code == 200  # tokens are not the password
    weak = server.cli("users", "set-password", name, "--password-stdin", input="short\n")
    assert weak.returncode == 2 and "at least 12" in weak.stderr
    no_terminal = server.cli("users", "set-password", name)
    assert no_terminal.returncode == 2 and "--password-stdin" in no_terminal.stderr
    ghost = server.cli("users", "set-password", "ghost-" + name, "--password-stdin", input=new_password + "\n")
    assert ghost.returncode == 3


def test_users_set_password_asks_twice_on_a_terminal(server):
    import pexpect

    name = unique("typist")
    server.create_user(name)
    password = remember("typed at the terminal twice")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "tokensmith", "users", "set-password", name],
        env=server.env,
        cwd=str(server.data_dir.parent),
        encoding="utf-8",
        timeout=60,
    )
    child.expect("New password: ")
    child.sendline(password)
    child.expect("Repeat for confirmation: ")
    child.sendline(password)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and password not in child.before
    with server.client() as browser:
        assert sign_in(browser, name, password).status_code == 303
