"""Several Tokensmith instances on one PostgreSQL and one data dir, behind Debian's nginx.

Each instance is a real ``tokensmith serve`` on a port of its own (``LiveServer``), trusting the
proxy on 127.0.0.1 for the client's address; nginx passes requests to them round robin. Every
process is stopped by its own pid.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.support.nginx import Nginx
from tests.support.servers import LiveServer


class Cluster:
    def __init__(
        self,
        base: Path,
        database_url: str,
        *,
        count: int = 3,
        git_rate: str | None = None,
        env: dict[str, str] | None = None,
        measured: bool = True,
    ) -> None:
        self.data_dir = base / "shared-data"
        self.nginx = Nginx(base / "nginx")
        self.url = self.nginx.url
        shared = {
            "TOKENSMITH_DATABASE_URL": database_url,
            "TOKENSMITH_TRUSTED_PROXIES": "127.0.0.1",
            "TOKENSMITH_PUBLIC_URL": self.url,
            **(env or {}),
        }
        self.instances = [
            LiveServer(self.data_dir, env=shared, name=f"instance{number}", measured=measured)
            for number in range(1, count + 1)
        ]
        self.nginx.proxy([instance.port for instance in self.instances], git_rate=git_rate)

    def start(self, timeout: float = 60) -> Cluster:
        """All instances at once (as a deployment starts them), then the proxy."""
        try:
            for instance in self.instances:
                instance.launch()
            for instance in self.instances:
                instance.wait_until_ready(timeout)
            self.nginx.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.nginx.stop()
        for instance in self.instances:
            instance.stop()

    def by_address(self, address: str) -> LiveServer:
        return next(instance for instance in self.instances if address == f"127.0.0.1:{instance.port}")

    @property
    def admin_password(self) -> str | None:
        return next((i.admin_password for i in self.instances if i.admin_password), None)


def kill(instance: LiveServer) -> None:
    """SIGKILL, as a crash or the OOM killer does: nothing is drained, nothing written."""
    os.kill(instance.process.pid, signal.SIGKILL)
    instance.process.wait(timeout=10)


def runs_git(instance: LiveServer) -> bool:
    """Whether the instance has a git process of its own running (a pack on its way)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, rest = stat.read_text().split("(", 1)[1].rsplit(")", 1)  # pid (name) state ppid ...
        except (OSError, ValueError):
            continue  # gone meanwhile
        if int(rest.split()[1]) == instance.process.pid and name.startswith("git"):
            return True
    return False


def graceful_stop(instance: LiveServer, timeout: float = 120) -> tuple[float, float]:
    """SIGTERM, and wait for the process to finish what it serves and exit: when each happened."""
    asked = time.time()
    os.kill(instance.process.pid, signal.SIGTERM)
    instance.process.wait(timeout=timeout)
    return asked, time.time()
