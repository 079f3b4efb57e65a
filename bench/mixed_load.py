"""The mixed load: a normal day of one server, at 64 and 256 connections, on SQLite and PostgreSQL.

People on My Tokens creating tokens and reading the page, clients presenting tokens never used
before (every check then writes ``last used``) and a monitor on ``/healthz``, all at once from
one wrk (``bench/mixed.lua`` says the mix). What counts is that the store holds: requests/s,
the p99 and the slowest request, and how many answers were 5xx (or never came).

The server is the real ``tokensmith serve`` pinned to one core, as in ``bench/load.py``; the
people sign in over HTTP as a browser does, and their tokens are seeded straight into the store
(minting tens of thousands through the page would take longer than the measurement).
"""

from __future__ import annotations

import re
import secrets
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from bench.load import (
    CLIENT_CPU,
    BenchError,
    BenchServer,
    LoadOptions,
    clean_environment,
    parse_wrk,
    pinned,
)
from bench.machine import ForeignLoad, children_of, cpu_affinity, process_cpu_seconds
from tests.support.pages import csrf_of
from tests.support.postgres import PostgresServer
from tests.support.seeding import never_used_tokens
from tokensmith.accounts import users
from tokensmith.config import load_settings
from tokensmith.store.database import create_store_engine, session_factory, unit_of_work

SCRIPT = Path(__file__).with_name("mixed.lua")
CONNECTIONS = (64, 256)
PEOPLE = 32
CLIENT_USER = "mix-client"
# Enough never-used tokens for every run: wrk reports how many checks had to reuse one.
FRESH_TOKENS = 100_000


@dataclass
class MixedRun:
    connections: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    server_errors: int  # 5xx answers
    socket_errors: int  # connect/read/write errors and timeouts: answers that never came
    tokens_created: int  # 201 answers of POST /tokens
    fresh_checks: int
    reused_checks: int
    statuses: dict[int, int] = field(default_factory=dict)
    foreign_cpu_percent: float = 0.0
    server_cpu_percent: float = 0.0


@dataclass
class MixedFigures:
    backend: str
    duration: int
    runs: list[MixedRun]

    def at(self, connections: int) -> list[MixedRun]:
        return [run for run in self.runs if run.connections == connections]

    def summary(self, connections: int) -> dict[str, float]:
        runs = self.at(connections)
        return {
            "requests_per_second": statistics.median(r.requests_per_second for r in runs),
            "p99_ms": statistics.median(r.p99_ms for r in runs),
            "max_ms": max(r.max_ms for r in runs),
            "server_errors": sum(r.server_errors for r in runs),
            "socket_errors": sum(r.socket_errors for r in runs),
            "tokens_created_per_second": statistics.median(r.tokens_created / self.duration for r in runs),
            "reused_checks": sum(r.reused_checks for r in runs),
        }

    def as_dict(self) -> dict:
        return {
            "backend": self.backend,
            "duration": self.duration,
            "summary": {str(c): self.summary(c) for c in CONNECTIONS if self.at(c)},
            "runs": [asdict(run) for run in self.runs],
        }


# --- the store's people and tokens -----------------------------------------------------------------


def seed_store(env: dict[str, str]) -> list[str]:
    """The people (with passwords) and the client's never-used tokens; returns the passwords."""
    engine = create_store_engine(load_settings(env))
    passwords = [f"mix-{secrets.token_urlsafe(12)}" for _ in range(PEOPLE)]
    try:
        with unit_of_work(session_factory(engine)) as session:
            for number, password in enumerate(passwords, 1):
                users.create_user(
                    session,
                    f"mix-person-{number}",
                    f"mix-person-{number}@example.test",
                    password=password,
                    actor="bench",
                )
            users.create_user(session, CLIENT_USER, f"{CLIENT_USER}@example.test", actor="bench")
    finally:
        engine.dispose()
    return passwords


def seed_fresh_tokens(env: dict[str, str], path: Path, count: int) -> None:
    """``count`` never-used tokens of the client user, written one per line to ``path``."""
    path.write_text("\n".join(never_used_tokens(load_settings(env), CLIENT_USER, count)) + "\n")
    path.chmod(0o600)


def sign_in_people(base_url: str, passwords: list[str], path: Path) -> None:
    """Each person signs in as a browser does; their session cookie and CSRF token, one per line."""
    lines = []
    for number, password in enumerate(passwords, 1):
        with httpx.Client(base_url=base_url, timeout=30) as browser:
            form = browser.get("/login")
            signed_in = browser.post(
                "/login",
                data={
                    "username": f"mix-person-{number}",
                    "password": password,
                    "csrf_token": csrf_of(form),
                    "next": "/tokens",
                },
            )
            if signed_in.status_code != 303:
                raise BenchError(f"mix-person-{number} could not sign in: {signed_in.status_code}")
            page = browser.get("/tokens")
            cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
            lines.append(f"{cookie} {csrf_of(page)}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


# --- wrk ---------------------------------------------------------------------------------------------

_STATUSES = re.compile(r"^mixed-statuses:(.*)$", re.MULTILINE)
_TOKENS = re.compile(r"^mixed-tokens: fresh=(\d+) reused=(\d+)$", re.MULTILINE)
_MAX = re.compile(r"^mixed-max-ms: ([\d.]+)$", re.MULTILINE)


def parse_mixed(connections: int, output: str) -> MixedRun:
    result = parse_wrk(f"mixed -c{connections}", output, refuse_errors=False)
    statuses_line, tokens_line, max_line = _STATUSES.search(output), _TOKENS.search(output), _MAX.search(output)
    if statuses_line is None or tokens_line is None or max_line is None:
        raise BenchError(f"Cannot read the mixed script's counts:\n{output}")
    statuses = {
        int(status): int(count) for status, count in (pair.split("=") for pair in statuses_line.group(1).split())
    }
    return MixedRun(
        connections=connections,
        requests_per_second=result.requests_per_second,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        max_ms=float(max_line.group(1)),
        requests=result.requests,
        server_errors=sum(count for status, count in statuses.items() if status >= 500),
        socket_errors=result.socket_errors,
        tokens_created=statuses.get(201, 0),
        fresh_checks=int(tokens_line.group(1)),
        reused_checks=int(tokens_line.group(2)),
        statuses=statuses,
    )


def run_mixed(
    server: BenchServer,
    options: LoadOptions,
    connections: int,
    seconds: int,
    *,
    tokens_file: Path,
    first_token: int,
    sessions_file: Path,
    run_id: str,
    own_pids: Callable[[], list[int]],
) -> MixedRun:
    command = [
        *pinned(CLIENT_CPU, options),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "2s",
        "-s",
        str(SCRIPT),
        server.base_url,
        "--",
        str(tokens_file),
        str(first_token),
        str(sessions_file),
        run_id,
    ]
    server_cpu = process_cpu_seconds(server.process.pid)
    with ForeignLoad(own_pids) as load:
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    server_cpu = process_cpu_seconds(server.process.pid) - server_cpu
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}) on the mixed load:\n{done.stdout}{done.stderr}")
    run = parse_mixed(connections, done.stdout)
    run.foreign_cpu_percent = load.percent
    run.server_cpu_percent = server_cpu / load.wall * 100 if load.wall else 0.0
    return run


# --- one backend ---------------------------------------------------------------------------------


def measure_mixed(
    backend: str,
    workdir: Path,
    database_url: str | None,
    options: LoadOptions,
    log: Callable[[str], None] = print,
    store_pids: Callable[[], list[int]] = list,
) -> MixedFigures:
    """Seed a fresh server's store, sign the people in, then alternate the connection counts
    over ``options.rounds`` rounds. The server is always stopped."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = clean_environment(workdir / "data", database_url)
    server = BenchServer(workdir, env, options)
    tokens_file, sessions_file = workdir / "fresh-tokens.txt", workdir / "sessions.txt"
    runs: list[MixedRun] = []
    try:
        server.start()
        passwords = seed_store(env)
        seed_fresh_tokens(env, tokens_file, FRESH_TOKENS)
        sign_in_people(server.base_url, passwords, sessions_file)
        cursor = 1

        def own_pids() -> list[int]:
            return [server.process.pid, *store_pids()]

        for round_number in range(options.rounds):
            order = CONNECTIONS if round_number % 2 == 0 else CONNECTIONS[::-1]
            for connections in order:
                run = run_mixed(
                    server,
                    options,
                    connections,
                    options.duration,
                    tokens_file=tokens_file,
                    first_token=cursor,
                    sessions_file=sessions_file,
                    run_id=f"r{round_number}c{connections}",
                    own_pids=own_pids,
                )
                if server.process.poll() is not None:
                    raise BenchError(f"The server died during the mixed load:\n{server.console()}")
                cursor += run.fresh_checks
                runs.append(run)
                log(
                    f"  {backend:<10} round {round_number + 1}  mixed -c{connections:<4} "
                    f"{run.requests_per_second:8.0f} req/s  p99 {run.p99_ms:7.2f} ms  max {run.max_ms:7.0f} ms  "
                    f"5xx {run.server_errors}  socket errors {run.socket_errors}  "
                    f"tokens created {run.tokens_created}  other load {run.foreign_cpu_percent:3.0f}%"
                )
    finally:
        server.stop()
    return MixedFigures(backend, options.duration, runs)


def measure_mixed_postgres(workdir: Path, options: LoadOptions, log: Callable[[str], None] = print) -> MixedFigures:
    """The same on a fresh PostgreSQL cluster (on the client's core), stopped by its pid."""
    workdir.mkdir(parents=True, exist_ok=True)
    postgres = PostgresServer(workdir / "postgres")
    try:
        with cpu_affinity(CLIENT_CPU, options.pin):
            postgres.init().start()
        url = postgres.create_database("tokensmith_mixed")

        def store_pids() -> list[int]:
            return [postgres.pid, *children_of(postgres.pid)] if postgres.pid else []

        return measure_mixed("postgresql", workdir / "server", url, options, log, store_pids)
    finally:
        postgres.stop()
