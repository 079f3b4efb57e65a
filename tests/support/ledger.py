"""Every plain secret the tests handled: tokens, passwords. The last test of the run reads
each server log and database file and fails if any of these appears in it."""

from __future__ import annotations

from pathlib import Path

SECRETS: set[str] = set()
# Files a secret must never be written to: server logs, SQLite files, PostgreSQL data.
WATCHED: set[Path] = set()
# SQLAlchemy URLs of PostgreSQL databases the tests wrote to; dumped and searched at the end.
DATABASES: set[str] = set()


def remember(secret: str) -> str:
    # Short strings would match innocent text; real tokens and passwords are longer.
    assert len(secret) >= 12, "only real secrets belong in the ledger"
    SECRETS.add(secret)
    return secret


def watch(path: Path) -> Path:
    WATCHED.add(path)
    return path


def watch_database(url: str) -> str:
    DATABASES.add(url)
    return url
