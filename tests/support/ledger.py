"""Every plain secret the tests handled: tokens, passwords. The last test of the run reads
each server log and database file and fails if any of these appears in it."""

from __future__ import annotations

from pathlib import Path

SECRETS: set[str] = set()
# Files a secret must never be written to: server logs, SQLite files, PostgreSQL data.
WATCHED: set[Path] = set()


def remember(secret: str) -> str:
    SECRETS.add(secret)
    return secret


def watch(path: Path) -> Path:
    WATCHED.add(path)
    return path
