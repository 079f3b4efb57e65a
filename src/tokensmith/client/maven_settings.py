"""Adding the Studio repository's ``<server>`` entry to ``~/.m2/settings.xml`` while keeping
every other byte of the file as it was (comments, order, indentation, other servers)."""

from __future__ import annotations

import os
import re
from html import escape as escape_markup
from pathlib import Path

from tokensmith.client.errors import InvalidInput

SERVER_ID = "tokensmith-studio"
_SERVER = re.compile(r"<server>(?:(?!</server>).)*?<id>\s*" + re.escape(SERVER_ID) + r"\s*</id>.*?</server>", re.S)
_SERVERS_END = re.compile(r"</servers>")
_SERVERS_EMPTY = re.compile(r"<servers\s*/>")
_SETTINGS_START = re.compile(r"<settings(?:\s[^>]*)?>")


def escape(text: str) -> str:
    """Text as XML element content (``xml.sax.saxutils.escape``'s work, without its import of
    urllib.request)."""
    return escape_markup(text, quote=False)


def server_entry(username: str, token: str, indent: str = "    ") -> str:
    inner = indent + "  "
    return (
        f"<server>\n{inner}<id>{SERVER_ID}</id>\n{inner}<username>{escape(username)}</username>\n"
        f"{inner}<password>{escape(token)}</password>\n{indent}</server>"
    )


def updated(text: str, username: str, token: str) -> str:
    """``text`` with the entry added or replaced; nothing else changed."""
    if _SERVER.search(text):
        return _SERVER.sub(lambda _m: server_entry(username, token).strip(), text, count=1)
    end = _SERVERS_END.search(text)
    if end:
        return f"{text[: end.start()]}  {server_entry(username, token)}\n  {text[end.start() :]}"
    empty = _SERVERS_EMPTY.search(text)
    if empty:
        return (
            f"{text[: empty.start()]}<servers>\n    {server_entry(username, token)}\n  </servers>{text[empty.end() :]}"
        )
    start = _SETTINGS_START.search(text)
    if not start:
        raise InvalidInput("This settings.xml has no <settings> element: fix it by hand, or move it aside.")
    return f"{text[: start.end()]}\n  <servers>\n    {server_entry(username, token)}\n  </servers>{text[start.end() :]}"


NEW_FILE = """<?xml version="1.0" encoding="UTF-8"?>
<settings xmlns="http://maven.apache.org/SETTINGS/1.0.0">
</settings>
"""


def holds(text: str, token: str) -> bool:
    """Whether the Studio entry in ``text`` carries ``token`` as its password."""
    entry = _SERVER.search(text)
    return entry is not None and f"<password>{escape(token)}</password>" in entry.group(0)


def write(path: Path, username: str, token: str) -> bool:
    """Add or update the entry; create the file when missing (mode 0600). True if created."""
    created = not path.exists()
    text = NEW_FILE if created else path.read_text()
    _replace(path, updated(text, username, token), created)
    return created


def rotate(path: Path, username: str, old: str, new: str) -> bool:
    """Put ``new`` in the entry where it still holds ``old`` (a rotation); True if it did. An
    entry someone changed since is left as it is."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return False
    if not holds(text, old):
        return False
    _replace(path, updated(text, username, new), False)
    return True


def _replace(path: Path, content: str, created: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600 if created else path.stat().st_mode & 0o777
    temporary = path.with_name(f".{path.name}.tokensmith")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.replace(temporary, path)
