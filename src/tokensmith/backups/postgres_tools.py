"""PostgreSQL's own tools for a backup of the store: ``pg_dump`` and ``pg_restore``.

Debian's, of the server's major version (``/usr/lib/postgresql/MAJOR/bin``, package
``postgresql-client-MAJOR``): pg_dump refuses a server newer than itself, and a dump restores
with a pg_restore at least as new as the pg_dump that wrote it. They reach the store through
libpq with the connection the store's URL describes; its password goes in ``PGPASSWORD``, in
their environment, never on a command line (which any user of the host can read).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, text

from tokensmith.errors import BackupFailed, ConfigurationError

DEBIAN_BINARIES = "/usr/lib/postgresql/{major}/bin/{name}"
_VERSION = re.compile(r"\(PostgreSQL\) (\d+)")
READ_SIZE = 1024 * 1024


@dataclass(frozen=True)
class Libpq:
    """How libpq's tools reach the store: a connection string without the password, and an
    environment with it."""

    conninfo: str
    env: dict[str, str] = field(repr=False)


def libpq_of(engine: Engine) -> Libpq:
    import psycopg.conninfo

    _args, options = engine.dialect.create_connect_args(engine.url)
    password = options.pop("password", None)
    options.pop("context", None)
    conninfo = psycopg.conninfo.make_conninfo(**{name: str(value) for name, value in options.items()})
    env = {**os.environ, "PGAPPNAME": "tokensmith-backup", "PGCONNECT_TIMEOUT": "10"}
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return Libpq(conninfo, env)


def server_major(connection: Connection) -> int:
    return int(connection.execute(text("SHOW server_version_num")).scalar_one()) // 10000


def tool(name: str, major: int) -> str:
    """``name`` (pg_dump, pg_restore) of PostgreSQL ``major`` or newer: Debian's own first."""
    debian = Path(DEBIAN_BINARIES.format(major=major, name=name))
    if os.access(debian, os.X_OK):
        return str(debian)
    found = shutil.which(name)
    if found is not None:
        version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30).stdout
        match = _VERSION.search(version)
        if match and int(match.group(1)) >= major:
            return found
    raise ConfigurationError(
        f"{name} of PostgreSQL {major} is not installed here, and the store's server is PostgreSQL {major}: "
        f"install Debian's postgresql-client-{major} (`apt-get install postgresql-client-{major}`), then try again."
    )


def dump(engine: Engine, snapshot: str, major: int) -> Iterator[bytes]:
    """The store as ``pg_dump --format=custom`` writes it, as of the exported ``snapshot`` (which
    the caller's transaction holds open meanwhile), a chunk at a time."""
    libpq = libpq_of(engine)
    command = [tool("pg_dump", major), "--format=custom", f"--snapshot={snapshot}", "--no-password", libpq.conninfo]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL, env=libpq.env
        )
        try:
            assert process.stdout is not None
            while chunk := process.stdout.read(READ_SIZE):
                yield chunk
            if process.wait() != 0:
                raise BackupFailed(f"pg_dump failed: {_last_line(errors)} Nothing was written.")
        finally:
            _end(process)


def restore(engine: Engine, dump_file: Path, major: int) -> None:
    """Load a dump into the store, all of it or nothing (one transaction), owned by whoever
    the store's URL signs in as."""
    libpq = libpq_of(engine)
    command = [
        tool("pg_restore", major),
        "--single-transaction",
        "--exit-on-error",
        "--no-owner",
        "--no-privileges",
        "--no-password",
        f"--dbname={libpq.conninfo}",
        str(dump_file),
    ]
    with tempfile.TemporaryFile() as errors:
        result = subprocess.run(
            command, stdout=subprocess.DEVNULL, stderr=errors, stdin=subprocess.DEVNULL, env=libpq.env
        )
        if result.returncode != 0:
            raise BackupFailed(f"pg_restore failed: {_last_line(errors)} The database was left as it was.")


def _end(process: subprocess.Popen[bytes]) -> None:
    """The tool we started, ended by its own process id if it still runs (its reader failed)."""
    if process.poll() is None:
        process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


def _last_line(errors: IO[bytes]) -> str:
    """The tool's last words on stderr (they name the server and the database, never the password)."""
    errors.seek(0)
    lines = [line.strip() for line in errors.read().decode(errors="replace").splitlines() if line.strip()]
    return (lines[-1][:300].rstrip(".") + ".") if lines else "(it said nothing)."
