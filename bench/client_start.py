"""How fast the client starts: ``tokensmith git-credential get``, which git runs on every fetch
and push, next to ``git credential-store get`` (the floor: a helper that loads nothing it does
not need), and a few commands a person types, against a real server.

A real ``tokensmith serve`` (pinned to its core, as for wrk) and a person logged in with the
client, their token in the client's 0600 file (a server, CI) and, when GNOME Keyring can run
here, in the system keyring (a laptop); git's store file holds the same credential. Each command
is run as a whole process, from its start to its exit (Python's ``perf_counter`` around
``subprocess.run``), on the client's core, alternately: in each round every command runs
``runs`` times, and the order is reversed from one round to the next, so that a drift of the
machine hits every command alike. Figures are the medians of all runs.

Beside them, unless ``shell`` is off: the server's shell commands an administrator types, on
the same server's store (``users list``, ``projects list``, ``users create``, ``tokens create``:
each run makes a user or a token of its own).

Python's bytecode cache is on for every command, as on any machine where nothing turns it off
(here the environment sets PYTHONDONTWRITEBYTECODE, and the editable install's modules would be
compiled anew at every run).
"""

from __future__ import annotations

import itertools
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.load import BenchError, BenchServer, LoadOptions, clean_environment, tokensmith_command
from bench.machine import CLIENT_CPU, ForeignLoad, cpu_affinity
from tests.support.secret_service import SecretService, SecretServiceUnavailable, secret_service_missing

GIT_CREDENTIAL_TARGET_MS = 150.0
COMMAND_TARGET_MS = 300.0
SHELL_COMMAND_TARGET_MS = 500.0
FLOOR = "git credential-store get"


@dataclass
class Command:
    """``{n}`` in an argument becomes a number of its own at each run (a new user, a new token)."""

    label: str
    argv: list[str]
    target_ms: float | None = None
    stdin: bytes = b""
    env: dict[str, str] = field(default_factory=dict, repr=False)

    def arguments(self) -> list[str]:
        number = str(next(_RUN_NUMBERS))
        return [argument.replace("{n}", number) for argument in self.argv]


_RUN_NUMBERS = itertools.count(1)


@dataclass
class ClientFigures:
    runs_ms: dict[str, list[float]]
    targets_ms: dict[str, float]
    rounds: int
    runs_per_round: int
    foreign_cpu_percent: float = 0.0
    keyring: str = "not measured"

    def median(self, label: str) -> float:
        return statistics.median(self.runs_ms[label])

    def as_dict(self) -> dict:
        return asdict(self)


def _run(command: Command) -> float:
    argv = command.arguments()
    started = time.perf_counter()
    subprocess.run(
        argv, input=command.stdin, env=command.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
    )
    return (time.perf_counter() - started) * 1000


def _check(command: Command, expect: bytes) -> None:
    done = subprocess.run(command.arguments(), input=command.stdin, env=command.env, capture_output=True, timeout=60)
    if done.returncode != 0 or expect not in done.stdout:
        raise BenchError(
            f"{command.label} did not work ({done.returncode}):\n{done.stdout[-500:]!r}\n{done.stderr[-1000:]!r}"
        )


def _login(server: BenchServer, home: Path, env: dict[str, str], token: str) -> None:
    done = subprocess.run(
        [*tokensmith_command(), "login", "--server", server.base_url],
        capture_output=True,
        env={**env, "TOKENSMITH_USERNAME": "bench", "TOKENSMITH_TOKEN": token},
        timeout=60,
    )
    if done.returncode != 0:
        raise BenchError(f"tokensmith login failed:\n{done.stderr.decode(errors='replace')}")


def person_env(home: Path, **extra: str) -> dict[str, str]:
    env = clean_environment(home / "unused", None)
    for name in (
        "TOKENSMITH_DATA_DIR",
        "COVERAGE_PROCESS_START",
        "COVERAGE_PROCESS_CONFIG",
        "PYTHON_KEYRING_BACKEND",
        "PYTHONDONTWRITEBYTECODE",
    ):
        env.pop(name, None)
    home.mkdir(parents=True, exist_ok=True)
    return {**env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"), "GIT_CONFIG_NOSYSTEM": "1", **extra}


def shell_commands(server: BenchServer) -> list[Command]:
    """The server's administration, as typed in its shell: straight on the store."""
    env = {key: value for key, value in server.env.items() if key != "PYTHONDONTWRITEBYTECODE"}
    tokensmith = tokensmith_command()
    return [
        Command(f"tokensmith {label} (server shell)", [*tokensmith, *argv], SHELL_COMMAND_TARGET_MS, b"", env)
        for label, argv in (
            ("users list", ["users", "list"]),
            ("projects list", ["projects", "list"]),
            ("users create", ["users", "create", "shell-{n}", "--email", "shell@example.test"]),
            ("tokens create", ["tokens", "create", "--user", "bench", "--name", "shell {n}"]),
        )
    ]


def measure_client_start(
    workdir: Path, options: LoadOptions, *, rounds: int = 5, runs: int = 10, shell: bool = True
) -> ClientFigures:
    workdir.mkdir(parents=True)
    server = BenchServer(workdir, clean_environment(workdir / "data", None), options).start()
    desktop: SecretService | None = None
    try:
        server.admin("users", "create", "bench", "--email", "bench@example.test")
        host = server.base_url.removeprefix("http://")
        request = f"protocol=http\nhost={host}\n\n".encode()
        # A server or CI: no keyring, the token in the client's 0600 file.
        plain = person_env(workdir / "plain", PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
        _login(
            server,
            workdir / "plain",
            plain,
            server.admin("tokens", "create", "--user", "bench", "--name", "file").strip(),
        )
        store = workdir / "git-credentials"
        subprocess.run(
            ["git", "credential-store", f"--file={store}", "store"],
            env=plain,
            check=True,
            input=f"protocol=http\nhost={host}\nusername=bench\npassword=tks_{'A' * 38}\n\n".encode(),
        )
        tokensmith = tokensmith_command()
        commands = [
            Command(FLOOR, ["git", "credential-store", f"--file={store}", "get"], None, request, plain),
            Command("python3 -c pass (the interpreter alone)", [sys.executable, "-c", "pass"], None, b"", plain),
            Command(
                "tokensmith git-credential get (token in the 0600 file)",
                [*tokensmith, "git-credential", "get"],
                GIT_CREDENTIAL_TARGET_MS,
                request,
                plain,
            ),
            Command("tokensmith --help", [*tokensmith, "--help"], COMMAND_TARGET_MS, b"", plain),
            Command("tokensmith whoami (GET /api/v1/me)", [*tokensmith, "whoami"], COMMAND_TARGET_MS, b"", plain),
            Command(
                "tokensmith tokens list (GET /api/v1/tokens)",
                [*tokensmith, "tokens", "list"],
                COMMAND_TARGET_MS,
                b"",
                plain,
            ),
            Command("tokensmith status (GET /api/v1/me)", [*tokensmith, "status"], COMMAND_TARGET_MS, b"", plain),
        ]
        keyring = "GNOME Keyring could not run here: " + (secret_service_missing() or "")
        if secret_service_missing() is None:
            try:
                desktop = SecretService(workdir / "desktop").start()
            except SecretServiceUnavailable as error:
                keyring = f"GNOME Keyring could not run here: {error}"
        if desktop is not None:
            laptop = person_env(workdir / "desktop", **desktop.env)
            _login(
                server,
                workdir / "desktop",
                laptop,
                server.admin("tokens", "create", "--user", "bench", "--name", "keyring").strip(),
            )
            commands.insert(
                3,
                Command(
                    "tokensmith git-credential get (token in GNOME Keyring)",
                    [*tokensmith, "git-credential", "get"],
                    GIT_CREDENTIAL_TARGET_MS,
                    request,
                    laptop,
                ),
            )
            keyring = "GNOME Keyring's Secret Service on a D-Bus session of the bench's own"
        if shell:
            commands += shell_commands(server)
        for command in commands:
            _check(command, b"username=bench" if "get" in command.argv else b"")
        times: dict[str, list[float]] = {command.label: [] for command in commands}
        with cpu_affinity(CLIENT_CPU, options.pin), ForeignLoad(lambda: [server.process.pid]) as load:
            for command in commands:  # one warm-up each: the files in the page cache
                _run(command)
            for number in range(rounds):
                for command in commands if number % 2 == 0 else commands[::-1]:
                    times[command.label] += [_run(command) for _ in range(runs)]
        return ClientFigures(
            times, {c.label: c.target_ms for c in commands if c.target_ms}, rounds, runs, load.percent, keyring
        )
    finally:
        if desktop is not None:
            desktop.stop()
        server.stop()
