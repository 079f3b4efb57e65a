"""tokensmith-client, the client's own distribution, as a laptop or a CI job gets it: both wheels
built from a clean copy of this checkout, the client's installed into a fresh virtual
environment (and with pipx), nothing of the server installed with it, its server commands
saying what to install instead, and its client commands working against a real server: login
at its prompts, whoami, tokens list, a `git clone` through its credential helper.

One environment for the module: building the wheels and installing one costs seconds, once."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.support.client import answering, client_env
from tests.support.git import GitUser

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "src" / "tokensmith"
CLIENT_FILES = {
    "tokensmith/__init__.py",
    "tokensmith/__main__.py",
    "tokensmith/cli/__init__.py",
    "tokensmith/cli/entry.py",
    "tokensmith/cli/main.py",
} | {f"tokensmith/client/{path.name}" for path in (SOURCES / "client").glob("*.py")}
# Beyond the server's own dependencies (pyproject.toml), what they bring that a client never needs.
SERVER_ONLY = {
    "tokensmith",
    "starlette",
    "pydantic",
    "pydantic-core",
    "mako",
    "greenlet",
    "argon2-cffi-bindings",
    "psycopg-binary",
    "uvloop",
    "httptools",
    "websockets",
    "watchfiles",
    "click",
    "python-dotenv",
}
INSTALL_INSTEAD = re.compile(
    r"^Error: `(tokensmith [a-z -]+)` is a server command, not in tokensmith-client \(the "
    r"client alone\): where the server runs, install the `tokensmith` distribution instead "
    r"\(`pip install \.` in a Tokensmith checkout\)\.\n$"
)


def requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    """Both wheels, built as `make dist` builds them, from the checkout's files alone (what git
    tracks, and what it would: no .venv, no build leftovers)."""
    checkout = tmp_path_factory.mktemp("checkout")
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT).stdout
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    run("make", "-C", str(checkout), "dist", f"PY={sys.executable}")
    dist = checkout / "dist"
    return {name: next(dist.glob(f"{name.replace('-', '_')}-*.whl")) for name in ("tokensmith", "tokensmith-client")}


@pytest.fixture(scope="module")
def client_bin(wheels, tmp_path_factory) -> Path:
    """A fresh virtual environment with the client's wheel installed by pip: its bin folder."""
    venv = tmp_path_factory.mktemp("client-venv")
    run(sys.executable, "-m", "venv", str(venv))
    run(str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheels["tokensmith-client"]))
    return venv / "bin"


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if ".dist-info/" not in name}


def wheel_metadata(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith(f".dist-info/{name}"))).decode()


def test_the_client_wheel_holds_the_client_and_the_server_wheel_holds_both(wheels):
    assert wheel_files(wheels["tokensmith-client"]) == CLIENT_FILES
    server = wheel_files(wheels["tokensmith"])
    assert (
        server > CLIENT_FILES
        and {"tokensmith/cli/serve.py", "tokensmith/cli/admin.py", "tokensmith/store/database.py"} < server
    )
    for wheel in wheels.values():  # one command, the same in both
        assert "tokensmith = tokensmith.cli.entry:main" in wheel_metadata(wheel, "entry_points.txt")


def test_the_client_depends_on_what_it_imports_with_the_servers_ranges(wheels):
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ranges = {requirement.name: requirement.specifier for requirement in map(Requirement, server)}
    metadata = wheel_metadata(wheels["tokensmith-client"], "METADATA")
    required = {
        requirement.name: requirement.specifier
        for requirement in (
            Requirement(line.removeprefix("Requires-Dist: "))
            for line in metadata.splitlines()
            if line.startswith("Requires-Dist: ")
        )
    }
    assert required == {name: ranges[name] for name in ("httpx", "argcomplete", "keyring")}


def test_installing_the_client_brings_nothing_of_the_server(client_bin):
    listed = run(str(client_bin / "python"), "-m", "pip", "list", "--format", "json").stdout
    installed = {requirement_name(entry["name"]) for entry in json.loads(listed)}
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    server_only = {requirement_name(requirement) for requirement in server} - {"httpx", "argcomplete", "keyring"}
    assert "tokensmith-client" in installed and {"httpx", "keyring", "argcomplete"} <= installed
    assert installed & (server_only | SERVER_ONLY) == set()


@pytest.mark.parametrize(
    "arguments",
    [
        ["serve"],
        ["serve", "--port", "8001"],
        ["users", "list"],
        ["projects", "create", "p", "--group-id", "g", "--owner", "o"],
        ["tokens", "create", "--user", "ci", "--name", "CI"],
        ["tokens", "revoke-all", "--user", "ci"],
        ["tokens", "lookup", "--revoke"],
        ["tokens", "sweep"],
        ["packages", "publish", "hotfix.zip", "--coordinates", "g:a:1"],
        ["audit", "export"],
        ["publishers", "add", "p", "--issuer", "https://gitlab.com", "--claim", "project_path=a/b"],
        ["backup", "create", "nightly.tsbackup"],
        ["users"],
    ],
)
def test_a_server_command_says_in_one_line_what_to_install_instead(client_bin, tmp_path, arguments):
    result = subprocess.run(
        [str(client_bin / "tokensmith"), *arguments],
        env=client_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
    found = INSTALL_INSTEAD.match(result.stderr)
    assert found, result.stderr
    assert found.group(1) == "tokensmith " + " ".join(arguments[:2] if arguments[0] == "tokens" else arguments[:1])


def test_the_client_logs_in_lists_and_clones_through_git_against_a_real_server(server, client_bin, tmp_path):
    tokensmith = str(client_bin / "tokensmith")
    person = f"laptop-{uuid.uuid4().hex[:8]}"
    server.create_user(person)
    project = server.create_project(f"dist-{uuid.uuid4().hex[:8]}", "com.acme.studio", owner=person)
    pusher = GitUser(tmp_path / "pusher", person, server.create_token(person, "first push"))
    pusher.remember_credentials(server.base_url)
    work = tmp_path / "pusher" / "work"
    pusher.git("clone", f"{server.base_url}/git/{project}.git", str(work))
    (work / "README.md").write_text("from the laptop\n")
    pusher.git("add", ".", cwd=work)
    pusher.git("commit", "-m", "first", cwd=work)
    pusher.git("push", "origin", "HEAD:master", cwd=work)

    env = client_env(tmp_path / "home")
    status, screen = answering(
        tokensmith,
        ["login", "--server", server.base_url],
        env=env,
        answers=[("Username: ", person), ("Token: ", server.create_token(person, "laptop"))],
    )
    assert status == 0, screen
    for arguments, expected in ((["whoami"], f"{person} with token “laptop”"), (["tokens", "list"], "first push")):
        result = run(tokensmith, *arguments, env=env)
        assert expected in result.stdout
    assert f"git now asks tokensmith for {server.base_url}" in run(tokensmith, "git", "setup", env=env).stdout
    # git runs the helper by the absolute path `git setup` wrote: the client's bin is not on PATH.
    git_env = {**env, "PATH": "/usr/bin:/bin"}
    helper = run("git", "config", "--global", "--get-all", f"credential.{server.base_url}.helper", env=git_env)
    assert f"!{tokensmith} git-credential" in helper.stdout.splitlines()
    run("git", "clone", f"{server.base_url}/git/{project}.git", str(tmp_path / "clone"), env=git_env)
    assert (tmp_path / "clone" / "README.md").read_text() == "from the laptop\n"


@pytest.fixture
def pipx_home(tmp_path) -> Iterator[dict[str, str]]:
    home = tmp_path / "pipx"
    yield {
        **client_env(tmp_path / "person"),
        "PIPX_HOME": str(home / "home"),
        "PIPX_BIN_DIR": str(home / "bin"),
        "PIPX_MAN_DIR": str(home / "man"),
        "PIPX_DEFAULT_PYTHON": sys.executable,
        "USE_EMOJI": "0",
    }


def test_pipx_installs_the_client_wheel_as_an_application_of_its_own(wheels, pipx_home):
    installed = run(sys.executable, "-m", "pipx", "install", str(wheels["tokensmith-client"]), env=pipx_home)
    assert "tokensmith" in installed.stdout
    tokensmith = str(Path(pipx_home["PIPX_BIN_DIR"]) / "tokensmith")
    assert run(tokensmith, "--version", env=pipx_home).stdout.strip() == "tokensmith 0.1.0"
    serve = subprocess.run([tokensmith, "serve"], env=pipx_home, capture_output=True, text=True, timeout=60)
    assert serve.returncode == 2 and INSTALL_INSTEAD.match(serve.stderr)
    listed = run(
        sys.executable, "-m", "pipx", "runpip", "tokensmith-client", "list", "--format", "json", env=pipx_home
    ).stdout
    assert not {requirement_name(entry["name"]) for entry in json.loads(listed)} & SERVER_ONLY
    assert os.path.realpath(tokensmith).startswith(pipx_home["PIPX_HOME"])
