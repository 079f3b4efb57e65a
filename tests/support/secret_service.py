"""A real system keyring for the tests: GNOME Keyring's Secret Service on a D-Bus session bus
of the test's own, as a Linux desktop has it. Both daemons are stopped by their process ids."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from tests.support.processes import stop_process

DAEMONS = ("dbus-daemon", "gnome-keyring-daemon")


class SecretServiceUnavailable(RuntimeError):
    pass


def secret_service_missing() -> str | None:
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    return (
        f"{' and '.join(missing)} missing: install Debian's dbus and gnome-keyring (make system-packages)"
        if missing
        else None
    )


class SecretService:
    def __init__(self, home: Path, password: str = "unlocks the test keyring") -> None:
        self.home, self.password = home, password
        self.address = f"unix:path={home / 'bus'}"
        self.bus: subprocess.Popen | None = None
        self.daemon: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        """What a process of this desktop session has: the bus, and the home its keyring lives in."""
        return {
            "DBUS_SESSION_BUS_ADDRESS": self.address,
            "HOME": str(self.home),
            "XDG_DATA_HOME": str(self.home / "data"),
            "XDG_RUNTIME_DIR": str(self.home / "run"),
        }

    def start(self, timeout: float = 20) -> SecretService:
        (self.home / "run").mkdir(parents=True, exist_ok=True, mode=0o700)
        self.bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", f"--address={self.address}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait(lambda: (self.home / "bus").exists(), timeout, "the D-Bus session bus")
        self.daemon = subprocess.Popen(
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            env={"PATH": "/usr/bin:/bin", **self.env},
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.daemon.stdin.write(self.password.encode())
        self.daemon.stdin.close()  # the password ends at end-of-file
        self._wait(self._serving, timeout, "GNOME Keyring's Secret Service")
        return self

    def _serving(self) -> bool:
        answer = subprocess.run(
            [
                "dbus-send",
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.secrets",
            ],
            env={"PATH": "/usr/bin:/bin", **self.env},
            capture_output=True,
            text=True,
            timeout=5,
        )
        return "boolean true" in answer.stdout

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline or any(
                p is not None and p.poll() is not None for p in (self.bus, self.daemon)
            ):
                self.stop()
                raise SecretServiceUnavailable(f"{what} did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.daemon)
        stop_process(self.bus)
