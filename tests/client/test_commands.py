"""The client as a person runs it: the installed `tokensmith` command in a pseudo-terminal,
answering its prompts (pexpect), and in scripts, against a real server."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support.client import (
    TOKENSMITH,
    at_terminal,
    client_env,
    login_at_terminal,
    project_with_a_commit,
    tokensmith,
)
from tests.support.ledger import remember
from tests.support.ports import free_port

pytestmark = pytest.mark.slow  # runs the installed command, as a person does

PASSWORD = "client person's password"
MOMENT = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}"


@pytest.fixture
def person(server):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    server.create_user(name, password=PASSWORD)
    return name


def logged_in(server, person, tmp_path, name="client") -> tuple[str, dict[str, str]]:
    token = server.create_token(person, name)
    env = client_env(tmp_path)
    assert login_at_terminal(server, person, token, env)[0] == 0
    return token, env


def test_login_prompts_checks_and_keeps_the_token_in_a_private_file_without_a_keyring(server, person, tmp_path):
    token = server.create_token(person, "laptop")
    env = client_env(tmp_path)
    status, screen = login_at_terminal(server, person, token, env)
    assert status == 0, screen
    assert f"Logged in to {server.base_url} as {person} with token “laptop”" in screen
    stored = tmp_path / "config" / "tokensmith" / "credentials"
    assert f"Credentials stored in {stored} (mode 0600; there is no system keyring here)" in screen
    assert token not in screen  # typed hidden, never echoed
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    whoami = tokensmith("whoami", env=env)
    assert (
        whoami.returncode == 0
        and whoami.stdout
        == (  # (issue 18: it ended "(… (mode 0600)).")
            f"{person} with token “laptop” (tks_…{token[-4:]}) on {server.base_url}; credentials from {stored} "
            "(mode 0600).\n"
        )
    )
    assert token not in whoami.stdout + whoami.stderr
    logout = tokensmith("logout", env=env)
    assert logout.returncode == 0 and f"Logged out of {server.base_url}" in logout.stdout
    assert token not in stored.read_text()


def test_whoami_after_logout_says_not_logged_in_even_on_a_terminal(server, person, tmp_path):
    _token, env = logged_in(server, person, tmp_path)
    assert tokensmith("logout", env=env).returncode == 0
    status, screen = at_terminal("whoami", env=env)  # nothing to answer: no prompt may come
    assert status == 5 and f"Not logged in to {server.base_url}: run `tokensmith login --server" in screen
    assert "Username" not in screen
    again = tokensmith("logout", env=env)
    assert again.returncode == 0 and "Not logged in" in again.stdout


@pytest.mark.parametrize("case", ["wrong token", "revoked token", "password"])
def test_a_refused_login_says_why_and_stores_nothing(server, person, tmp_path, case):
    token = server.create_token(person, f"refused {case}")
    secret = {"wrong token": token[:-4] + "AAAA", "revoked token": token, "password": PASSWORD}[case]
    if case == "revoked token":
        assert server.cli("tokens", "revoke-all", "--user", person).returncode == 0
    status, screen = login_at_terminal(server, person, secret, client_env(tmp_path))
    assert status == 5, screen
    expected = {
        "wrong token": "mistyped",
        "revoked token": "revoked",
        "password": f"takes a personal access token here. Create one on the My Tokens page, {server.base_url}/tokens",
    }
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
    server.create_token(person, "narrow", scopes=["api:read"], allowed_ips=["127.0.0.0/8"])
    env = client_env(tmp_path, TOKENSMITH_SERVER=server.base_url, TOKENSMITH_USERNAME=person, TOKENSMITH_TOKEN=token)
    whoami = tokensmith("whoami", env=env)
    assert whoami.returncode == 0 and "credentials from the environment (TOKENSMITH_TOKEN)" in whoami.stdout
    listed = tokensmith("tokens", "list", "--json", env=env)
    assert listed.returncode == 0 and "ci" in [t["name"] for t in json.loads(listed.stdout)]
    assert token not in listed.stdout
    table = tokensmith("tokens", "list", env=env)
    assert table.returncode == 0 and token not in table.stdout
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "TOKEN", "SCOPES", "LIMITS", "CREATED", "LAST", "USED", "EXPIRES"]
    assert any(
        row.split()[1:3] == ["ci", f"tks_…{token[-4:]}"] and "every project; from anywhere" in row for row in rows
    )
    assert any(
        row.split()[1] == "narrow" and " api:read " in row and "every project; from 127.0.0.0/8" in row for row in rows
    )
    assert not (tmp_path / "config").exists()  # nothing kept


def test_tokens_list_fits_a_terminal_of_80_columns(server, person, tmp_path):
    """Issue 18: `tokens list` wrapped at 200 columns (a whole Maven user agent). At a terminal
    each token is one line within its width; piped, the table keeps every column whole."""
    token, env = logged_in(server, person, tmp_path, name="Laptop")
    maven = server.create_token(person, "Maven on the build machine with a long name")
    with server.client(headers={"User-Agent": "Apache-Maven/3.8.7 (Java 17.0.13; Linux 6.1.0-28-amd64)"}) as client:
        assert client.get("/api/v1/me", auth=(person, maven)).status_code == 200
    server.used_token_row(person, "Maven on the build machine with a long name")  # written behind the request
    server.create_token(
        person, "narrow", scopes=["git:read"], allowed_ips=["2001:db8:1234:5678::/64", "203.0.113.0/24"]
    )
    env = {**env, "COLUMNS": "80", "LINES": "24"}
    status, screen = at_terminal("tokens", "list", env=env, dimensions=(24, 80))
    assert status == 0, screen
    lines = screen.replace("\r", "").splitlines()
    assert lines[0].split() == ["ID", "NAME", "TOKEN", "ACCESS", "LAST", "USED", "(UTC)", "EXPIRES"]
    assert all(len(line) <= 80 for line in lines), "\n".join(line for line in lines if len(line) > 80)
    rows = {re.search(r"tks_…\w{4}", line).group(): line for line in lines[1:4]}
    assert len(rows) == 3 and {f"tks_…{token[-4:]}", f"tks_…{maven[-4:]}"} <= set(rows), screen
    assert "Laptop" in rows[f"tks_…{token[-4:]}"] and " everything " in rows[f"tks_…{token[-4:]}"]
    assert re.search(
        rf" Maven on the [^ ]*…  tks_…{maven[-4:]}  everything +{MOMENT}  never$", rows[f"tks_…{maven[-4:]}"]
    )
    narrow = next(line for line in lines[1:4] if "narrow" in line)
    assert re.search(r" git:read; from 2\S*… +never +never$", narrow), narrow
    assert "Where and by what each was last used, every limit: tokens list --json" in screen
    piped = tokensmith("tokens", "list", env=env)  # a pipe: whole cells, the agent included
    assert "Apache-Maven/3.8.7 (Java 17.0.13; Linux 6.1.0-28-amd64)" in piped.stdout and piped.stderr == ""


def test_a_server_that_is_down_is_reported_with_exit_code_6(tmp_path):
    env = client_env(
        tmp_path,
        TOKENSMITH_SERVER=f"http://127.0.0.1:{free_port()}",
        TOKENSMITH_USERNAME="x",
        TOKENSMITH_TOKEN="tks_" + "A" * 38,
    )
    result = tokensmith("whoami", env=env)
    assert result.returncode == 6 and "Cannot reach" in result.stderr and "Traceback" not in result.stderr
    assert "tks_" not in result.stderr


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("127.0.0.1:8000", "“127.0.0.1:8000” is not a URL: give the scheme too, like http://127.0.0.1:8000"),
        ("tokens.example.com", "give the scheme too, like https://tokens.example.com"),
        ("http://127.0.0.1:8000/tokens", "Give the server's address without a path: http://127.0.0.1:8000"),
        ("HTTP://LOCALHOST:80/", None),
        ("ftp://tokens.example.com", "is not an http:// or https:// URL"),
        ("https://alice:secret@tokens.example.com", "without a username or token in it"),
        ("http://127.0.0.1:99999", "is not a server URL"),
    ],
)
def test_a_server_url_that_is_not_one_says_what_to_type(tmp_path, typed, says):
    result = tokensmith("login", "--server", typed, env=client_env(tmp_path))
    if says is None:  # a URL it takes: it goes on to ask for the username (no terminal here)
        assert result.returncode == 5 and "No terminal to ask for the username" in result.stderr
        return
    assert result.returncode == 2 and says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_tokens_revoke_asks_first_unless_told_yes(server, person, tmp_path):
    _token, env = logged_in(server, person, tmp_path)
    server.create_token(person, "old phone")
    server.create_token(person, "old tablet")
    no_terminal = tokensmith("tokens", "revoke", "old phone", env=env)
    assert no_terminal.returncode == 2 and "--yes" in no_terminal.stderr
    declined, screen = at_terminal(
        "tokens",
        "revoke",
        "old phone",
        env=env,
        answers=[(r"Revoke token “old phone” \(tks_…\w{4}\)\? \[y/N\]: ", "n")],
    )
    assert declined == 1 and "Nothing revoked" in screen
    status, screen = at_terminal(
        "tokens",
        "revoke",
        "old phone",
        env=env,
        answers=[(r"Revoke token “old phone” \(tks_…\w{4}\)\? \[y/N\]: ", "y")],
    )
    assert status == 0 and "Revoked token “old phone”" in screen
    tablet_id = server.token_row(person, "old tablet").id
    assert tokensmith("tokens", "revoke", str(tablet_id), "--yes", env=env).returncode == 0
    names = [t["name"] for t in json.loads(tokensmith("tokens", "list", "--json", env=env).stdout)]
    assert "old phone" not in names and "old tablet" not in names and "client" in names
    missing = tokensmith("tokens", "revoke", "nope", "--yes", env=env)
    assert missing.returncode == 3 and "tokens list" in missing.stderr


def test_a_revoked_kept_token_says_to_log_in_again(server, person, tmp_path):
    _token, env = logged_in(server, person, tmp_path)
    assert server.cli("tokens", "revoke-all", "--user", person).returncode == 0
    whoami = tokensmith("whoami", env=env)
    assert whoami.returncode == 5 and "revoked" in whoami.stderr
    assert f"Log in again: tokensmith login --server {server.base_url}" in whoami.stderr


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
    registered = tokensmith(
        "register", "--project", project, "--description", "staging", "--key-file", str(key_file), env=env
    )
    assert registered.returncode == 0 and str(key_file) in registered.stdout
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    instance_id, key = key_file.read_text().strip().split(":", 1)
    remember(key)
    assert key not in registered.stdout and instance_id in registered.stdout


def test_a_linked_folder_gives_release_register_and_status_their_project(server, person, tmp_path):
    _token, env = logged_in(server, person, tmp_path, name="workstation")
    project = project_with_a_commit(server, person, tmp_path)
    folder = tmp_path / "folder"
    (folder / "deep" / "below").mkdir(parents=True)
    unlinked = tokensmith("release", env=env, cwd=folder)
    assert unlinked.returncode == 2 and "not linked" in unlinked.stderr and "studio link" in unlinked.stderr

    linked = tokensmith("studio", "link", project, env=env, cwd=folder)
    assert linked.returncode == 0, linked.stderr
    assert f"Git:   {server.base_url}/git/{project}.git" in linked.stdout
    assert f"Maven: com.acme.studio:{project} from {server.base_url}/maven/studio/" in linked.stdout
    assert json.loads((folder / ".tokensmith.json").read_text()) == {"server": server.base_url, "project": project}
    hidden = tokensmith("studio", "link", "someone-elses", env=env, cwd=folder)
    assert hidden.returncode == 3 and "not a member" in hidden.stderr

    below = folder / "deep" / "below"  # as git finds its repository from a subfolder
    released = tokensmith("release", "--version", "PATCH", env=env, cwd=below)
    assert (
        released.returncode == 0 and released.stdout == f"Released {project} 0.0.1: com.acme.studio:{project}:0.0.1\n"
    )
    key_file = tmp_path / "linked.key"
    registered = tokensmith(
        "register", "--description", "from the link", "--key-file", str(key_file), env=env, cwd=below
    )
    assert registered.returncode == 0 and f"of {project}." in registered.stdout
    remember(key_file.read_text().strip().split(":", 1)[1])
    status = tokensmith("status", env=env, cwd=below)
    assert status.returncode == 0, status.stderr
    assert f"Project {project} on {server.base_url} (linked in {folder / '.tokensmith.json'})" in status.stdout
    assert "Access: write" in status.stdout and f"Git:    {server.base_url}/git/{project}.git" in status.stdout


def test_usage_errors_and_failures_are_one_line_without_a_traceback_unless_debug(tmp_path):
    env = client_env(
        tmp_path,
        TOKENSMITH_SERVER=f"http://127.0.0.1:{free_port()}",
        TOKENSMITH_USERNAME="x",
        TOKENSMITH_TOKEN="tks_" + "B" * 38,
    )
    plain = tokensmith("whoami", env=env)
    assert plain.returncode == 6 and len(plain.stderr.strip().splitlines()) == 1 and "Traceback" not in plain.stderr
    debug = tokensmith("--debug", "whoami", env=env)
    assert debug.returncode == 6 and "Traceback" in debug.stderr and "Cannot reach" in debug.stderr
    for arguments, says in [
        (["whoami", "--bogus"], "Error: Unrecognized arguments: --bogus. See `tokensmith whoami --help`."),
        (
            ["tokens", "revoke"],
            "Error: The following arguments are required: NAME_OR_ID. See `tokensmith tokens revoke --help`.",
        ),
        (["frobnicate"], "Error: Argument COMMAND: invalid choice: 'frobnicate'"),
        (["users", "create", "x"], "Error: Missing option '--email'. See `tokensmith users create --help`."),
        (
            ["tokens", "create", "--user"],
            "Error: Option '--user' requires an argument. See `tokensmith tokens create --help`.",
        ),
    ]:
        result = tokensmith(*arguments, env=env)
        assert result.returncode == 2 and result.stderr.startswith(says), (arguments, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_version_help_and_groups_without_a_command(tmp_path):
    env = client_env(tmp_path)
    version = tokensmith("--version", env=env)
    assert version.returncode == 0 and version.stdout.startswith("tokensmith 0.")
    for arguments in (["--help"], [], ["tokens"], ["whoami", "--help"], ["login", "--help"], ["users", "--help"]):
        result = tokensmith(*arguments, env=env)
        assert result.returncode == 0 and result.stdout.lower().startswith("usage: tokensmith"), arguments
        assert "<bool>" not in result.stdout and "<str>" not in result.stdout
    listed = tokensmith("--help", env=env).stdout
    for command in (
        "login",
        "whoami",
        "status",
        "tokens",
        "git-credential",
        "completion",
        "serve",
        "users",
        "projects",
    ):
        assert f"\n    {command}" in listed
    assert "revoke-all" in tokensmith("tokens", "--help", env=env).stdout


def test_commands_ask_for_credentials_on_a_terminal_when_not_logged_in(server, person, tmp_path):
    project = f"cli-ask-{uuid.uuid4().hex[:6]}"
    assert server.cli("projects", "create", project, "--group-id", "com.acme.studio", "--owner", person).returncode == 0
    token = server.create_token(person, "asked")
    key_file = tmp_path / "asked.key"
    status, screen = at_terminal(
        "register",
        "--server",
        server.base_url,
        "--project",
        project,
        "--key-file",
        str(key_file),
        env=client_env(tmp_path),
        answers=[("Username: ", person), ("Token: ", token)],
    )
    assert status == 0 and "Registered instance" in screen and token not in screen
    remember(key_file.read_text().strip().split(":", 1)[1])


def test_a_release_shows_progress_on_a_terminal_only(server, person, tmp_path):
    _token, env = logged_in(server, person, tmp_path)
    project = project_with_a_commit(server, person, tmp_path)
    status, screen = at_terminal("release", project, env=env, timeout=60)
    assert status == 0 and f"Released {project} 0.1.0" in screen
    assert f"Releasing {project} MINOR from master" in screen
    piped = tokensmith("release", project, "--version", "PATCH", env=env)
    assert piped.stdout == f"Released {project} 0.1.1: com.acme.studio:{project}:0.1.1\n" and piped.stderr == ""


def test_shell_completion_completes_commands_in_a_real_bash(tmp_path):
    env = client_env(tmp_path)
    script = tokensmith("completion", "bash", env=env)
    assert script.returncode == 0 and "complete " in script.stdout
    (tmp_path / "completion.bash").write_text(script.stdout)

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        run = subprocess.run(
            [
                "bash",
                "-c",
                f"""
            source {tmp_path / "completion.bash"}
            COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}; COMP_WORDS=({" ".join(repr(w) for w in words)})
            COMP_CWORD={len(words) - 1}; COMP_TYPE=9
            $(complete -p tokensmith | sed -E 's/.* -F ([^ ]+) .*/\\1/') tokensmith {words[-1]!r} {words[-2]!r}
            printf '%s\\n' "${{COMPREPLY[@]}}"
        """,
            ],
            env={**env, "PATH": f"{Path(TOKENSMITH).parent}:{env['PATH']}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        return sorted(item.strip() for item in run.stdout.splitlines() if item.strip())

    assert complete("tokensmith tok") == ["tokens"]
    assert complete("tokensmith tokens r") == ["revoke", "revoke-all", "rotate"]
    assert "--server" in complete("tokensmith whoami --")
    assert complete("tokensmith users d") == ["disable"]
