"""A real Tokensmith server, started as a separate process on a loopback port.

Started with ``python -m tokensmith serve`` exactly as a person would, its console captured to
a log file the ledger watches, stopped by its own process id.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy.orm import Session

from tests.support.ledger import remember, watch
from tests.support.ports import free_port
from tests.support.processes import stop_process, wait_until_answering
from tokensmith.accounts import users
from tokensmith.config import load_settings
from tokensmith.store.database import create_store_engine, session_factory, unit_of_work
from tokensmith.store.models import PersonalToken, User
from tokensmith.store.server_keys import load_server_keys
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import listing as token_listing

BANNER_PASSWORD = re.compile(r"First start: created user 'admin' with this password:\s+(\S+)")


class ServerFailed(RuntimeError):
    pass


class LiveServer:
    def __init__(
        self,
        data_dir: Path,
        *,
        env: dict[str, str] | None = None,
        name: str = "server",
        measured: bool = True,
        args: tuple[str, ...] = (),
    ) -> None:
        """``measured=False`` runs the server without coverage's tracing, which slows every line
        down severalfold: for tests that hold the server to a time limit. ``args`` go to
        ``tokensmith serve`` (``--workers 2``)."""
        self.data_dir = data_dir
        self.args = args
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = watch(data_dir.parent / f"{data_dir.name}.{name}.log")
        self.env = {
            **os.environ,
            "TOKENSMITH_DATA_DIR": str(data_dir),
            "TOKENSMITH_PUBLIC_URL": self.base_url,
            **(env or {}),
        }
        if not measured:
            for variable in ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START"):
                self.env.pop(variable, None)
        self.process: subprocess.Popen[bytes] | None = None
        self.admin_password: str | None = None
        if "TOKENSMITH_DATABASE_URL" not in self.env:
            watch(data_dir / "tokensmith.db")
            watch(data_dir / "tokensmith.db-wal")

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> LiveServer:
        return self.launch().wait_until_ready(timeout)

    def launch(self) -> LiveServer:
        """Start the process without waiting for it to answer (``wait_until_ready``)."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)  # the server makes the data dir itself
        log = self.log_path.open("ab")
        self._console_offset = log.tell()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tokensmith", "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.data_dir.parent,
        )
        log.close()
        return self

    def wait_until_ready(self, timeout: float = 30) -> LiveServer:
        self._wait_until_ready(timeout)
        match = BANNER_PASSWORD.search(self.console(since=self._console_offset))
        if match:
            self.admin_password = remember(match.group(1))
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        wait_until_answering(
            self.process,
            f"{self.base_url}/healthz",
            statuses=(200, 503),
            timeout=timeout,
            name="server",
            console=self.console,
            failure=ServerFailed,
        )

    def stop(self, timeout: float = 15) -> None:
        stop_process(self.process, timeout)

    def restart(self) -> LiveServer:
        self.stop()
        return self.start()

    def console_once(self, text: str, timeout: float = 10) -> str:
        """The console once ``text`` is in it (the access log is written behind the requests,
        web/access_log.py); AssertionError if it is not within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while text not in (console := self.console()):
            assert time.monotonic() < deadline, f"{text!r} not in the console within {timeout}s"
            time.sleep(0.05)
        return console

    def console_since_start(self) -> str:
        """What the server wrote since it was last launched."""
        return self.console(since=self._console_offset)

    def console(self, since: int = 0) -> str:
        with self.log_path.open("rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace")

    # --- clients --------------------------------------------------------------------------------

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30, **kwargs)

    def cli(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``tokensmith`` command against this server's store, from its shell."""
        return subprocess.run(
            [sys.executable, "-m", "tokensmith", *args],
            env={**self.env, **(env or {})},
            input=input,
            capture_output=True,
            text=True,
            cwd=self.data_dir.parent,
            timeout=120,
        )

    # --- the store, as an administrator on the server's machine sees it --------------------------

    @contextlib.contextmanager
    def store(self) -> Iterator[Session]:
        settings = load_settings(self.env)
        engine = create_store_engine(settings)
        try:
            with unit_of_work(session_factory(engine)) as session:
                yield session
        finally:
            engine.dispose()

    def create_user(self, username: str, *, password: str | None = None, admin: bool = False) -> None:
        with self.store() as session:
            users.create_user(
                session,
                username,
                f"{username}@example.test",
                password=password and remember(password),
                is_admin=admin,
                actor="tests",
            )

    def create_project(
        self, project_id: str, group_id: str, *, owner: str, members: dict[str, str] | None = None
    ) -> str:
        """A project made with the admin commands: its owner, and ``members`` by name with their role."""
        for args in (
            ("projects", "create", project_id, "--group-id", group_id, "--owner", owner),
            *(("projects", "add-member", project_id, name, "--role", role) for name, role in (members or {}).items()),
        ):
            result = self.cli(*args)
            assert result.returncode == 0, result.stderr
        return project_id

    def create_token(self, username: str, name: str, *, expires_at: datetime | None = None, **limits: object) -> str:
        """A token made as the admin command makes one; ``limits``: scopes, projects, allowed_ips."""
        settings = load_settings(self.env)
        with self.store() as session:
            owner = users.get_user(session, username)
            secret, _row = token_lifecycle.create_token(
                session,
                load_server_keys(settings),
                owner.id,
                name,
                prefix=settings.token_prefix,
                actor="tests",
                expires_at=expires_at,
                **limits,
            )
        return remember(secret)

    def token_row(self, username: str, name: str) -> PersonalToken:
        with self.store() as session:
            rows = [
                row
                for row in token_listing.list_tokens(session, users.get_user(session, username).id)
                if row.name == name
            ]
            session.expunge_all()
        assert len(rows) == 1, f"expected one live token {name!r} of {username}, found {len(rows)}"
        return rows[0]

    def used_token_row(self, username: str, name: str, timeout: float = 5) -> PersonalToken:
        """The token's row once its *last used* has landed: the server writes it behind the
        request (usage.UsageWriter), within a fraction of a second."""
        deadline = time.monotonic() + timeout
        while (row := self.token_row(username, name)).last_used_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return row

    def user(self, username: str) -> User:
        with self.store() as session:
            user = users.get_user(session, username)
            session.expunge(user)
        return user
