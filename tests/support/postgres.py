"""A real PostgreSQL server on a loopback port, owned by whoever started it.

PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user
(created if missing). Stopped by the process id of its postmaster.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.ports import free_port


class PostgresUnavailable(RuntimeError):
    pass


def find_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if candidates:
        return candidates[-1]
    raise PostgresUnavailable(f"{name} not found (install Debian's postgresql package)")


def _as_owner(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _ensure_postgres_user() -> None:
    if os.geteuid() != 0:
        return
    if subprocess.run(["id", "-u", "postgres"], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-r", "-m", "postgres"], check=True)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise PostgresUnavailable(f"{' '.join(command[:5])}... failed: {result.stderr.strip()}")


class PostgresServer:
    """``base_dir`` must be reachable by the ``postgres`` user: by default a fresh folder in
    the system temp dir (pytest's own tmp folders are private to root)."""

    def __init__(self, base_dir: Path | None = None, *, settings: dict[str, str] | None = None) -> None:
        """``settings`` are passed as ``-c NAME=VALUE`` after (and over) the defaults below."""
        base_dir = base_dir or Path(tempfile.mkdtemp(prefix="tokensmith-pg-"))
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.log_path = base_dir / "postgres.log"
        self.password = secrets.token_urlsafe(16)
        self.settings = settings or {}
        self.port = 0
        self.pid: int | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return self.url.rsplit("/", 1)[0] + f"/{database}"

    def init(self) -> PostgresServer:
        _ensure_postgres_user()
        initdb = find_binary("initdb")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.base_dir / "pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.base_dir, "postgres", "postgres")
            shutil.chown(pwfile, "postgres")
        _run(
            _as_owner(
                [
                    initdb,
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        )
        pwfile.unlink()
        return self

    def start(self) -> PostgresServer:
        pg_ctl = find_binary("pg_ctl")
        if not self.port:
            self.port = free_port()
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base_dir} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            + "".join(f" -c {name}={value}" for name, value in self.settings.items())
        )
        _run(_as_owner([pg_ctl, "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-o", options, "start"]))
        self.pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        return self

    def replica(self, name: str) -> PostgresServer:
        """A streaming replica of this (running) server, not started yet: a base backup taken
        with ``pg_basebackup -R``, whose WAL receiver introduces itself as ``name`` (what
        ``synchronous_standby_names`` on this server lists)."""
        replica = PostgresServer(settings={"cluster_name": name, "hot_standby": "on"})
        replica.password = self.password  # the backup carries this server's users
        if os.geteuid() == 0:
            shutil.chown(replica.base_dir, "postgres", "postgres")
        _run(
            _as_owner(
                [
                    "env",
                    f"PGPASSWORD={self.password}",
                    find_binary("pg_basebackup"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-D",
                    str(replica.data_dir),
                    "-R",
                    "-X",
                    "stream",
                    "--checkpoint=fast",
                ]
            )
        )
        return replica

    def execute(self, sql: str, database: str = "postgres") -> list[tuple]:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", password=self.password, dbname=database, autocommit=True
        ) as connection:
            cursor = connection.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def stop(self) -> None:
        """Fast shutdown by the postmaster's own process id."""
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGINT)
        except ProcessLookupError:
            self.pid = None
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, signal.SIGKILL)
        self.pid = None

    def remove(self) -> None:
        """Stop, then delete the cluster's folder."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=self.password,
            dbname="postgres",
            autocommit=True,
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)
