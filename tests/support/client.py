"""The ``tokensmith`` client as a person runs it: the installed command in a subprocess, with a
HOME of its own, at a terminal (pexpect) when it should ask something."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pexpect

from tests.support.git import GitUser

# The console script pip installed beside this Python: what a person runs.
TOKENSMITH = str(Path(sys.executable).parent / "tokensmith")
NO_KEYRING = "keyring.backends.fail.Keyring"


def client_env(home: Path, keyring_backend: str | None = NO_KEYRING, **extra: str) -> dict[str, str]:
    """A person's environment: their own HOME and config, none of the server's variables."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TOKENSMITH_", "PYTHON_KEYRING", "DBUS_", "GIT_"))
    }
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"),
            "COLUMNS": "200",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "LANG": "C.UTF-8",
        }
    )
    if keyring_backend:
        env["PYTHON_KEYRING_BACKEND"] = keyring_backend
    env.update(extra)
    return env


def tokensmith(
    *args: str, env: dict[str, str], input: str = "", cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TOKENSMITH, *args], env=env, input=input, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def answering(
    program: str,
    args: list[str],
    *,
    env: dict[str, str],
    answers: list[tuple[str, str]] = (),
    cwd: Path | None = None,
    timeout: float = 30,
    dimensions: tuple[int, int] = (24, 200),
) -> tuple[int, str]:
    """Run in a pseudo-terminal of ``dimensions`` (rows, columns), answering each expected
    prompt; the exit status and the screen."""
    child = pexpect.spawn(
        program, args, env=env, encoding="utf-8", timeout=timeout, cwd=str(cwd) if cwd else None, dimensions=dimensions
    )
    screen = ""
    for prompt, answer in answers:
        child.expect(prompt)
        screen += child.before + child.after
        child.sendline(answer)
    child.expect(pexpect.EOF)
    screen += child.before
    child.close()
    return child.exitstatus, screen


def at_terminal(
    *args: str,
    env: dict[str, str],
    answers: list[tuple[str, str]] = (),
    cwd: Path | None = None,
    timeout: float = 30,
    dimensions: tuple[int, int] = (24, 200),
) -> tuple[int, str]:
    """The client in a pseudo-terminal, as a person runs it."""
    return answering(TOKENSMITH, list(args), env=env, answers=answers, cwd=cwd, timeout=timeout, dimensions=dimensions)


def login_at_terminal(server, username: str, secret: str, env: dict[str, str]) -> tuple[int, str]:
    """Type at the prompts of `tokensmith login`."""
    return at_terminal(
        "login", "--server", server.base_url, env=env, answers=[("Username: ", username), ("Token: ", secret)]
    )


def project_with_a_commit(server, person: str, tmp_path: Path) -> str:
    """A new project of ``person``'s with one commit on master, pushed with real git."""
    project = f"cli-{uuid.uuid4().hex[:8]}"
    assert server.cli("projects", "create", project, "--group-id", "com.acme.studio", "--owner", person).returncode == 0
    git = GitUser(tmp_path / "git", person, server.create_token(person, f"git {project}"))
    git.remember_credentials(server.base_url)
    git.git("clone", f"{server.base_url}/git/{project}.git", str(tmp_path / "work"))
    git.publish(tmp_path / "work", {"README.md": "hello\n"}, "first")
    return project


RUN_AND_LIST = """
import atexit, json, sys
listing = sys.argv.pop(1)
atexit.register(lambda: open(listing, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = {script!r}
from tokensmith.cli.entry import main
main()
"""


def loaded_by(
    arguments: list[str], env: dict[str, str], tmp_path, input: str = ""
) -> tuple[list[str], subprocess.CompletedProcess]:
    listing = tmp_path / f"modules-{uuid.uuid4().hex}.json"
    script = RUN_AND_LIST.format(script=str(tmp_path / "tokensmith"))
    result = subprocess.run(
        [sys.executable, "-c", script, str(listing), *arguments],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(listing.read_text()), result
