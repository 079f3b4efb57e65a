"""How the client prints: results on stdout, notes and errors on stderr, tables as aligned
columns (what ``gh`` prints; Rich's tables would cost a tenth of a second to import)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


def say(text: str = "") -> None:
    """A result: stdout."""
    print(text, flush=True)


def note(text: str) -> None:
    """For the person at the terminal, not for a pipe: stderr."""
    print(text, file=sys.stderr, flush=True)


def as_json(value: Any) -> None:
    say(json.dumps(value, indent=2, ensure_ascii=False))


def columns(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows under their headers, each column as wide as its widest cell."""
    table = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[index]) for row in table) for index in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table)


def moment(iso: str | None, never: str = "never") -> str:
    """An API timestamp (``2026-11-27T23:41:05Z``) as people read it: ``2026-11-27 23:41 UTC``."""
    return f"{iso[:16].replace('T', ' ')} UTC" if iso else never


def limits(token: dict[str, Any]) -> str:
    """A token's projects and addresses as the API gives them (``null``: every project, anywhere)."""
    projects, addresses = token.get("projects"), token.get("allowed_ips")
    return "; ".join([
        f"projects {', '.join(projects)}" if projects is not None else "every project",
        f"from {', '.join(addresses)}" if addresses is not None else "from anywhere",
    ])
