"""Real git, as a person at a terminal runs it: a HOME of their own, no prompts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


class GitUser:
    """A person at a terminal with git, a HOME of their own and a credential store."""

    def __init__(self, home: Path, username: str, token: str) -> None:
        self.home, self.username, self.token = home, username, token
        home.mkdir(parents=True, exist_ok=True)
        self.store = home / ".git-credentials"

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "LANG": "C",
        }

    def remember_credentials(self, base_url: str, token: str | None = None) -> None:
        """What `git credential approve` does after a successful prompt, for the store helper."""
        self.git("config", "--global", "credential.helper", f"store --file={self.store}")
        self.git(
            "credential",
            "approve",
            input=(
                f"protocol=http\nhost={base_url.removeprefix('http://')}\nusername={self.username}\n"
                f"password={token or self.token}\n\n"
            ),
        )

    def git(
        self, *args: str, cwd: Path | None = None, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["git", "-c", "user.name=Test", "-c", "user.email=test@example.test", *args],
            cwd=cwd or self.home,
            env=self.env(),
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed:\n{result.stderr}")
        return result

    def publish(self, work: Path, files: dict[str, str | bytes], message: str, ref: str = "HEAD:master") -> None:
        """Write ``files`` (path: content) into the clone ``work``, commit them, push ``ref``."""
        for name, content in files.items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                (work / name).write_bytes(content)
            else:
                (work / name).write_text(content)
        self.git("add", *files, cwd=work)
        self.git("commit", "-m", message, cwd=work)
        self.git("push", "origin", ref, cwd=work)
