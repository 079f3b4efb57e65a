"""HTTP load: a real ``tokensmith serve`` on one pinned core, driven by wrk from another.

Every process started here (the server, PostgreSQL) is stopped by its own process id, on
errors too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.support.ports import free_port
from tests.support.postgres import PostgresServer

SERVER_CPU = 0
CLIENT_CPU = 1
HEALTH = "GET /healthz"
TOKEN = "GET /api/v1/me"


class BenchError(RuntimeError):
    """The measurement itself went wrong (as opposed to a missed target)."""


@dataclass(frozen=True)
class LoadOptions:
    duration: int = 5
    warmup: int = 1
    rounds: int = 3
    connections: int = 20
    threads: int = 1
    pin: bool = True


def can_pin() -> bool:
    return shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) >= 2


def pinned(cpu: int, options: LoadOptions) -> list[str]:
    return ["taskset", "-c", str(cpu)] if options.pin else []


@contextlib.contextmanager
def cpu_affinity(cpu: int, options: LoadOptions) -> Iterator[None]:
    """Run the block (and every process it starts) on one CPU; children inherit it."""
    if not options.pin:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def tokensmith_command() -> list[str]:
    script = Path(sys.executable).parent / "tokensmith"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tokensmith"]


# --- what else ran on the machine meanwhile -----------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """CPU seconds spent busy on all CPUs since boot (steal included: time the host took)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and of its children that have exited (PostgreSQL backends)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


class ForeignLoad:
    """How much CPU processes other than ours used during a block, in % of one CPU.

    Busy time of the whole machine minus that of our own processes (this one, the server,
    PostgreSQL and its backends, wrk). Another test run on the machine shows up here.
    """

    def __init__(self, own_pids: Callable[[], list[int]] = lambda: []) -> None:
        self.own_pids = own_pids
        self.percent = 0.0

    def _own(self) -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        pids = {os.getpid(), *self.own_pids()}
        return children.ru_utime + children.ru_stime + sum(process_cpu_seconds(p) for p in pids)

    def __enter__(self) -> ForeignLoad:
        self.started, self.busy, self.own = time.monotonic(), system_busy_seconds(), self._own()
        return self

    def __exit__(self, *_exc: object) -> None:
        wall = time.monotonic() - self.started
        foreign = (system_busy_seconds() - self.busy) - (self._own() - self.own)
        self.percent = max(0.0, foreign / wall * 100) if wall > 0 else 0.0


def idle_check(seconds: float = 1.0) -> float:
    """% of one CPU used by others while we do nothing."""
    with ForeignLoad() as load:
        time.sleep(seconds)
    return load.percent


# --- wrk ----------------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_PERCENTILE = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)


@dataclass
class WrkResult:
    route: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    socket_errors: int
    output: str = field(repr=False)
    foreign_cpu_percent: float = 0.0


def parse_wrk(route: str, output: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    percentiles = {int(p): float(v) * _UNITS[unit] for p, v, unit in _PERCENTILE.findall(output)}
    if rps is None or total is None or 50 not in percentiles or 99 not in percentiles:
        raise BenchError(f"Cannot read wrk's output for {route}:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        raise BenchError(f"{route}: {non_2xx.group(1)} answers were not 2xx; figures discarded.\n{output}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return WrkResult(
        route=route,
        requests_per_second=float(rps.group(1)),
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
        requests=int(total.group(1)),
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        output=output,
    )


def run_wrk(route: str, url: str, options: LoadOptions, *, seconds: int, headers: dict[str, str],
            own_pids: Callable[[], list[int]] = lambda: []) -> WrkResult:
    command = [
        *pinned(CLIENT_CPU, options), "wrk", f"-t{options.threads}", f"-c{options.connections}",
        f"-d{seconds}s", "--latency",
    ]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    with ForeignLoad(own_pids) as load:
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}) on {route}:\n{done.stdout}{done.stderr}")
    result = parse_wrk(route, done.stdout)
    result.foreign_cpu_percent = load.percent
    return result


# --- the server ---------------------------------------------------------------------------------


def clean_environment(data_dir: Path, database_url: str | None) -> dict[str, str]:
    """This machine's environment without any TOKENSMITH_* of its own, plus the bench's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENSMITH_")}
    env["TOKENSMITH_DATA_DIR"] = str(data_dir)
    if database_url:
        env["TOKENSMITH_DATABASE_URL"] = database_url
    return env


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class BenchServer:
    """``tokensmith serve`` on a loopback port, pinned to one core, stopped by its pid."""

    def __init__(self, workdir: Path, env: dict[str, str], options: LoadOptions) -> None:
        self.workdir = workdir
        self.env = env
        self.options = options
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> BenchServer:
        command = [
            *pinned(SERVER_CPU, self.options), *tokensmith_command(), "serve",
            "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, cwd=self.workdir, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"The server exited with {self.process.returncode}:\n{self.console()}")
            with contextlib.suppress(OSError):
                if http_get(f"{self.base_url}/healthz")[0] == 200:
                    return self
            time.sleep(0.1)
        raise BenchError(f"The server did not answer within {timeout:.0f}s:\n{self.console()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def console(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def admin(self, *args: str) -> str:
        """The admin CLI on the server's store (same environment); its stdout."""
        done = subprocess.run(
            [*tokensmith_command(), *args], env=self.env, cwd=self.workdir,
            capture_output=True, text=True, timeout=120,
        )
        if done.returncode != 0:
            raise BenchError(f"tokensmith {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done.stdout


# --- one backend ----------------------------------------------------------------------------------


@dataclass
class RouteFigures:
    route: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    foreign_cpu_percent: float = 0.0  # the worst run's
    runs: list[dict] = field(default_factory=list)


@dataclass
class BackendFigures:
    backend: str
    health: RouteFigures
    token: RouteFigures

    @property
    def ratio(self) -> float:
        return self.token.requests_per_second / self.health.requests_per_second

    def as_dict(self) -> dict:
        return {"backend": self.backend, "ratio": self.ratio, "health": asdict(self.health),
                "token": asdict(self.token)}


def _median_figures(route: str, runs: list[WrkResult]) -> RouteFigures:
    return RouteFigures(
        route=route,
        requests_per_second=statistics.median(r.requests_per_second for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        foreign_cpu_percent=max(r.foreign_cpu_percent for r in runs),
        runs=[{k: v for k, v in asdict(r).items() if k != "output"} for r in runs],
    )


def measure_server(backend: str, workdir: Path, database_url: str | None, options: LoadOptions,
                   log: Callable[[str], None] = print,
                   store_pids: Callable[[], list[int]] = lambda: []) -> BackendFigures:
    """Start a server on ``database_url`` (SQLite in ``workdir`` when None), mint a token with
    the admin CLI, then alternate wrk runs on the two routes. The server is always stopped."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = clean_environment(workdir / "data", database_url)
    server = BenchServer(workdir, env, options)
    runs: dict[str, list[WrkResult]] = {HEALTH: [], TOKEN: []}
    try:
        server.start()
        server.admin("users", "create", "bench", "--email", "bench@example.test")
        token = server.admin("tokens", "create", "--user", "bench", "--name", "bench").strip()
        routes = {
            HEALTH: (f"{server.base_url}/healthz", {}),
            TOKEN: (f"{server.base_url}/api/v1/me", {"Authorization": f"Bearer {token}"}),
        }
        for route, (url, headers) in routes.items():  # both answer 200 before any timing
            status, body = http_get(url, headers)
            if status != 200:
                raise BenchError(f"{route} answered {status}: {body[:300]!r}")
        if json.loads(http_get(*routes[TOKEN])[1])["user"]["username"] != "bench":
            raise BenchError(f"{TOKEN} did not answer as the bench user")
        def own_pids() -> list[int]:
            return [server.process.pid, *store_pids()]

        order = [HEALTH, TOKEN]
        if options.warmup:
            for route in order:
                run_wrk(route, routes[route][0], options, seconds=options.warmup, headers=routes[route][1])
        for round_number in range(options.rounds):
            for route in order if round_number % 2 == 0 else order[::-1]:
                result = run_wrk(route, routes[route][0], options, seconds=options.duration,
                                 headers=routes[route][1], own_pids=own_pids)
                runs[route].append(result)
                errors = f", {result.socket_errors} socket errors" if result.socket_errors else ""
                log(f"  {backend:<10} round {round_number + 1}  {route:<16} "
                    f"{result.requests_per_second:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                    f"p99 {result.p99_ms:6.2f} ms  other load {result.foreign_cpu_percent:3.0f}%{errors}")
    finally:
        server.stop()
    return BackendFigures(backend, _median_figures(HEALTH, runs[HEALTH]), _median_figures(TOKEN, runs[TOKEN]))


def measure_postgres(workdir: Path, options: LoadOptions, log: Callable[[str], None] = print) -> tuple[BackendFigures, str]:
    """The same on a fresh PostgreSQL cluster (on the client's core), stopped by its pid."""
    workdir.mkdir(parents=True, exist_ok=True)
    postgres = PostgresServer(workdir / "postgres")
    try:
        with cpu_affinity(CLIENT_CPU, options):  # the postmaster and every backend it forks
            postgres.init().start()
        url = postgres.create_database("tokensmith_bench")
        version = postgres_version(postgres)
        def store_pids() -> list[int]:
            return [postgres.pid, *children_of(postgres.pid)] if postgres.pid else []

        figures = measure_server("postgresql", workdir / "server", url, options, log, store_pids)
        return figures, version
    finally:
        postgres.stop()


def postgres_version(postgres: PostgresServer) -> str:
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=postgres.port, user="postgres",
                         password=postgres.password, dbname="postgres") as connection:
        return str(connection.execute("SHOW server_version").fetchone()[0])
