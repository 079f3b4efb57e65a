"""HTTP load: a real ``tokensmith serve`` on one pinned core, driven by wrk from another.

Every process started here (the server, PostgreSQL) is stopped by its own process id, on
errors too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.machine import (
    CLIENT_CPU,
    SERVER_CPU,
    ForeignLoad,
    can_pin,
    children_of,
    cpu_affinity,
    cpu_speed_ms,
    process_cpu_seconds,
)
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer
from tests.support.processes import stop_process

# The token the route is measured with carries limits, so that every check also checks them:
# one scope and the addresses wrk comes from (docs/scopes.md).
LIMITED = ("--scope", "api:read", "--allow-ip", "127.0.0.0/8", "--allow-ip", "::1")
HEALTH = "GET /healthz"
TOKEN = "GET /api/v1/me"
BARE = "GET /bare (bare FastAPI)"
STATIC = "GET /static/style.css"
QUIET = "GET /api/v1/me, --no-access-log"
ROOT = Path(__file__).resolve().parent.parent


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


def wrk_parser(description: str) -> argparse.ArgumentParser:
    """The options of a part run on its own (``python -m bench.PART``): rounds, seconds, connections."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=20)
    return parser


def options_of(args: argparse.Namespace) -> LoadOptions:
    return LoadOptions(duration=args.duration, rounds=args.rounds, connections=args.connections, pin=can_pin())


def pinned(cpu: int, options: LoadOptions) -> list[str]:
    return ["taskset", "-c", str(cpu)] if options.pin else []


def tokensmith_command() -> list[str]:
    script = Path(sys.executable).parent / "tokensmith"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tokensmith"]


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
    server_cpu_percent: float = 0.0
    server_cpu_us_per_request: float = 0.0
    store_cpu_us_per_request: float = 0.0  # the PostgreSQL server's own, apart
    cpu_probe_ms: float = 0.0  # the speed probe on the server's CPU just before the run


def parse_wrk(route: str, output: str, *, refuse_errors: bool = True) -> WrkResult:
    """wrk's figures; with ``refuse_errors``, a run with any non-2xx answer is discarded."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    percentiles = {int(p): float(v) * _UNITS[unit] for p, v, unit in _PERCENTILE.findall(output)}
    if rps is None or total is None or 50 not in percentiles or 99 not in percentiles:
        raise BenchError(f"Cannot read wrk's output for {route}:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx and refuse_errors:
        raise BenchError(f"{route}: {non_2xx.group(1)} answers were not 2xx; figures discarded.\n{output}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if int(total.group(1)) == 0 and refuse_errors:
        raise BenchError(f"{route}: no request completed.\n{output}")
    return WrkResult(
        route=route,
        requests_per_second=float(rps.group(1)),
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
        requests=int(total.group(1)),
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        output=output,
    )


def run_wrk(
    route: str,
    url: str,
    options: LoadOptions,
    *,
    seconds: int,
    headers: dict[str, str],
    own_pids: Callable[[], list[int]] = list,
    server_pid: int | None = None,
    store_pids: Callable[[], list[int]] = list,
    script: Path | None = None,
    script_args: Sequence[str] = (),
) -> WrkResult:
    command = [
        *pinned(CLIENT_CPU, options),
        "wrk",
        f"-t{options.threads}",
        f"-c{options.connections}",
        f"-d{seconds}s",
        "--latency",
    ]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    if script_args:
        command += ["--", *script_args]
    server_cpu = process_cpu_seconds(server_pid) if server_pid else 0.0
    store_cpu = store_cpu_seconds(store_pids)
    with ForeignLoad(own_pids) as load:
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    server_cpu = process_cpu_seconds(server_pid) - server_cpu if server_pid else 0.0
    store_cpu = store_cpu_seconds(store_pids) - store_cpu
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}) on {route}:\n{done.stdout}{done.stderr}")
    result = parse_wrk(route, done.stdout)
    result.foreign_cpu_percent = load.percent
    result.server_cpu_percent = server_cpu / load.wall * 100 if load.wall else 0.0
    result.server_cpu_us_per_request = server_cpu / result.requests * 1e6
    result.store_cpu_us_per_request = store_cpu / result.requests * 1e6
    return result


def store_cpu_seconds(store_pids: Callable[[], list[int]]) -> float:
    """The store's CPU seconds so far: the postmaster's (with its backends that have exited) and
    its live backends' (a backend that exits meanwhile moves from one to the other)."""
    return sum(process_cpu_seconds(pid) for pid in store_pids())


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

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        options: LoadOptions,
        tokensmith: list[str] | None = None,
        *,
        access_log: bool = True,
        name: str = "server",
    ) -> None:
        self.tokensmith = tokensmith or tokensmith_command()  # another checkout's, to compare
        self.access_log = access_log
        self.workdir = workdir
        self.env = env
        self.options = options
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> BenchServer:
        command = [
            *pinned(SERVER_CPU, self.options),
            *self.tokensmith,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            # The access log on, as people run the server (its lines go to the log file).
            *([] if self.access_log else ["--no-access-log"]),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
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
        stop_process(self.process)

    def console(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def admin(self, *args: str) -> str:
        """The admin CLI on the server's store (same environment); its stdout."""
        done = subprocess.run(
            [*self.tokensmith, *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise BenchError(f"tokensmith {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done.stdout


class BareServer:
    """bench/bare_app.py (one FastAPI JSON route) under the same uvicorn and options as the
    server, pinned to the same CPU; stopped by its pid."""

    def __init__(self, workdir: Path, options: LoadOptions) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/bare"
        self.log_path = workdir / "bare.log"
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> BareServer:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *pinned(SERVER_CPU, self.options),
                    sys.executable,
                    str(ROOT / "bench" / "bare_app.py"),
                    str(self.port),
                ],
                env={
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join(  # this checkout's tokensmith, as the server's
                        filter(None, [str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH")])
                    ),
                },
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"The bare FastAPI app exited:\n{self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                if http_get(self.url)[0] == 200:
                    return self
            time.sleep(0.1)
        raise BenchError(f"The bare FastAPI app did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        stop_process(self.process)


def stylesheet_path(base_url: str) -> str:
    """Where the pages find the style sheet: its fingerprinted name, as /login links it."""
    status, page = http_get(f"{base_url}/login")
    found = re.search(rb'href="(/static/style\.[0-9a-f]+\.css)"', page)
    if status != 200 or found is None:
        raise BenchError(f"/login ({status}) links no fingerprinted style sheet")
    return found.group(1).decode()


# --- one backend ----------------------------------------------------------------------------------


@dataclass
class RouteFigures:
    route: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    server_cpu_us_per_request: float = 0.0
    foreign_cpu_percent: float = 0.0  # the worst run's
    runs: list[dict] = field(default_factory=list)
    store_cpu_us_per_request: float = 0.0  # the PostgreSQL server's own


@dataclass
class BackendFigures:
    backend: str
    health: RouteFigures
    token: RouteFigures
    bare: RouteFigures | None = None  # a bare FastAPI route beside the server (SQLite's run only)
    static: RouteFigures | None = None  # the fingerprinted style sheet (SQLite's run only)
    quiet: RouteFigures | None = None  # the token route without the access log (SQLite's run only)

    @property
    def ratio(self) -> float:
        return self.token.requests_per_second / self.health.requests_per_second

    @property
    def round_ratios(self) -> list[float]:
        """Each round's own ratio: the two routes of a round ran seconds apart."""
        return round_ratios(self.token, self.health)

    @property
    def routes(self) -> list[RouteFigures]:
        return [route for route in (self.health, self.token, self.bare, self.static, self.quiet) if route is not None]

    @property
    def cpu_probes_ms(self) -> list[float]:
        return [run["cpu_probe_ms"] for route in self.routes for run in route.runs]

    def as_dict(self) -> dict:
        figures = {
            "backend": self.backend,
            "ratio": self.ratio,
            "round_ratios": self.round_ratios,
            "health": asdict(self.health),
            "token": asdict(self.token),
        }
        for name, route in (("bare", self.bare), ("static", self.static), ("no_access_log", self.quiet)):
            if route is not None:
                figures[name] = asdict(route)
        if self.bare is not None:
            figures["token_over_bare"] = ratio_of(self.token, self.bare)
            figures["token_over_bare_rounds"] = round_ratios(self.token, self.bare)
        return figures


def ratio_of(route: RouteFigures, other: RouteFigures) -> float:
    return route.requests_per_second / other.requests_per_second


def round_ratios(route: RouteFigures, other: RouteFigures) -> list[float]:
    return [r["requests_per_second"] / o["requests_per_second"] for r, o in zip(route.runs, other.runs, strict=False)]


def _median_figures(route: str, runs: list[WrkResult]) -> RouteFigures:
    return RouteFigures(
        route=route,
        requests_per_second=statistics.median(r.requests_per_second for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        server_cpu_us_per_request=statistics.median(r.server_cpu_us_per_request for r in runs),
        foreign_cpu_percent=max(r.foreign_cpu_percent for r in runs),
        runs=[{k: v for k, v in asdict(r).items() if k != "output"} for r in runs],
        store_cpu_us_per_request=statistics.median(r.store_cpu_us_per_request for r in runs),
    )


def measure_server(
    backend: str,
    workdir: Path,
    database_url: str | None,
    options: LoadOptions,
    log: Callable[[str], None] = print,
    store_pids: Callable[[], list[int]] = list,
    floors: bool = False,
) -> BackendFigures:
    """Start a server on ``database_url`` (SQLite in ``workdir`` when None), mint a token with
    the admin CLI, then alternate wrk runs on the routes. With ``floors``, also a bare FastAPI
    route (bench/bare_app.py) beside the server, the server's style sheet, and the token route
    of a second server on the same store without its access log (what a log line costs). Every
    process started is stopped."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = clean_environment(workdir / "data", database_url)
    server = BenchServer(workdir, env, options)
    bare = BareServer(workdir, options) if floors else None
    quiet = BenchServer(workdir, env, options, access_log=False, name="quiet") if floors else None
    order = [HEALTH, TOKEN, *([BARE, STATIC, QUIET] if floors else [])]
    runs: dict[str, list[WrkResult]] = {route: [] for route in order}
    try:
        server.start()
        if bare is not None:
            bare.start()
        if quiet is not None:
            quiet.start()
        server.admin("users", "create", "bench", "--email", "bench@example.test")
        token = server.admin("tokens", "create", "--user", "bench", "--name", "bench", *LIMITED).strip()
        routes = {
            HEALTH: (f"{server.base_url}/healthz", {}),
            TOKEN: (f"{server.base_url}/api/v1/me", {"Authorization": f"Bearer {token}"}),
        }
        if bare is not None:
            routes[BARE] = (bare.url, {})
            routes[STATIC] = (server.base_url + stylesheet_path(server.base_url), {})
        if quiet is not None:
            routes[QUIET] = (f"{quiet.base_url}/api/v1/me", {"Authorization": f"Bearer {token}"})
        for route, (url, headers) in routes.items():  # every one answers 200 before any timing
            status, body = http_get(url, headers)
            if status != 200:
                raise BenchError(f"{route} answered {status}: {body[:300]!r}")
        if json.loads(http_get(*routes[TOKEN])[1])["user"]["username"] != "bench":
            raise BenchError(f"{TOKEN} did not answer as the bench user")

        def own_pids() -> list[int]:
            return [
                server.process.pid,
                *([bare.process.pid] if bare else []),
                *([quiet.process.pid] if quiet else []),
                *store_pids(),
            ]

        def serving(route: str) -> subprocess.Popen[bytes]:
            return {BARE: bare.process if bare else None, QUIET: quiet.process if quiet else None}.get(
                route, server.process
            )

        if options.warmup:
            for route in order:
                run_wrk(route, routes[route][0], options, seconds=options.warmup, headers=routes[route][1])
        for round_number in range(options.rounds):
            for route in order if round_number % 2 == 0 else order[::-1]:
                probe = cpu_speed_ms(SERVER_CPU, options.pin)
                result = run_wrk(
                    route,
                    routes[route][0],
                    options,
                    seconds=options.duration,
                    headers=routes[route][1],
                    own_pids=own_pids,
                    server_pid=serving(route).pid,
                    store_pids=store_pids,
                )
                if serving(route).poll() is not None:
                    raise BenchError(f"The server died during {route}:\n{server.console()}")
                result.cpu_probe_ms = probe
                runs[route].append(result)
                errors = f", {result.socket_errors} socket errors" if result.socket_errors else ""
                log(
                    f"  {backend:<10} round {round_number + 1}  {route:<24} "
                    f"{result.requests_per_second:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                    f"p99 {result.p99_ms:6.2f} ms  server CPU {result.server_cpu_us_per_request:4.0f} µs/req  "
                    + (f"PostgreSQL's {result.store_cpu_us_per_request:4.0f} µs/req  " if database_url else "")
                    + f"other load {result.foreign_cpu_percent:3.0f}%  CPU probe {probe:4.1f} ms{errors}"
                )
    finally:
        server.stop()
        if bare is not None:
            bare.stop()
        if quiet is not None:
            quiet.stop()
    figures = {route: _median_figures(route, runs[route]) for route in order}
    return BackendFigures(
        backend, figures[HEALTH], figures[TOKEN], figures.get(BARE), figures.get(STATIC), figures.get(QUIET)
    )


def measure_postgres(
    workdir: Path, options: LoadOptions, log: Callable[[str], None] = print
) -> tuple[BackendFigures, str]:
    """The same on a fresh PostgreSQL cluster (on the client's core), stopped by its pid."""
    workdir.mkdir(parents=True, exist_ok=True)
    postgres = PostgresServer(workdir / "postgres")
    try:
        try:
            with cpu_affinity(CLIENT_CPU, options.pin):  # the postmaster and every backend it forks
                postgres.init().start()
        except subprocess.CalledProcessError as error:
            output = (error.stderr or b"").decode(errors="replace")
            log_tail = postgres.log_path.read_text(errors="replace")[-2000:] if postgres.log_path.exists() else ""
            raise BenchError(f"PostgreSQL did not start: {output}{log_tail}") from error
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

    with psycopg.connect(
        host="127.0.0.1", port=postgres.port, user="postgres", password=postgres.password, dbname="postgres"
    ) as connection:
        return str(connection.execute("SHOW server_version").fetchone()[0])
