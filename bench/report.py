"""Figures out: the console tables, the JSON record, and the figures section of the docs."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.backup import BackupFigures
from bench.check_scale import MODES as CHECK_SCALE_MODES
from bench.check_scale import RATIO_TARGET as CHECK_SCALE_TARGET
from bench.check_scale import ScaleFigures as CheckScaleFigures
from bench.client_start import FLOOR, ClientFigures
from bench.download import TARGET_RATIO as DOWNLOAD_RATIO_TARGET
from bench.download import DownloadFigures
from bench.git_clone import FetchFigures, GitFigures
from bench.install_size import InstallFigures
from bench.load import BackendFigures, LoadOptions, ratio_of, round_ratios
from bench.mixed_load import CONNECTIONS as MIXED_CONNECTIONS
from bench.mixed_load import MixedFigures
from bench.reference_routes import TARGET as REFERENCE_TARGET
from bench.reference_routes import ReferenceFigures
from bench.route_scale import RouteScaleFigures
from bench.scale_out import DIRECT, ScaleFigures
from bench.token_check import Timing
from bench.workload_identity import TARGET as EXCHANGE_TARGET
from bench.workload_identity import ExchangeFigures

RATIO_TARGET = 0.85  # the token route over /healthz, SQLite
POSTGRES_RATIO_TARGET = 0.9  # the same on PostgreSQL
BARE_RATIO_TARGET = 0.8  # the token route over a bare FastAPI JSON route
POSTGRES_SLOWDOWN_TARGET = 2.0  # the token route on PostgreSQL: at most this many times slower than on SQLite
POSTGRES_CPU_TARGET = 1.3  # the server's CPU per token request on PostgreSQL, over SQLite's (issue 23)
ACCESS_LOG_TARGET_US = 10  # what the access log adds to a request's server CPU (issue 23)
CHECK_TARGET_US = 50.0
GIT_RATIO_TARGET = 1.15  # git clone through the server, at most this × git clone file://
FETCH_RATIO_TARGET = 1.2  # a no-op git fetch through the server, at most this × through git http-backend
FIRST_BYTE_GAP_MS = 5.0  # an authenticated info/refs' first byte, at most this much after a 401's
SPEED_SPREAD = 1.3  # the slowest CPU probe over the fastest above which the figures are flagged
NOISE_PERCENT = 10.0  # other processes' CPU use, in % of one CPU, above which figures are flagged
BACKEND_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
START_MARK = "<!-- bench:figures:start -->"
END_MARK = "<!-- bench:figures:end -->"


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        if found:
            cpu = found.group(1).strip()
    except OSError:
        pass
    try:
        wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip()
    except OSError:
        wrk = "wrk not found"
    info = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "wrk": wrk,
    }
    info["source"] = source_state()
    for package in ("fastapi", "starlette", "uvicorn", "sqlalchemy", "psycopg"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "absent"
    return info


def source_state() -> str:
    """The commit measured, and whether src/ had uncommitted changes."""
    import tokensmith

    root = Path(__file__).resolve().parent.parent
    imported = Path(tokensmith.__file__).resolve().parent
    if imported != root / "src" / "tokensmith":
        return f"unknown (tokensmith imported from {imported})"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head} with uncommitted changes in src/" if dirty else head


def table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    """A Markdown table padded to line up, so it reads the same in a terminal."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                str(c).rjust(w) if i in right else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=False))
            )
            + " |"
        )

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def http_table(backends: list[BackendFigures]) -> str:
    rows = []
    for figures in backends:
        name = BACKEND_NAMES.get(figures.backend, figures.backend)
        for route in figures.routes:
            label = route.route + (" (Bearer token)" if route is figures.token else "")
            rows.append(
                [
                    name,
                    label,
                    f"{route.requests_per_second:,.0f}",
                    f"{route.p50_ms:.2f}",
                    f"{route.p99_ms:.2f}",
                    f"{route.server_cpu_us_per_request:,.0f}",
                    f"{route.foreign_cpu_percent:.0f}",
                ]
            )
        ratios = [("token / healthz", figures.token, figures.health)]
        if figures.bare is not None:
            ratios.append(("token / bare FastAPI", figures.token, figures.bare))
        if figures.static is not None:
            ratios.append(("static file / token", figures.static, figures.token))
        for label, route, other in ratios:
            rounds = round_ratios(route, other)
            rows.append(
                [
                    name,
                    f"ratio {label} (rounds: {min(rounds):.2f}–{max(rounds):.2f})",
                    f"{ratio_of(route, other):.2f}",
                    "",
                    "",
                    "",
                    "",
                ]
            )
    return table(
        ["store", "route", "requests/s", "p50 ms", "p99 ms", "server CPU µs/request", "other load %"],
        rows,
        right={2, 3, 4, 5, 6},
    )


def http_targets(backends: list[BackendFigures]) -> list[list[str]]:
    rows = []
    by_name = {figures.backend: figures for figures in backends}
    for figures in backends:
        name = BACKEND_NAMES.get(figures.backend, figures.backend)
        target = POSTGRES_RATIO_TARGET if figures.backend == "postgresql" else RATIO_TARGET
        rows.append(
            [
                f"token route ≥ {target} × /healthz requests/s, one worker, {name}",
                f"{figures.ratio:.2f} ×",
                verdict(figures.ratio >= target),
            ]
        )
        if figures.bare is not None:
            bare = ratio_of(figures.token, figures.bare)
            rows.append(
                [
                    f"token route ≥ {BARE_RATIO_TARGET} × a bare FastAPI JSON route, {name}",
                    f"{bare:.2f} ×",
                    verdict(bare >= BARE_RATIO_TARGET),
                ]
            )
        if figures.quiet is not None:
            line = figures.token.server_cpu_us_per_request - figures.quiet.server_cpu_us_per_request
            rows.append(
                [
                    (
                        f"the access log adds ≤ {ACCESS_LOG_TARGET_US} µs of server CPU to a token request "
                        f"(log on against --no-access-log), {name}"
                    ),
                    (
                        f"{line:.0f} µs ({figures.token.server_cpu_us_per_request:.0f} against "
                        f"{figures.quiet.server_cpu_us_per_request:.0f})"
                    ),
                    verdict(line <= ACCESS_LOG_TARGET_US),
                ]
            )
        if figures.static is not None:
            faster = ratio_of(figures.static, figures.token)
            cpu = figures.static.server_cpu_us_per_request / figures.token.server_cpu_us_per_request
            rows.append(
                [
                    f"a static file at least as fast as the token route (requests/s, server CPU), {name}",
                    f"{faster:.1f} × the requests/s, {cpu:.2f} × the CPU",
                    verdict(faster >= 1 and cpu <= 1),
                ]
            )
    if "sqlite" in by_name and "postgresql" in by_name:
        slower = by_name["sqlite"].token.requests_per_second / by_name["postgresql"].token.requests_per_second
        rows.append(
            [
                f"token route on PostgreSQL within {POSTGRES_SLOWDOWN_TARGET:.0f} × its SQLite figure",
                f"{slower:.2f} × slower",
                verdict(slower <= POSTGRES_SLOWDOWN_TARGET),
            ]
        )
        postgresql, sqlite = by_name["postgresql"].token, by_name["sqlite"].token
        cpu = postgresql.server_cpu_us_per_request / sqlite.server_cpu_us_per_request
        rows.append(
            [
                (
                    f"server CPU per token request on PostgreSQL ≤ {POSTGRES_CPU_TARGET} × SQLite's "
                    "(the PostgreSQL server's own CPU apart)"
                ),
                (
                    f"{cpu:.2f} × ({postgresql.server_cpu_us_per_request:.0f} against "
                    f"{sqlite.server_cpu_us_per_request:.0f} µs; PostgreSQL's own "
                    f"{postgresql.store_cpu_us_per_request:.0f} µs)"
                ),
                verdict(cpu <= POSTGRES_CPU_TARGET),
            ]
        )
    return rows


def speed_warning(probes: list[float]) -> str | None:
    if not probes or max(probes) / min(probes) < SPEED_SPREAD:
        return None
    return (
        f"**Note: the CPU's speed varied ×{max(probes) / min(probes):.1f} during the run** (a fixed "
        f"Python loop took {min(probes):.1f} to {max(probes):.1f} ms on CPU 0 between runs): the host "
        "shares its CPUs with other machines. Read the ratios, which the alternating rounds protect, "
        "rather than the absolute figures."
    )


def noise_warning(backends: list[BackendFigures], loads: dict[str, float], git: GitFigures | None = None) -> str | None:
    loads = dict(loads)
    for figures in backends:
        name = BACKEND_NAMES.get(figures.backend, figures.backend)
        loads[f"{name} wrk runs (worst)"] = max(r.foreign_cpu_percent for r in figures.routes)
    if git is not None:
        loads["git clones (worst)"] = max(git.http.foreign_cpu_percent, git.file.foreign_cpu_percent)
    noisy = {part: load for part, load in loads.items() if load >= NOISE_PERCENT}
    if not noisy:
        return None
    where = ", ".join(f"{load:.0f}% {part}" for part, load in noisy.items())
    return (
        f"**Warning: the machine was not quiet.** Other processes used CPU ({where}; in % of one "
        "CPU): these figures are noisy. Run `make bench` again on a quiet machine."
    )


def git_table(git: GitFigures) -> str:
    rows = []
    for clone in (git.file, git.http):
        served = clone is git.http
        rows.append(
            [
                clone.label,
                f"{clone.median_seconds * 1000:,.0f}",
                f"{clone.min_seconds * 1000:,.0f}–{clone.max_seconds * 1000:,.0f}",
                f"{clone.server_python_ms:,.0f}" if served else "",
                f"{clone.server_git_ms:,.0f}" if served else "",
                f"{clone.foreign_cpu_percent:.0f}",
            ]
        )
    rounds = git.round_ratios
    rows.append(
        [f"ratio server / file:// (rounds: {min(rounds):.2f}–{max(rounds):.2f})", f"{git.ratio:.2f}", "", "", "", ""]
    )
    return table(
        ["clone", "ms (median)", "range ms", "server CPU ms: Python", "server CPU ms: git", "other load %"],
        rows,
        right={1, 2, 3, 4, 5},
    )


def fetch_table(fetch: FetchFigures) -> str:
    rows = []
    for label, times in (
        ("git fetch, nothing new: git http-backend (nginx + fcgiwrap, Basic auth)", fetch.floor_ms),
        ("git fetch, nothing new: through the server (token)", fetch.server_ms),
        ("first byte of GET info/refs, refused (401)", fetch.refused_first_byte_ms),
        ("first byte of GET info/refs, authenticated", fetch.authenticated_first_byte_ms),
    ):
        rows.append([label, f"{statistics.median(times):.1f}", f"{min(times):.1f}–{max(times):.1f}", str(len(times))])
    rows.append(
        [
            (
                f"ratio fetch server / git http-backend (rounds: {min(fetch.round_ratios):.2f}–"
                f"{max(fetch.round_ratios):.2f})"
            ),
            f"{fetch.ratio:.2f}",
            "",
            "",
        ]
    )
    rows.append(["first byte: authenticated − refused", f"{fetch.first_byte_gap_ms:.1f} ms", "", ""])
    return table(["request", "ms (median)", "range ms", "runs"], rows, right={1, 2, 3})


def mixed_table(mixed: list[MixedFigures]) -> str:
    rows = []
    for figures in mixed:
        name = BACKEND_NAMES.get(figures.backend, figures.backend)
        for connections in MIXED_CONNECTIONS:
            if not figures.at(connections):
                continue
            summary = figures.summary(connections)
            rows.append(
                [
                    name,
                    str(connections),
                    f"{summary['requests_per_second']:,.0f}",
                    f"{summary['p99_ms']:,.1f}",
                    f"{summary['max_ms']:,.0f}",
                    f"{summary['server_errors']:,}",
                    f"{summary['socket_errors']:,}",
                    f"{summary['tokens_created_per_second']:,.1f}",
                ]
            )
    return table(
        ["store", "connections", "requests/s", "p99 ms", "slowest ms", "5xx", "no answer", "tokens created/s"],
        rows,
        right={1, 2, 3, 4, 5, 6, 7},
    )


def scale_table(scale: ScaleFigures) -> str:
    direct = scale.row(DIRECT).requests_per_second
    rows = [
        [
            row.label,
            f"{row.requests_per_second:,.0f}",
            f"{row.requests_per_second / direct:.2f}",
            f"{row.p50_ms:.2f}",
            f"{row.p99_ms:.2f}",
            f"{row.foreign_cpu_percent:.0f}",
        ]
        for row in scale.rows
    ]
    return table(
        ["GET /api/v1/me (Bearer token)", "requests/s", "× no proxy", "p50 ms", "p99 ms", "other load %"],
        rows,
        right={1, 2, 3, 4, 5},
    )


def statements_table(scale: ScaleFigures) -> str:
    rows = [
        [statement.replace("|", "\\|"), f"{calls:,}", f"{calls / scale.checks_counted:.3f}"]
        for statement, calls in scale.statements.items()
    ]
    rows.append(["all statements", f"{sum(scale.statements.values()):,}", f"{scale.statements_per_check:.3f}"])
    return table(["statement (pg_stat_statements)", "calls", "per check"], rows, right={1, 2})


def check_table(timings: list[Timing]) -> str:
    rows = [
        [
            t.label.replace("  ", "↳ ", 1) if t.label.startswith("  ") else t.label,
            f"{t.median_us:.1f}",
            f"{t.min_us:.1f}–{t.max_us:.1f}",
            f"{t.batches} × {t.calls_per_batch:,}",
        ]
        for t in timings
    ]
    return table(["step", "µs per call (median)", "batch range", "batches × calls"], rows, right={1, 2, 3})


def _near(value: float, target: float) -> str:
    """Two decimals, or three when two would read as the target itself (1.251 is not 1.25)."""
    return f"{value:.3f}" if f"{value:.2f}" == f"{target:.2f}" and value != target else f"{value:.2f}"


def client_table(client: ClientFigures) -> str:
    floor = client.median(FLOOR)
    rows = []
    for label, runs in client.runs_ms.items():
        target = client.targets_ms.get(label)
        rows.append(
            [
                label,
                f"{statistics.median(runs):.1f}",
                f"{min(runs):.1f}–{max(runs):.1f}",
                f"{statistics.median(runs) / floor:.0f} ×" if label != FLOOR else "1 ×",
                f"≤ {target:.0f}" if target else "",
            ]
        )
    return table(["command", "ms (median)", "range ms", "× the floor", "target ms"], rows, right={1, 2, 3, 4})


def install_table(install: InstallFigures) -> str:
    rows = []
    for name, installed in install.installs.items():
        seconds = installed.seconds
        rows.append(
            [
                name,
                f"{installed.wheel_bytes / 1e3:,.0f}",
                str(len(installed.distributions)),
                f"{installed.installed_bytes / 1e6:.1f}",
                f"{installed.median_seconds:.1f}",
                f"{min(seconds):.1f}–{max(seconds):.1f}",
            ]
        )
    client, server = install.installs.get("tokensmith-client"), install.installs.get("tokensmith")
    if client and server:
        rows.append(
            [
                "client / server",
                "",
                f"{len(client.distributions) / len(server.distributions):.2f} ×",
                f"{client.installed_bytes / server.installed_bytes:.2f} ×",
                f"{client.median_seconds / server.median_seconds:.2f} ×",
                "",
            ]
        )
    return table(
        ["distribution", "wheel kB", "distributions installed", "MB installed", "pip install s (median)", "range s"],
        rows,
        right={1, 2, 3, 4, 5},
    )


def download_table(download: DownloadFigures) -> str:
    rows = []
    for name, speeds in (
        ("nginx (sendfile)", download.nginx_mb_s),
        ("Tokensmith /maven/studio/, token", download.tokensmith_mb_s),
    ):
        rows.append([name, f"{statistics.median(speeds):,.0f}", f"{min(speeds):,.0f}–{max(speeds):,.0f}"])
    rows.append(["ratio Tokensmith / nginx", f"{download.ratio:.2f}", ""])
    return table(["server", "MB/s (median)", "range MB/s"], rows, right={1, 2})


def targets_table(
    backends: list[BackendFigures],
    timings: list[Timing],
    git: GitFigures | None = None,
    download: DownloadFigures | None = None,
    mixed: list[MixedFigures] = (),
    client: ClientFigures | None = None,
    check_scale: CheckScaleFigures | None = None,
    route_scale: RouteScaleFigures | None = None,
    reference: ReferenceFigures | None = None,
    exchange: ExchangeFigures | None = None,
) -> str:
    rows = []
    if client is not None:
        for label, target in client.targets_ms.items():
            rows.append(
                [
                    f"{label} ≤ {target:.0f} ms",
                    f"{client.median(label):.0f} ms",
                    verdict(client.median(label) <= target),
                ]
            )
    rows += http_targets(backends)
    if git is not None:
        rows.append(
            [
                (
                    f"git clone through the server ≤ {GIT_RATIO_TARGET} × git clone file://, "
                    f"{BACKEND_NAMES.get(git.backend, git.backend)}"
                ),
                _near(git.ratio, GIT_RATIO_TARGET) + " ×",
                verdict(git.ratio <= GIT_RATIO_TARGET),
            ]
        )
        if git.fetch is not None:
            rows.append(
                [
                    f"no-op git fetch through the server ≤ {FETCH_RATIO_TARGET} × through git http-backend",
                    _near(git.fetch.ratio, FETCH_RATIO_TARGET) + " ×",
                    verdict(git.fetch.ratio <= FETCH_RATIO_TARGET),
                ]
            )
            rows.append(
                [
                    f"first byte of an authenticated info/refs ≤ {FIRST_BYTE_GAP_MS:.0f} ms after the 401's",
                    f"{git.fetch.first_byte_gap_ms:.1f} ms",
                    verdict(git.fetch.first_byte_gap_ms <= FIRST_BYTE_GAP_MS),
                ]
            )
    if download is not None:
        rows.append(
            [
                f"100 MB download ≥ {DOWNLOAD_RATIO_TARGET} × nginx's throughput",
                f"{download.ratio:.2f} ×",
                verdict(download.ratio >= DOWNLOAD_RATIO_TARGET),
            ]
        )
    for figures in mixed:
        server_errors = sum(run.server_errors for run in figures.runs)
        stalled = sum(run.requests == 0 for run in figures.runs)
        rows.append(
            [
                f"mixed load: no 5xx, no run stalled, {BACKEND_NAMES.get(figures.backend, figures.backend)}",
                f"{server_errors:,} × 5xx, {stalled} of {len(figures.runs)} runs stalled",
                verdict(server_errors == 0 and stalled == 0),
            ]
        )
    if check_scale is not None:
        large, small = max(check_scale.sizes), min(check_scale.sizes)
        for mode in ("writes", "quiet"):
            ratio = check_scale.ratio_of(mode)
            rows.append(
                [
                    (
                        f"token check among {large:,} tokens ≤ {CHECK_SCALE_TARGET} × among {small:,}, random "
                        f"tokens, {CHECK_SCALE_MODES[mode]}"
                    ),
                    f"{ratio:.2f} ×",
                    verdict(ratio <= CHECK_SCALE_TARGET),
                ]
            )
    if route_scale is not None:
        large, small = max(route_scale.sizes), min(route_scale.sizes)
        rows.append(
            [
                (
                    f"token route among {large:,} tokens ≤ {CHECK_SCALE_TARGET} × among {small:,}, random tokens, "
                    "over HTTP"
                ),
                f"{route_scale.ratio:.2f} ×",
                verdict(route_scale.ratio <= CHECK_SCALE_TARGET),
            ]
        )
    if reference is not None:
        worst = min(reference.requests_per_second, key=reference.ratio)
        rows.append(
            [
                f"each reference address ≥ {REFERENCE_TARGET} × its route's own address (worst: {worst})",
                f"{reference.ratio(worst):.3f} ×",
                verdict(reference.met()),
            ]
        )
    if exchange is not None:
        rows.append(
            [
                (
                    f"an exchange of a CI job's ID token (keys held) costs ≤ {EXCHANGE_TARGET:g} × a token check "
                    "on the server (its CPU), over HTTP"
                ),
                f"{exchange.cpu_ratio:.2f} × ({exchange.ratio:.2f} × by throughput)",
                verdict(exchange.met()),
            ]
        )
    verify = next((t for t in timings if t.key == "verify"), None)
    if verify is not None:
        rows.append(
            [
                f"one token check < {CHECK_TARGET_US:.0f} µs (SQLite, in process)",
                f"{verify.median_us:.1f} µs",
                verdict(verify.median_us < CHECK_TARGET_US),
            ]
        )
    return table(["target", "measured", "verdict"], rows, right={1})


def figures_markdown(
    info: dict[str, str],
    options: LoadOptions,
    backends: list[BackendFigures],
    timings: list[Timing],
    elapsed: float,
    loads: dict[str, float],
    probes: list[float],
    git: GitFigures | None = None,
    download: DownloadFigures | None = None,
    mixed: list[MixedFigures] = (),
    client: ClientFigures | None = None,
    scale: ScaleFigures | None = None,
    check_scale: CheckScaleFigures | None = None,
    route_scale: RouteScaleFigures | None = None,
    install: InstallFigures | None = None,
    reference: ReferenceFigures | None = None,
    backup: BackupFigures | None = None,
    exchange: ExchangeFigures | None = None,
) -> str:
    versions = ", ".join(f"{k} {info[k]}" for k in ("fastapi", "starlette", "uvicorn", "sqlalchemy", "psycopg"))
    pg = f", PostgreSQL {info['postgresql']}" if "postgresql" in info else ""
    pin = "server on `taskset -c 0`, wrk on `taskset -c 1`" if options.pin else "not pinned"
    parts = [
        (
            f"Measured {info['date']} at commit {info['source']}, on {info['nproc']} CPUs ({info['cpu']}), "
            f"{info['system']}, "
            f"Python {info['python']}; {versions}{pg}; {info['wrk']}. The whole run took {elapsed:.0f} s."
        ),
    ]
    for warning in (noise_warning(backends, loads, git), speed_warning(probes)):
        if warning:
            parts.append(warning)
    if backends:
        parts += [
            (
                f"**HTTP, one uvicorn worker** ({pin}; `wrk -t{options.threads} -c{options.connections} "
                f"-d{options.duration}s --latency`; medians of {options.rounds} alternating rounds after a "
                f"{options.warmup} s warm-up of each route; *server CPU*: the server process's CPU time over the "
                "requests wrk completed; *other load*: CPU used meanwhile by processes not ours, worst run, "
                "in % of one CPU):"
            ),
            http_table(backends),
        ]
    if mixed:
        parts += [
            (
                f"**Mixed load, one uvicorn worker** ({pin}; `wrk -t1 -cN -d{options.duration}s --timeout 2s "
                "-s bench/mixed.lua`: of every 20 requests 17 present a token never used before, so that each "
                "check writes *last used*, 1 creates a token on My Tokens as one of 32 signed-in people, 1 reads "
                f"My Tokens, 1 is `/healthz`; medians of {options.rounds} alternating rounds, *slowest*: the "
                "slowest request of all rounds, *5xx* and *no answer* (socket errors, and timeouts: wrk counts a "
                "request unanswered after 2 s, and again every 2 s it stays so): sums of all rounds):"
            ),
            mixed_table(mixed),
        ]
    if git is not None:
        shape = git.repository
        placement = (
            "server and the file:// clone's `git-upload-pack` on `taskset -c 0`, `git clone` on `taskset -c 1`"
            if options.pin
            else "not pinned"
        )
        parts += [
            (
                f"**Git clone, {BACKEND_NAMES.get(git.backend, git.backend)}** ({placement}; a repository of "
                f"{shape.files:,} files in {shape.directories} directories, {shape.bytes / 1e6:.1f} MB "
                f"({shape.binary_files:,} files of random bytes, the rest pseudo-text), {shape.commits} commits, "
                f"{shape.pack_bytes / 1e6:.1f} MB in the server's bare repository, pushed through the server; "
                f"a normal `git clone` with checkout into /dev/shm; medians of {git.rounds} alternating rounds "
                "after one warm-up clone of each; *server CPU*: the server process's own CPU time per clone, "
                "and that of the git processes it ran (`upload-pack`, `pack-objects`), in steps of 10 ms; *other "
                "load*: as above, "
                "worst clone):"
            ),
            git_table(git),
        ]
        if git.fetch is not None:
            parts += [
                (
                    f"**Git fetch and first byte, {BACKEND_NAMES.get(git.backend, git.backend)}** (the same "
                    "repository; a "
                    "`git fetch` that finds nothing new (protocol v2: `info/refs`, then `ls-refs`) from a clone in "
                    "/dev/shm, through the server and through `git http-backend` as CGI under nginx + fcgiwrap with "
                    "HTTP Basic authentication (`auth_basic`, an htpasswd file with the same username and token, "
                    "salted SHA-1) on the same bare repository; each a 401, then the token from git's store helper; "
                    "nginx, fcgiwrap and the backends on `taskset -c 0`), "
                    f"{len(git.fetch.round_ratios)} alternating rounds of "
                    f"{len(git.fetch.server_ms) // max(len(git.fetch.round_ratios), 1)} "
                    "fetches each, medians of all; the first byte of `GET info/refs?service=git-upload-pack` on a new "
                    "connection, without credentials (the 401) and with them, alternating, from CPU 1):"
                ),
                fetch_table(git.fetch),
            ]
    if download is not None:
        parts += [
            (
                "**Download of a 100 MB artifact** (random bytes, published in the Studio repository; "
                "Tokensmith and then nginx serving the same file from the same folder, each alone on "
                "`taskset -c 0`; `curl` into /dev/null on `taskset -c 1`, the token from a netrc file; "
                f"medians of {len(download.nginx_mb_s)} alternating rounds after one warm-up download of each):"
            ),
            download_table(download),
        ]
    if client is not None:
        placement = "the client on `taskset -c 1`, the server on `taskset -c 0`" if options.pin else "not pinned"
        parts += [
            (
                f"**The client's start-up** ({placement}; each command a whole process, from its start to its exit; "
                f"{client.rounds} rounds alternating the order, {client.runs_per_round} runs of each per round, after "
                f"one warm-up run; medians of all runs; the system keyring: {client.keyring}; *other load* during the "
                f"runs: {client.foreign_cpu_percent:.0f}% of one CPU):"
            ),
            client_table(client),
        ]
    if install is not None:
        parts += [
            (
                "**The two distributions** (bench/install_size.py: each wheel built from this checkout, installed by "
                "`pip install WHEEL` into a fresh virtual environment of its own, with its dependencies and their "
                f"bytecode; a first round fills pip's cache, then {install.rounds} timed rounds alternating the order; "
                "*MB installed*: what the install added to the environment, on disk; *distributions*: what `pip list` "
                "shows beyond a fresh environment's own):"
            ),
            install_table(install),
        ]
        if "tokensmith-client" in install.installs:
            parts.append(
                "What `pip install` of the client brings: "
                + ", ".join(install.installs["tokensmith-client"].distributions)
                + "."
            )
    if scale is not None:
        parts += [
            (
                f"**Scale-out, PostgreSQL {scale.postgresql.split()[0]}: nginx in front of 1, 2 and 3 instances** "
                f"(one uvicorn worker each, one store, one data dir; nothing pinned: the instances, nginx, "
                f"PostgreSQL and wrk share the {info['nproc']} CPUs; `wrk -t{options.threads} -c{options.connections} "
                f"-d{options.duration}s --latency` with a Bearer token; medians of {options.rounds} alternating "
                "rounds):"
            ),
            scale_table(scale),
            (
                f"**What a token check costs the store** (every statement PostgreSQL ran while "
                f"{scale.checks_counted:,} checks went through nginx to the 3 instances, counted by "
                "pg_stat_statements, transaction control included):"
            ),
            statements_table(scale),
        ]
    if timings:
        parts += [
            "**One token check, in process, SQLite** (microseconds per call, median batch):",
            check_table(timings),
        ]
    if check_scale is not None:
        parts += [
            (
                f"**The token check among {min(check_scale.sizes):,} and {max(check_scale.sizes):,} tokens**, "
                "SQLite, in "
                "process (bench/check_scale.py: `verify_token` on the check engine's connection as the server runs it; "
                "each call presents one of 2,000 real tokens spread through the table, at random; the large store "
                "seeded straight into the table; microseconds of the thread's CPU time per check, median of "
                f"{len(next(iter(check_scale.batches_us.values())))} alternating batches; *a commit every "
                f"{check_scale.write_every} checks*: another connection writes a last-used time, as the server does "
                "a few times a second under load; *SQLite's lookup alone*: the check's SELECT on a bare sqlite3 "
                "connection with the same page cache, the floor under any check):"
            ),
            check_scale_table(check_scale),
        ]
    if route_scale is not None:
        parts += [
            (
                f"**The token route among {min(route_scale.sizes):,} and {max(route_scale.sizes):,} tokens**, SQLite, "
                "over HTTP (bench/route_scale.py: a server on each store, pinned as above; `GET /api/v1/me`, each "
                "request presenting one of the store's real tokens at random; the servers alternate round by round; "
                "their last-used writes happen as they would):"
            ),
            route_scale_table(route_scale),
        ]
    wrk_placement = "server on `taskset -c 0`, wrk on `taskset -c 1`" if options.pin else "not pinned"
    if reference is not None:
        parts += [
            (
                "**The reference's addresses against their routes' own** (bench/reference_routes.py: one server on "
                f"SQLite, {wrk_placement}; `wrk -t{options.threads} -c{options.connections} -d{options.duration}s`; "
                f"each pair alternating round by round, medians of {options.rounds} rounds; the release's pom and "
                "`ws.maven` with Basic credentials, git's ref advertisement running `git upload-pack` each time):"
            ),
            reference_table(reference),
        ]
    if backup is not None:
        parts += [backup_intro(backup), backup_table(backup)]
    if exchange is not None:
        parts += [
            (
                "**Workload identity: the exchange of a CI job's ID token against a token check** "
                f"(bench/workload_identity.py: one server on SQLite, {wrk_placement}; `wrk -t{options.threads} "
                f"-c{options.connections} -d{options.duration}s`, the routes alternating round by round, medians of "
                f"{options.rounds} rounds; each exchange with an RS256 ID token of its own, the issuer's keys held; "
                "*floor*: a POST of a JSON body to a route whose unit of work finds nothing to do):"
            ),
            exchange_table(exchange),
        ]
    parts += [
        "**Targets:**",
        targets_table(backends, timings, git, download, mixed, client, check_scale, route_scale, reference, exchange),
    ]
    return "\n\n".join(parts)


def check_scale_table(figures: CheckScaleFigures) -> str:
    rows = []
    for key, median in figures.median_us.items():
        mode, size = key.split()
        batches = figures.batches_us[key]
        rows.append(
            [f"{int(size):,}", CHECK_SCALE_MODES[mode], f"{median:.1f}", f"{min(batches):.1f}–{max(batches):.1f}"]
        )
    for mode in CHECK_SCALE_MODES:
        rows.append(
            [
                f"ratio {max(figures.sizes):,} / {min(figures.sizes):,}",
                CHECK_SCALE_MODES[mode],
                f"{figures.ratio_of(mode):.2f}",
                "",
            ]
        )
    return table(["tokens", "meanwhile", "µs per check", "batches µs"], rows, right={2, 3})


def route_scale_table(figures: RouteScaleFigures) -> str:
    rows = []
    for size in figures.sizes:
        rates = figures.requests_per_second[size]
        rows.append(
            [
                f"{size:,}",
                f"{figures.median_rate(size):,.0f}",
                f"{min(rates):,.0f}–{max(rates):,.0f}",
                f"{figures.median_cpu(size):.0f}",
            ]
        )
    rows.append(
        [
            (
                f"ratio {min(figures.sizes):,} / {max(figures.sizes):,} (rounds {min(figures.round_ratios):.2f}–"
                f"{max(figures.round_ratios):.2f})"
            ),
            f"{figures.ratio:.2f}",
            "",
            "",
        ]
    )
    return table(["tokens", "requests/s (median)", "rounds", "server CPU µs/request"], rows, right={1, 2, 3})


def reference_table(figures: ReferenceFigures) -> str:
    rows = []
    for route in figures.requests_per_second:
        rounds = figures.round_ratios(route)
        cpu = figures.server_cpu_us[route]
        rows.append(
            [
                route,
                f"{figures.median(route, 'own'):,.0f}",
                f"{figures.median(route, 'reference'):,.0f}",
                f"{statistics.median(cpu['own']):.0f} / {statistics.median(cpu['reference']):.0f}",
                f"{figures.ratio(route):.3f}",
                f"{min(rounds):.3f}–{max(rounds):.3f}",
            ]
        )
    return table(
        ["route", "own address req/s", "reference's address req/s", "server CPU µs/req", "ratio", "rounds"],
        rows,
        right={1, 2, 3, 4, 5},
    )


def backup_intro(backup: BackupFigures) -> str:
    shape = backup.repository
    return (
        f"**A backup of the bench's store and repository** (bench/backup.py: {backup.tokens:,} tokens on SQLite, "
        f"a {backup.store_bytes / 1e6:.0f} MB store; the {shape.files:,}-file, {shape.bytes / 1e6:.0f} MB repository "
        f"pushed and released once; {backup.data_dir_bytes / 1e6:.0f} MB in the data dir; each command a process of "
        f"the server's shell, nothing pinned; medians of {backup.rounds} rounds, the two kinds of backup alternating):"
    )


def backup_table(backup: BackupFigures) -> str:
    sizes = {"create": backup.file_bytes.get("plain"), "create, encrypted": backup.file_bytes.get("encrypted")}
    rows = [
        [
            f"`backup {step}`" if "," not in step else "`backup create --passphrase-file`",
            f"{backup.median(step):.1f}",
            f"{sizes[step] / 1e6:.0f} MB" if sizes.get(step) else "",
        ]
        for step in backup.seconds
    ]
    return table(["command", "seconds", "file"], rows, right={1, 2})


def rewrite_docs(path: Path, figures: str) -> None:
    text = path.read_text()
    start, end = text.find(START_MARK), text.find(END_MARK)
    if start < 0 or end < start:
        raise SystemExit(f"{path} has no {START_MARK} … {END_MARK} section to rewrite.")
    path.write_text(text[: start + len(START_MARK)] + "\n" + figures + "\n" + text[end:])


def exchange_table(exchange: ExchangeFigures) -> str:
    from bench.workload_identity import CHECK, EXCHANGE, FLOOR

    rows = [
        [
            route,
            f"{exchange.median(route):,.0f}",
            f"{exchange.cpu(route):,.0f}",
            f"{exchange.cpu(route) / exchange.cpu(CHECK):.2f}",
        ]
        for route in (CHECK, EXCHANGE, FLOOR)
    ]
    return table(
        ["route", "requests/s (median)", "server CPU µs/request", "× a token check (CPU)"], rows, right={1, 2, 3}
    )
