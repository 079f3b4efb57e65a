"""Scale-out on PostgreSQL: token checks through nginx in front of 1, 2 and 3 instances, and what
one check costs the store in statements.

Three `tokensmith serve` instances share one PostgreSQL cluster and one data dir, as in
docs/deployment.md; three nginx processes put the first one, the first two and all three
behind a port each. wrk drives `GET /api/v1/me` with a Bearer token through each nginx in
alternating rounds, and straight at the first instance as the reference. Nothing is pinned:
the instances, nginx, PostgreSQL and wrk share the machine's cores as a deployment on one host
would, so on a 2-core machine the figures show what more instances cost, not what they gain.

The statements: PostgreSQL runs with pg_stat_statements; its counts are reset, wrk runs
through the three instances, and every statement the database ran meanwhile (transaction
control included) is divided by the requests wrk completed. Every process is stopped by its
own pid.
"""

from __future__ import annotations

import statistics
import subprocess
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from bench.load import (
    TOKEN,
    BenchError,
    BenchServer,
    LoadOptions,
    WrkResult,
    clean_environment,
    http_get,
    postgres_version,
    run_wrk,
)
from bench.machine import children_of, cpu_speed_ms
from tests.support.nginx import Nginx, NginxUnavailable
from tests.support.postgres import PostgresServer

INSTANCES = 3
DIRECT = "1 instance, no proxy"
DATABASE = "tokensmith_scale"


def through(count: int) -> str:
    return f"nginx → {count} instance{'s' if count > 1 else ''}"


@dataclass
class ScaleRow:
    label: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    foreign_cpu_percent: float
    runs: list[dict] = field(default_factory=list)


@dataclass
class ScaleFigures:
    rows: list[ScaleRow]
    checks_counted: int
    statements: dict[str, int]  # what the store ran while those checks were made, by statement
    postgresql: str
    cpu_probes_ms: list[float] = field(default_factory=list)

    @property
    def statements_per_check(self) -> float:
        return sum(self.statements.values()) / self.checks_counted

    def row(self, label: str) -> ScaleRow:
        return next(row for row in self.rows if row.label == label)

    def as_dict(self) -> dict:
        return {**asdict(self), "statements_per_check": self.statements_per_check}


def measure_scale_out(workdir: Path, options: LoadOptions, log=print) -> ScaleFigures:
    options = replace(options, pin=False)
    workdir.mkdir(parents=True, exist_ok=True)
    postgres = PostgresServer(workdir / "postgres", settings={"shared_preload_libraries": "pg_stat_statements"})
    servers: list[BenchServer] = []
    proxies: dict[str, Nginx] = {}
    try:
        try:
            postgres.init().start()
        except subprocess.CalledProcessError as error:
            raise BenchError(f"PostgreSQL did not start: {error}") from error
        url = postgres.create_database(DATABASE)
        postgres.execute("CREATE EXTENSION pg_stat_statements", DATABASE)
        shared = workdir / "shared-data"
        for number in range(1, INSTANCES + 1):
            env = clean_environment(shared, url)
            env["TOKENSMITH_TRUSTED_PROXIES"] = "127.0.0.1"
            instance_dir = workdir / f"instance{number}"
            instance_dir.mkdir()
            servers.append(BenchServer(instance_dir, env, options).start())
        servers[0].admin("users", "create", "fleet", "--email", "fleet@example.test")
        token = servers[0].admin("tokens", "create", "--user", "fleet", "--name", "fleet").strip()
        headers = {"Authorization": f"Bearer {token}"}
        urls = {DIRECT: f"{servers[0].base_url}/api/v1/me"}
        for count in range(1, INSTANCES + 1):
            proxy = Nginx(workdir / f"nginx{count}", log_requests=False)
            try:
                proxies[through(count)] = proxy.proxy([s.port for s in servers[:count]]).start()
            except NginxUnavailable as error:
                raise BenchError(str(error)) from error
            urls[through(count)] = f"{proxy.url}/api/v1/me"
        for label, target in urls.items():
            status, body = http_get(target, headers)
            if status != 200:
                raise BenchError(f"{label}: {TOKEN} answered {status}: {body[:300]!r}")

        def own_pids() -> list[int]:
            return [
                *(s.process.pid for s in servers),
                *(p.process.pid for p in proxies.values()),
                *([postgres.pid, *children_of(postgres.pid)] if postgres.pid else []),
            ]

        order = list(urls)
        if options.warmup:
            for label in order:
                run_wrk(label, urls[label], options, seconds=options.warmup, headers=headers)
        runs: dict[str, list[WrkResult]] = {label: [] for label in order}
        probes = []
        for round_number in range(options.rounds):
            for label in order if round_number % 2 == 0 else order[::-1]:
                probes.append(cpu_speed_ms(0, pin=False))
                result = run_wrk(
                    label, urls[label], options, seconds=options.duration, headers=headers, own_pids=own_pids
                )
                runs[label].append(result)
                log(
                    f"  scale-out round {round_number + 1}  {label:<22} {result.requests_per_second:8.0f} req/s  "
                    f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
                    f"other load {result.foreign_cpu_percent:3.0f}%"
                )
        postgres.execute("SELECT pg_stat_statements_reset()", DATABASE)
        counted = run_wrk(
            through(INSTANCES), urls[through(INSTANCES)], options, seconds=options.duration, headers=headers
        )
        statements = statements_since_reset(postgres)
        log(
            f"  statements per token check: {sum(statements.values()) / counted.requests:.3f} "
            f"({sum(statements.values()):,} statements for {counted.requests:,} checks)"
        )
        rows = [
            ScaleRow(
                label,
                statistics.median(r.requests_per_second for r in runs[label]),
                statistics.median(r.p50_ms for r in runs[label]),
                statistics.median(r.p99_ms for r in runs[label]),
                max(r.foreign_cpu_percent for r in runs[label]),
                [{k: v for k, v in asdict(r).items() if k != "output"} for r in runs[label]],
            )
            for label in order
        ]
        return ScaleFigures(rows, counted.requests, statements, postgres_version(postgres), probes)
    finally:
        for proxy in proxies.values():
            proxy.stop()
        for server in servers:
            server.stop()
        postgres.stop()


def statements_since_reset(postgres: PostgresServer) -> dict[str, int]:
    """Every statement run in the bench's database since the reset, but the reading itself."""
    found = postgres.execute(
        "SELECT query, calls FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
        f"WHERE d.datname = '{DATABASE}' AND query NOT LIKE '%pg_stat_statements%' ORDER BY calls DESC",
        DATABASE,
    )
    return {_shortened(query): int(calls) for query, calls in found}


def _shortened(query: str, length: int = 72) -> str:
    text = " ".join(query.split())
    return text if len(text) <= length else text[: length - 1] + "…"
