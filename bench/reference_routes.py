"""The reference's addresses (``/nuxeo/…``, web/nuxeo.py) against the routes they are, side by side.

    PYTHONPATH=src:. .venv/bin/python -m bench.reference_routes [--rounds 6 --duration 5]

One ``tokensmith serve`` on SQLite, pinned to CPU 0 as ``make bench`` does, with a project that
has a commit (pushed by real git) and a release; wrk on CPU 1 drives each pair of addresses of
one route, the two alternating round by round (the route's own address first in odd rounds, the
reference's in even ones):

- ``GET /api/v1/me`` with ``Authorization: Bearer`` and with ``X-Authentication-Token``;
- a release's pom from the Studio repository, at the project's coordinates and at the
  reference's (``/nuxeo/site/studio/maven/nuxeo-studio/…``), with Basic credentials;
- ``workspace/ws.maven`` under ``/studio/v2/`` and ``/nuxeo/site/studio/v2/``;
- git's ref advertisement, ``info/refs?service=git-upload-pack``, under ``/git/`` and
  ``/nuxeo/git/`` (each request runs ``git upload-pack``).

Prints each round, the medians and the ratio of the reference's address to the route's own
(the target: at least 0.95). The server is stopped by its pid.
"""

from __future__ import annotations

import base64
import json
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.load import (
    BenchError,
    BenchServer,
    LoadOptions,
    clean_environment,
    http_get,
    options_of,
    run_wrk,
    wrk_parser,
)

PROJECT = "bench-reference"
GROUP = "com.acme.studio"
TARGET = 0.95  # the reference's address at least this fast as the route's own


@dataclass(frozen=True)
class Pair:
    route: str
    own: tuple[str, dict[str, str]]  # path, headers
    reference: tuple[str, dict[str, str]]


@dataclass
class ReferenceFigures:
    # route -> {"own": [requests/s per round], "reference": [...]}
    requests_per_second: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    server_cpu_us: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def median(self, route: str, which: str) -> float:
        return statistics.median(self.requests_per_second[route][which])

    def ratio(self, route: str) -> float:
        return self.median(route, "reference") / self.median(route, "own")

    def round_ratios(self, route: str) -> list[float]:
        rates = self.requests_per_second[route]
        return [r / o for r, o in zip(rates["reference"], rates["own"], strict=False)]

    def met(self) -> bool:
        return all(self.ratio(route) >= TARGET for route in self.requests_per_second)

    def as_dict(self) -> dict:
        return {**asdict(self), "ratios": {route: self.ratio(route) for route in self.requests_per_second}}


def _post_json(url: str, headers: dict[str, str], body: dict) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={**headers, "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read()


def prepare(server: BenchServer, workdir: Path) -> list[Pair]:
    """A user, a project with a commit pushed by git and a release; the pairs of addresses."""
    server.admin("users", "create", "bench", "--email", "bench@example.test")
    server.admin("projects", "create", PROJECT, "--group-id", GROUP, "--owner", "bench")
    token = server.admin("tokens", "create", "--user", "bench", "--name", "bench").strip()
    basic = {"Authorization": "Basic " + base64.b64encode(f"bench:{token}".encode()).decode()}
    work = workdir / "work"
    git = [
        "git",
        "-c",
        "user.name=Bench",
        "-c",
        "user.email=bench@example.test",
        "-c",
        f"http.extraHeader=Authorization: {basic['Authorization']}",
    ]
    subprocess.run(["git", "init", "-q", "-b", "master", str(work)], check=True)
    (work / "README.md").write_text("# Bench\n")
    subprocess.run([*git, "-C", str(work), "add", "."], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-qm", "first"], check=True)
    pushed = subprocess.run(
        [*git, "-C", str(work), "push", "-q", f"{server.base_url}/git/{PROJECT}.git", "master"],
        capture_output=True,
        text=True,
    )
    if pushed.returncode != 0:
        raise BenchError(f"git push failed: {pushed.stderr}")
    status, body = _post_json(
        f"{server.base_url}/studio/v2/project/{PROJECT}/releases", basic, {"revision": "master", "versionName": "1.0.0"}
    )
    if status != 201:
        raise BenchError(f"the release answered {status}: {body[:200]!r}")
    pom = f"{PROJECT}/1.0.0/{PROJECT}-1.0.0.pom"
    refs = f"{PROJECT}.git/info/refs?service=git-upload-pack"
    return [
        Pair(
            "GET /api/v1/me",
            ("/api/v1/me", {"Authorization": f"Bearer {token}"}),
            ("/api/v1/me", {"X-Authentication-Token": token}),
        ),
        Pair(
            "GET a release's pom",
            (f"/maven/studio/{GROUP.replace('.', '/')}/{pom}", basic),
            (f"/nuxeo/site/studio/maven/nuxeo-studio/{pom}", basic),
        ),
        Pair(
            "GET …/workspace/ws.maven",
            (f"/studio/v2/project/{PROJECT}/workspace/ws.maven", basic),
            (f"/nuxeo/site/studio/v2/project/{PROJECT}/workspace/ws.maven", basic),
        ),
        Pair("GET git info/refs", (f"/git/{refs}", basic), (f"/nuxeo/git/{refs}", basic)),
    ]


def measure_reference_routes(
    workdir: Path, options: LoadOptions, log: Callable[[str], None] = print
) -> ReferenceFigures:
    workdir.mkdir(parents=True, exist_ok=True)
    server = BenchServer(workdir, clean_environment(workdir / "data", None), options)
    figures = ReferenceFigures()
    try:
        server.start()
        pairs = prepare(server, workdir)
        for pair in pairs:  # every address answers 200 before any timing
            for path, headers in (pair.own, pair.reference):
                status, body = http_get(server.base_url + path, headers)
                if status != 200:
                    raise BenchError(f"{pair.route} at {path} answered {status}: {body[:200]!r}")
            figures.requests_per_second[pair.route] = {"own": [], "reference": []}
            figures.server_cpu_us[pair.route] = {"own": [], "reference": []}
            if options.warmup:
                for which in ("own", "reference"):
                    path, headers = getattr(pair, which)
                    run_wrk(pair.route, server.base_url + path, options, seconds=options.warmup, headers=headers)
        for round_number in range(options.rounds):
            order = ("own", "reference") if round_number % 2 == 0 else ("reference", "own")
            for pair in pairs:
                for which in order:
                    path, headers = getattr(pair, which)
                    result = run_wrk(
                        pair.route,
                        server.base_url + path,
                        options,
                        seconds=options.duration,
                        headers=headers,
                        server_pid=server.process.pid,
                    )
                    if server.process.poll() is not None:
                        raise BenchError(f"The server died during {pair.route}:\n{server.console()}")
                    figures.requests_per_second[pair.route][which].append(result.requests_per_second)
                    figures.server_cpu_us[pair.route][which].append(result.server_cpu_us_per_request)
                    log(
                        f"  round {round_number + 1}  {pair.route:<26} {which:<9} {result.requests_per_second:8.0f} "
                        f"req/s  p50 {result.p50_ms:6.2f} ms  server CPU {result.server_cpu_us_per_request:5.0f} µs/req"
                    )
    finally:
        server.stop()
    return figures


def summary(figures: ReferenceFigures) -> str:
    lines = []
    for route in figures.requests_per_second:
        rounds = figures.round_ratios(route)
        lines.append(
            f"{route}: own {figures.median(route, 'own'):,.0f} req/s, reference's address "
            f"{figures.median(route, 'reference'):,.0f} req/s; ratio {figures.ratio(route):.3f} "
            f"(rounds {min(rounds):.3f}–{max(rounds):.3f})"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    options = options_of(wrk_parser(__doc__.split("\n\n")[0]).parse_args(argv))
    with tempfile.TemporaryDirectory(prefix="tokensmith-reference-") as workdir:
        figures = measure_reference_routes(Path(workdir), options)
    print(summary(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
