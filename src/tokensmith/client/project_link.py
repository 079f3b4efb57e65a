"""The link between a work folder and a Studio project: ``.tokensmith.json``, written by
``tokensmith studio link`` (as the reference's ``nuxeo studio link``). ``release``,
``register`` and ``status`` run in the folder, or any folder below it, use the linked
project (and its server) when none is given, as git finds its repository."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tokensmith.client.errors import InvalidInput

LINK_FILE = ".tokensmith.json"


@dataclass(frozen=True)
class Link:
    server: str
    project: str
    path: Path


def find(start: Path | None = None) -> Link | None:
    """The link of ``start`` (the current folder) or of the nearest folder above it."""
    folder = (start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        path = candidate / LINK_FILE
        if path.is_file():
            return read(path)
    return None


def read(path: Path) -> Link:
    try:
        content = json.loads(path.read_text())
        return Link(str(content["server"]), str(content["project"]), path)
    except (OSError, ValueError, KeyError, TypeError):
        raise InvalidInput(f"{path} is not a project link: run `tokensmith studio link PROJECT` again there.") from None


def write(folder: Path, server: str, project: str) -> Path:
    path = folder / LINK_FILE
    path.write_text(json.dumps({"server": server, "project": project}, indent=2) + "\n")
    return path
