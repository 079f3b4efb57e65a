"""The reference's own command-line tool, npm ``nuxeo-cli`` 3.0.5, as a person runs it: installed by
``make test`` from tests/support/nuxeo-cli's lock file, in a pseudo-terminal (it links only at its
prompts), with a HOME of its own and on loopback only.

It sends an analytics request to the internet on every command: ``HTTP_PROXY`` and
``HTTPS_PROXY`` name a loopback port nothing listens on, so that request fails at once, while
``NO_PROXY`` lets it reach the server directly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pexpect

from tests.support.ports import free_port

FOLDER = Path(__file__).parent / "nuxeo-cli"
NUXEO = FOLDER / "node_modules" / ".bin" / "nuxeo"
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def missing() -> str | None:
    """Why the tool cannot run here, or None."""
    if shutil.which("node") is None:
        return "Node.js is not installed (make test installs it)"
    if not NUXEO.exists():
        return f"nuxeo-cli is not installed in {FOLDER} (make test runs npm ci there)"
    return None


def screen_of(output: str) -> str:
    """What the terminal shows, without its escape sequences: the lines a person reads."""
    return _ESCAPES.sub("", output)


@dataclass
class NuxeoCli:
    """One person's tool: their HOME (``~/.m2/settings.xml``, the tool's own state)."""

    home: Path

    def env(self) -> dict[str, str]:
        dead = f"http://127.0.0.1:{free_port()}"
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "TERM": "xterm",
            "NO_UPDATE_NOTIFIER": "1",
            "HTTP_PROXY": dead,
            "HTTPS_PROXY": dead,
            "http_proxy": dead,
            "https_proxy": dead,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    def spawn(self, *args: str, cwd: Path, timeout: float = 60) -> pexpect.spawn:
        self.home.mkdir(parents=True, exist_ok=True)
        cwd.mkdir(parents=True, exist_ok=True)
        return pexpect.spawn(
            str(NUXEO),
            ["-n", *args],
            env=self.env(),
            cwd=str(cwd),
            encoding="utf-8",
            timeout=timeout,
            dimensions=(50, 200),
        )

    def run(
        self, *args: str, cwd: Path, answers: list[tuple[str, str]] = (), if_asked: tuple[str, str] | None = None
    ) -> tuple[int, str]:
        """Run at the prompts, answering each, and ``if_asked``'s prompt if it comes: the exit
        status and the screen."""
        child = self.spawn(*args, cwd=cwd)
        output = ""
        for prompt, answer in answers:
            child.expect(prompt)
            output += child.before + child.after
            child.sendline(answer)
        while if_asked is not None and child.expect([if_asked[0], pexpect.EOF]) == 0:
            output += child.before + child.after
            child.sendline(if_asked[1])
        if if_asked is None or not child.eof():
            child.expect(pexpect.EOF)
        output += child.before
        child.close()
        return child.exitstatus, screen_of(output)

    def link(
        self, cwd: Path, connect_url: str, username: str, token: str, project: str, settings: str | None = None
    ) -> tuple[int, str]:
        """``nuxeo studio link``, answered; ``settings``: the answer to "update your Maven
        settings.xml?", asked only where a pom.xml is (and then yes to overwriting it, which
        the tool asks when it has something to change there)."""
        answers = [("NOS Username:", username), ("NOS Token:", token), ("Studio Project:", project)]
        if settings is not None:
            answers.append(("settings.xml file accordingly", settings))
        return self.run(
            "studio",
            "link",
            f"--connectUrl={connect_url}",
            cwd=cwd,
            answers=answers,
            if_asked=(r"Overwrite \S*settings\.xml\?", "y") if settings else None,
        )


def on_the_path(folder: Path) -> Path:
    """A ``nuxeo`` command in ``folder`` that runs the tool as ``NuxeoCli`` does, its analytics
    request sent to a loopback port where nothing listens (and only the tool's: curl, git, pip see
    no proxy), for a shell where a person types ``nuxeo``."""
    folder.mkdir(parents=True, exist_ok=True)
    dead = f"http://127.0.0.1:{free_port()}"
    command = folder / "nuxeo"
    command.write_text(f"""#!/bin/sh
export NO_UPDATE_NOTIFIER=1 HTTP_PROXY={dead} HTTPS_PROXY={dead} http_proxy={dead} https_proxy={dead}
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
exec {NUXEO} "$@"
""")
    command.chmod(0o755)
    return command


def tool_state(folder: Path) -> dict:
    """What the tool keeps in a project folder (``.yo-rc.json``)."""
    return json.loads((folder / ".yo-rc.json").read_text())["generator-nuxeo"]
