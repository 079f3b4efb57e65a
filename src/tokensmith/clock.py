"""The one source of "now", always timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def display(moment: datetime | None, never: str = "Never") -> str:
    """How a timestamp reads on a page or in a message: ``2026-11-27 23:41 UTC``."""
    if moment is None:
        return never
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
