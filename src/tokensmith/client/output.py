"""How the client prints: results on stdout, notes and errors on stderr, tables as aligned
columns (what ``gh`` prints; Rich's tables would cost a tenth of a second to import)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

# The server's presets (My Tokens' "Everything" and "Read only"), as the API lists scopes.
ALL_SCOPES = ("api:read", "api:write", "git:read", "git:write", "maven:read")
READ_ONLY = ("api:read", "git:read", "maven:read")


def say(text: str = "") -> None:
    """A result: stdout."""
    print(text, flush=True)


def note(text: str) -> None:
    """For the person at the terminal, not for a pipe: stderr."""
    print(text, file=sys.stderr, flush=True)


def as_json(value: Any) -> None:
    say(json.dumps(value, indent=2, ensure_ascii=False))


def columns(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int | None = None,
    narrowing: Mapping[int, int] | None = None,
) -> str:
    """Rows under their headers, each column as wide as its widest cell. With ``width`` (a
    terminal's), the columns ``narrowing`` names (index: the fewest characters it keeps) give up
    characters, the one furthest above its floor first and none below its header, until a line
    fits; a cell cut short ends in “…”."""
    table = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[index]) for row in table) for index in range(len(headers))]
    if width is not None and narrowing:
        floors = {index: max(len(headers[index]), fewest) for index, fewest in narrowing.items()}
        while sum(widths) + 2 * (len(widths) - 1) > width:
            wide = [index for index in narrowing if widths[index] > floors[index]]
            if not wide:
                break
            widths[max(wide, key=lambda index: widths[index] - floors[index])] -= 1
    return "\n".join(
        "  ".join(_cut(cell, size).ljust(size) for cell, size in zip(row, widths, strict=False)).rstrip()
        for row in table
    )


def _cut(cell: str, size: int) -> str:
    return cell if len(cell) <= size else cell[: size - 1] + "…"


def terminal_width() -> int | None:
    """The width of the terminal stdout goes to (COLUMNS first), or None for a pipe or a file."""
    if not sys.stdout.isatty():
        return None
    import shutil

    return shutil.get_terminal_size().columns


def moment(iso: str | None, never: str = "never", *, zone: bool = True) -> str:
    """An API timestamp (``2026-11-27T23:41:05Z``) as people read it: ``2026-11-27 23:41 UTC``
    (without `` UTC`` where a heading says it once)."""
    return f"{iso[:16].replace('T', ' ')}{' UTC' if zone else ''}" if iso else never


def access(token: dict[str, Any]) -> str:
    """A token's scopes and limits in a few words, as a terminal's narrow table shows them:
    ``everything``, ``read only`` or the scopes, then the projects and addresses it is held to."""
    scopes = token.get("scopes") or []
    named = {ALL_SCOPES: "everything", READ_ONLY: "read only"}.get(tuple(scopes), " ".join(scopes))
    projects, addresses = token.get("projects"), token.get("allowed_ips")
    return "; ".join(
        [
            named,
            *([", ".join(projects)] if projects is not None else []),
            *([f"from {', '.join(addresses)}"] if addresses is not None else []),
        ]
    )


def limits(token: dict[str, Any]) -> str:
    """A token's projects and addresses as the API gives them (``null``: every project, anywhere)."""
    projects, addresses = token.get("projects"), token.get("allowed_ips")
    return "; ".join(
        [
            f"projects {', '.join(projects)}" if projects is not None else "every project",
            f"from {', '.join(addresses)}" if addresses is not None else "from anywhere",
        ]
    )
