"""git's own credential store after ``tokensmith tokens rotate``.

A person who gave git the token at its prompt, with ``credential.helper store``, has it in
``~/.git-credentials`` (git-credential-store(1): one URL a line,
``http://admin:tks_…@127.0.0.1%3a8000``). After a rotation that secret is refused, and worse:
presented again, it is taken for a copy made before the rotation, and the server revokes the
new token too. So the client puts the new secret in place of the old one wherever the store
holds it, as git would (its lock file, mode 0600), and names the other helpers that may still
hold it, which it cannot read.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit


def store_files() -> list[Path]:
    """The files git's ``store`` helper reads: the ``--file`` ones configured, and its two defaults."""
    configured = []
    for words in (_words(helper) for helper in _helpers()):
        if words[:1] == ["store"]:
            options = " ".join(words[1:]).replace("--file ", "--file=").split()
            configured += [
                Path(option[len("--file=") :]).expanduser() for option in options if option.startswith("--file=")
            ]
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "git" / "credentials"
    return [*dict.fromkeys([*configured, Path.home() / ".git-credentials", xdg])]


def replace_secret(old: str, new: str) -> list[Path]:
    """Put ``new`` in place of ``old`` in every store file that holds it; the files changed."""
    changed = []
    for path in store_files():
        try:
            lines = path.read_text().splitlines(keepends=True)
        except OSError:
            continue
        updated = [_with_password(line, old, new) for line in lines]
        if updated != lines and _write_as_git_does(path, "".join(updated)):
            changed.append(path)
    return changed


def other_helpers(server: str) -> list[str]:
    """The helpers git asks for ``server`` besides ``store`` and this client: they may keep the
    old secret where the client cannot see it (a cache, a keychain)."""
    helpers = [*_helpers(), *_helpers(f"credential.{server}.helper")]
    if "" in helpers:  # an empty value resets the list (what `tokensmith git setup` writes first)
        helpers = helpers[len(helpers) - helpers[::-1].index("") :]
    return [
        helper
        for helper in helpers
        if helper.strip() and _words(helper)[0] != "store" and not helper.rstrip().endswith("git-credential")
    ]


def _with_password(line: str, old: str, new: str) -> str:
    address = line.rstrip("\r\n")
    parts = urlsplit(address)
    if parts.password is None or unquote(parts.password) != old:
        return line
    user, _, host = parts.netloc.rpartition("@")
    username = user.split(":", 1)[0]
    return line.replace(address, f"{parts.scheme}://{username}:{quote(new, safe='')}@{host}{parts.path}", 1)


def _write_as_git_does(path: Path, text: str) -> bool:
    """Through git's lock file (``path.lock``): False when git holds it right now."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(lock, path.stat().st_mode & 0o777)
    os.replace(lock, path)
    return True


def _helpers(key: str = "credential.helper") -> list[str]:
    try:
        found = subprocess.run(["git", "config", "--get-all", key], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):  # no git: nothing of git's to update
        return []
    return found.stdout.splitlines() if found.returncode == 0 else []


def _words(helper: str) -> list[str]:
    try:
        return shlex.split(helper)
    except ValueError:
        return helper.split()
