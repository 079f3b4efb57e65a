"""Figures out: the console tables, the JSON record, and the figures section of the docs."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from bench.load import BackendFigures, LoadOptions
from bench.token_check import Timing

RATIO_TARGET = 0.85
CHECK_TARGET_US = 50.0
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
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "wrk": wrk,
    }
    for package in ("fastapi", "starlette", "uvicorn", "sqlalchemy", "psycopg"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "absent"
    return info


def table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    """A Markdown table padded to line up, so it reads the same in a terminal."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def http_table(backends: list[BackendFigures]) -> str:
    rows = []
    for figures in backends:
        name = BACKEND_NAMES.get(figures.backend, figures.backend)
        for route in (figures.health, figures.token):
            label = route.route + (" (Bearer token)" if route is figures.token else "")
            rows.append([name, label, f"{route.requests_per_second:,.0f}", f"{route.p50_ms:.2f}",
                         f"{route.p99_ms:.2f}", f"{route.foreign_cpu_percent:.0f}"])
        rows.append([name, "ratio token / healthz (req/s)", f"{figures.ratio:.2f}", "", "", ""])
    return table(["store", "route", "requests/s", "p50 ms", "p99 ms", "other load %"], rows, right={2, 3, 4, 5})


def noise_warning(backends: list[BackendFigures], idle_load: float | None) -> str | None:
    worst = max([r.foreign_cpu_percent for b in backends for r in (b.health, b.token)], default=0.0)
    if max(worst, idle_load or 0.0) < NOISE_PERCENT:
        return None
    return (f"**Warning: the machine was not quiet.** Other processes used {idle_load or 0:.0f}% of a CPU "
            f"before the run and up to {worst:.0f}% during a timed run: these figures are noisy; run "
            "`make bench` again on a quiet machine.")


def check_table(timings: list[Timing]) -> str:
    rows = [[t.label.replace("  ", "↳ ", 1) if t.label.startswith("  ") else t.label,
             f"{t.median_us:.1f}", f"{t.min_us:.1f}–{t.max_us:.1f}", f"{t.batches} × {t.calls_per_batch:,}"]
            for t in timings]
    return table(["step", "µs per call (median)", "batch range", "batches × calls"], rows, right={1, 2, 3})


def targets_table(backends: list[BackendFigures], timings: list[Timing]) -> str:
    rows = []
    for figures in backends:
        name = BACKEND_NAMES.get(figures.backend, figures.backend)
        rows.append([f"token route ≥ {RATIO_TARGET} × /healthz requests/s, one worker, {name}",
                     f"{figures.ratio:.2f} ×", verdict(figures.ratio >= RATIO_TARGET)])
    verify = next((t for t in timings if t.key == "verify"), None)
    if verify is not None:
        rows.append([f"one token check < {CHECK_TARGET_US:.0f} µs (SQLite, in process)",
                     f"{verify.median_us:.1f} µs", verdict(verify.median_us < CHECK_TARGET_US)])
    return table(["target", "measured", "verdict"], rows, right={1})


def figures_markdown(info: dict[str, str], options: LoadOptions, backends: list[BackendFigures],
                     timings: list[Timing], elapsed: float, idle_load: float | None = None) -> str:
    versions = ", ".join(f"{k} {info[k]}" for k in ("fastapi", "starlette", "uvicorn", "sqlalchemy", "psycopg"))
    pg = f", PostgreSQL {info['postgresql']}" if "postgresql" in info else ""
    pin = "server on `taskset -c 0`, wrk on `taskset -c 1`" if options.pin else "not pinned"
    parts = [
        f"Measured {info['date']} on {info['nproc']} CPUs ({info['cpu']}), {info['system']}, "
        f"Python {info['python']}; {versions}{pg}; {info['wrk']}. The whole run took {elapsed:.0f} s.",
    ]
    warning = noise_warning(backends, idle_load)
    if warning:
        parts.append(warning)
    if backends:
        parts += [
            f"**HTTP, one uvicorn worker** ({pin}; `wrk -t{options.threads} -c{options.connections} "
            f"-d{options.duration}s --latency`; medians of {options.rounds} alternating rounds after a "
            f"{options.warmup} s warm-up of each route; *other load*: CPU used meanwhile by processes "
            "not ours, worst run, in % of one CPU):",
            http_table(backends),
        ]
    if timings:
        parts += ["**One token check, in process, SQLite** (microseconds per call, median batch):",
                  check_table(timings)]
    parts += ["**Targets:**", targets_table(backends, timings)]
    return "\n\n".join(parts)


def rewrite_docs(path: Path, figures: str) -> None:
    text = path.read_text()
    start, end = text.find(START_MARK), text.find(END_MARK)
    if start < 0 or end < start:
        raise SystemExit(f"{path} has no {START_MARK} … {END_MARK} section to rewrite.")
    path.write_text(text[: start + len(START_MARK)] + "\n" + figures + "\n" + text[end:])
