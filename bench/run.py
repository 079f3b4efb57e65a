"""``make bench``: what a token costs on the request path, against /healthz on the same server.

1. In process, on SQLite: one ``token_check.verify_token`` call and each of its pieces
   (parse, digest, lookup), in microseconds.
2. Over HTTP, for SQLite and for PostgreSQL: a real ``tokensmith serve`` pinned to one core,
   wrk on another, ``GET /api/v1/me`` with a Bearer token against ``GET /healthz``, alternated
   over several rounds; medians and their ratio.
3. The mixed load, for SQLite and for PostgreSQL: people creating tokens on My Tokens, clients
   presenting never-used tokens and a monitor on /healthz at once, from one wrk at 64 and 256
   connections (``bench/mixed_load.py``); requests/s, p99, the slowest request, 5xx answers.
4. The client's start-up: ``tokensmith git-credential get`` against ``git credential-store get``,
   and a few client commands against a real server, and beside them the server's shell commands
   on its store (``bench/client_start.py``), in milliseconds; then what each distribution costs
   to install, the server's and the client's alone: size and time (``bench/install_size.py``).
5. Scale-out on PostgreSQL: the token route through nginx in front of 1, 2 and 3 instances on
   one store and one data dir, and the statements the store runs per token check
   (``bench/scale_out.py``).
6. Git over HTTP, on SQLite: ``git clone`` of a repository of about 2,000 files and 20 MB
   through the server against ``git clone file://`` of the server's own bare repository,
   alternated over several rounds; medians and their ratio.
7. Push protection's cost, on SQLite: ``git push`` of the same repository into a server that
   scans each push's new objects for tokens against one that does not
   (``TOKENSMITH_PUSH_PROTECTION=false``), alternated; the ratio of the medians, at most 1.3
   (``bench/git_push.py``).

8. The token check among 1,000 and among 1,000,000 tokens presented at random, on SQLite, in
   process (``bench/check_scale.py``): the ratio; and the token route over HTTP on a server of
   each store, random tokens again, alternated (``bench/route_scale.py``): the ratio.
9. The reference's addresses under ``/nuxeo/`` against the routes they are, on SQLite: each
   pair alternated over wrk rounds, the ratio of the medians, at least 0.95
   (``bench/reference_routes.py``).
10. GitHub's secret-scanning partner endpoint on SQLite: a signed report of 1,000 live tokens,
   each revoked and audited, at most 1 s (``bench/secret_scanning.py``).
11. A backup of a million tokens on SQLite and the bench repository, released once: ``tokensmith
   backup create`` plain and encrypted, ``verify``, ``restore``; seconds and the file's size
   (``bench/backup.py``).
12. Workload identity, on SQLite: the exchange of a CI job's ID token with the issuer's keys held
   against a token check, alternated over wrk rounds; the ratio, at most 3
   (``bench/workload_identity.py``).

``--issue-14`` runs only the parts that hold issue 14's targets (the routes on both stores with
the bare FastAPI route and the style sheet beside them, git clone and fetch against their
floors, the check among 1k and 1M tokens), in about two minutes.

It prints figures and whether each target is met; a missed target does not fail the command,
a broken measurement does. ``--write-docs`` rewrites the figures section of
docs/benchmarks.md. Every process started (the servers, PostgreSQL) is stopped by its own pid.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, Python puts bench/ first on the path; the repository root belongs there,
# so that `bench`, `tests.support` and `tokensmith` import (and no bench module shadows the stdlib).
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from bench import report  # noqa: E402
from bench.backup import BackupFigures, measure_backup  # noqa: E402
from bench.check_scale import ScaleFigures as CheckScaleFigures  # noqa: E402
from bench.check_scale import measure_check_scale  # noqa: E402
from bench.client_start import ClientFigures, measure_client_start  # noqa: E402
from bench.download import DownloadFigures, measure_download  # noqa: E402
from bench.git_clone import GitFigures, measure_git_clone  # noqa: E402
from bench.git_push import PushFigures, measure_git_push  # noqa: E402
from bench.install_size import InstallFigures, measure_install  # noqa: E402
from bench.load import BenchError, LoadOptions, measure_postgres, measure_server  # noqa: E402
from bench.machine import (  # noqa: E402
    CLIENT_CPU,
    SERVER_CPU,
    ForeignLoad,
    can_pin,
    cpu_affinity,
    cpu_speed_ms,
    idle_check,
)
from bench.mixed_load import CONNECTIONS as MIXED_CONNECTIONS  # noqa: E402
from bench.mixed_load import MixedFigures, measure_mixed, measure_mixed_postgres  # noqa: E402
from bench.reference_routes import ReferenceFigures, measure_reference_routes  # noqa: E402
from bench.route_scale import RouteScaleFigures, measure_route_scale  # noqa: E402
from bench.scale_out import ScaleFigures, measure_scale_out  # noqa: E402
from bench.secret_scanning import ScanningFigures, measure_secret_scanning  # noqa: E402
from bench.token_check import measure_token_check  # noqa: E402
from bench.workload_identity import ExchangeFigures, measure_exchange  # noqa: E402
from tests.support.postgres import PostgresUnavailable  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results" / "latest.json"


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make bench BENCH_ARGS=...", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds of each timed wrk run (5)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per route (1; 0: none)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per route (3)")
    parser.add_argument("--connections", type=int, default=20, help="wrk connections (20)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="stores to serve from (sqlite,postgresql)")
    parser.add_argument("--calls", type=int, default=4000, help="token checks per timed batch (4000)")
    parser.add_argument("--batches", type=int, default=5, help="timed batches of token checks (5)")
    parser.add_argument("--filler", type=int, default=10_000, help="other tokens in the in-process store (10000)")
    parser.add_argument("--git-rounds", type=int, default=5, help="alternating rounds of git clones (5)")
    parser.add_argument("--skip-http", action="store_true", help="only the in-process token check (no wrk, no git)")
    parser.add_argument("--skip-check", action="store_true", help="only the HTTP runs (wrk and git)")
    parser.add_argument("--skip-routes", action="store_true", help="no /healthz against /api/v1/me runs")
    parser.add_argument("--skip-mixed", action="store_true", help="no mixed load")
    parser.add_argument("--skip-scale", action="store_true", help="no scale-out runs (nginx, 1-3 instances)")
    parser.add_argument("--skip-git", action="store_true", help="no git clone timing")
    parser.add_argument("--skip-push", action="store_true", help="no git push timing (push protection's cost)")
    parser.add_argument("--push-rounds", type=int, default=3, help="alternating rounds of git pushes (3)")
    parser.add_argument("--skip-download", action="store_true", help="no 100 MB download against nginx")
    parser.add_argument(
        "--skip-client",
        action="store_true",
        help="no client start-up timing (nor the server's shell commands beside it)",
    )
    parser.add_argument("--skip-shell", action="store_true", help="no timing of the server's shell commands")
    parser.add_argument("--skip-install", action="store_true", help="no install size and time of the distributions")
    parser.add_argument(
        "--install-rounds",
        type=int,
        default=2,
        help="timed rounds of installs of each distribution, after one that fills pip's cache (2)",
    )
    parser.add_argument("--skip-check-scale", action="store_true", help="no check among 1k and 1M tokens")
    parser.add_argument("--skip-reference", action="store_true", help="no /nuxeo/… addresses against their routes' own")
    parser.add_argument("--skip-secret-scanning", action="store_true", help="no secret-scanning report of 1,000 tokens")
    parser.add_argument("--skip-backup", action="store_true", help="no backup of the bench's store and repository")
    parser.add_argument("--backup-rounds", type=int, default=2, help="rounds of each backup command (2)")
    parser.add_argument(
        "--skip-exchange", action="store_true", help="no exchange of CI ID tokens against a token check"
    )
    parser.add_argument(
        "--issue-14",
        action="store_true",
        help="only the parts issue 14's targets are measured by (routes, git, check among 1M)",
    )
    parser.add_argument("--client-runs", type=int, default=10, help="runs of each client command per round (10)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server and wrk to CPUs")
    parser.add_argument(
        "--write-docs", action="store_true", help=f"rewrite the figures section of {DOCS.relative_to(ROOT)}"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, stores)")
    args = parser.parse_args(argv)
    if args.issue_14:
        args.skip_check = args.skip_mixed = args.skip_client = args.skip_scale = args.skip_download = True
        args.skip_install = args.skip_reference = args.skip_secret_scanning = args.skip_backup = True
        args.skip_exchange = True
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - set(report.BACKEND_NAMES)
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    if args.git_rounds < 1:
        parser.error("--git-rounds must be at least 1")
    if args.install_rounds < 1:
        parser.error("--install-rounds must be at least 1")
    if args.write_docs and (
        args.skip_http
        or args.skip_check
        or args.skip_git
        or args.skip_push
        or args.skip_download
        or args.skip_routes
        or args.skip_mixed
        or args.skip_client
        or args.skip_scale
        or args.skip_check_scale
        or args.skip_shell
        or args.skip_install
        or args.skip_reference
        or args.skip_secret_scanning
        or args.skip_backup
        or args.skip_exchange
        or set(args.backends) != set(report.BACKEND_NAMES)
    ):
        parser.error("--write-docs needs the full run (every part, both stores)")
    return args


def main(argv: list[str]) -> int:
    started = time.monotonic()
    args = arguments(argv)
    # A SIGTERM (a CI timeout, `kill`) unwinds through the finally blocks that stop our processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pin = not args.no_pin and can_pin()
    if not args.no_pin and not pin:
        print("Note: fewer than 2 CPUs or no taskset: server and wrk are not pinned.")
    options = LoadOptions(
        duration=args.duration, warmup=args.warmup, rounds=args.rounds, connections=args.connections, pin=pin
    )
    info = report.machine()
    loads = {"before the run": idle_check()}  # other processes' CPU use, % of one CPU
    if loads["before the run"] >= report.NOISE_PERCENT:
        print(
            f"Warning: other processes are using {loads['before the run']:.0f}% of a CPU right now; "
            "the figures will be noisy."
        )
    timings, backends, probes = [], [], []
    mixed: list[MixedFigures] = []
    git: GitFigures | None = None
    push: PushFigures | None = None
    download: DownloadFigures | None = None
    client: ClientFigures | None = None
    install: InstallFigures | None = None
    scale: ScaleFigures | None = None
    check_scale: CheckScaleFigures | None = None
    route_scale: RouteScaleFigures | None = None
    reference: ReferenceFigures | None = None
    scanning: ScanningFigures | None = None
    backup: BackupFigures | None = None
    exchange: ExchangeFigures | None = None
    workdir = Path(tempfile.mkdtemp(prefix="tokensmith-bench-"))
    workdir.chmod(0o711)  # the postgres user must reach its cluster below
    try:
        if not args.skip_check:
            print(f"In-process token check on SQLite ({args.batches} batches of {args.calls:,} calls):")
            probes.append(cpu_speed_ms(SERVER_CPU, options.pin))
            with cpu_affinity(SERVER_CPU, options.pin), ForeignLoad() as check_load:
                timings = measure_token_check(
                    workdir / "inprocess", calls=args.calls, batches=args.batches, filler=args.filler
                )
            loads["token check"] = check_load.percent
            probes.append(cpu_speed_ms(SERVER_CPU, options.pin))
        if not args.skip_check_scale:
            print("Token check among 1,000 and 1,000,000 tokens presented at random, SQLite, in process:")
            with cpu_affinity(SERVER_CPU, options.pin), ForeignLoad() as scale_load:
                check_scale = measure_check_scale(workdir / "check-scale")
            loads["check among 1M"] = scale_load.percent
            if not args.skip_http:
                print(
                    f"Token route among 1,000 and 1,000,000 tokens presented at random, SQLite: wrk -t1 "
                    f"-c{options.connections} -d{options.duration}s, {options.rounds} alternating rounds"
                )
                route_scale = measure_route_scale(workdir / "route-scale", options)
        if not args.skip_http and not args.skip_routes:
            print(
                f"HTTP: wrk -t1 -c{options.connections} -d{options.duration}s, {options.rounds} rounds"
                + (f" (server on CPU {SERVER_CPU}, wrk on CPU {CLIENT_CPU})" if pin else "")
            )
            for backend in args.backends:
                if backend == "sqlite":
                    backends.append(measure_server("sqlite", workdir / "sqlite", None, options, floors=True))
                else:
                    try:
                        figures, info["postgresql"] = measure_postgres(workdir / "postgresql", options)
                    except PostgresUnavailable as error:
                        print(f"  PostgreSQL skipped: {error}")
                        continue
                    backends.append(figures)
        if not args.skip_http and not args.skip_mixed:
            print(
                f"Mixed load: wrk -t1 at {' and '.join(map(str, MIXED_CONNECTIONS))} connections, "
                f"-d{options.duration}s, {options.rounds} rounds"
            )
            for backend in args.backends:
                if backend == "sqlite":
                    mixed.append(measure_mixed("sqlite", workdir / "mixed-sqlite", None, options))
                    continue
                try:
                    mixed.append(measure_mixed_postgres(workdir / "mixed-postgresql", options))
                except PostgresUnavailable as error:
                    print(f"  PostgreSQL skipped: {error}")
        if not args.skip_client:
            print(
                f"Client start-up: {args.rounds} alternating rounds of {args.client_runs} runs of each command"
                + (f" (server on CPU {SERVER_CPU}, the client on CPU {CLIENT_CPU})" if pin else "")
            )
            client = measure_client_start(
                workdir / "client",
                options,
                rounds=max(args.rounds, 2),
                runs=args.client_runs,
                shell=not args.skip_shell,
            )
        if not args.skip_install:
            print(
                f"The distributions: pip install of each wheel into a fresh environment, {args.install_rounds} "
                "alternating rounds after one that fills pip's cache"
            )
            install = measure_install(workdir / "install", rounds=args.install_rounds)
        if not args.skip_http and not args.skip_scale and "postgresql" in args.backends:
            print(
                f"Scale-out on PostgreSQL: wrk -t1 -c{options.connections} -d{options.duration}s through nginx "
                f"to 1, 2 and 3 instances, {options.rounds} rounds (not pinned)"
            )
            try:
                scale = measure_scale_out(workdir / "scale-out", options)
            except PostgresUnavailable as error:
                print(f"  PostgreSQL skipped: {error}")
        if not args.skip_http and not args.skip_git:
            print(
                f"Git clone on SQLite: through the server against file://, {args.git_rounds} rounds"
                + (f" (server and upload-pack on CPU {SERVER_CPU}, git clone on CPU {CLIENT_CPU})" if pin else "")
            )
            git = measure_git_clone(workdir / "git", options, rounds=args.git_rounds)
        if not args.skip_http and not args.skip_push:
            print(f"Git push on SQLite: with push protection against without, {args.push_rounds} rounds")
            push = measure_git_push(workdir / "push", options, rounds=args.push_rounds)
            print(f"  {push.summary()}")
        if not args.skip_http and not args.skip_download:
            print("Download of a 100 MB artifact from /maven/studio/ (token) against nginx, 5 rounds")
            download = measure_download(workdir / "download", options)
        if not args.skip_http and not args.skip_reference:
            print(
                f"The reference's addresses against their routes' own, SQLite: wrk -t1 -c{options.connections} "
                f"-d{options.duration}s, {options.rounds} alternating rounds"
            )
            reference = measure_reference_routes(workdir / "reference", options)
        if not args.skip_http and not args.skip_secret_scanning:
            print("GitHub's secret-scanning endpoint on SQLite: a signed report of 1,000 live tokens, 3 rounds")
            scanning = measure_secret_scanning(workdir / "secret-scanning", options)
            print(f"  {scanning.summary()}")
        if not args.skip_backup:
            print("Backup of a million tokens on SQLite and the bench repository: create, verify, restore")
            backup = measure_backup(workdir / "backup", options, rounds=args.backup_rounds)
        if not args.skip_http and not args.skip_exchange:
            print(
                f"Workload identity, SQLite: the exchange of CI ID tokens against a token check, wrk -t1 "
                f"-c{options.connections} -d{options.duration}s, {options.rounds} alternating rounds"
            )
            exchange = measure_exchange(workdir / "exchange", options)
    except BenchError as error:
        print(f"\nBenchmark failed: {error}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    elapsed = time.monotonic() - started
    probes += [p for figures in backends for p in figures.cpu_probes_ms]
    probes += git.cpu_probes_ms if git else []
    probes += download.cpu_probes_ms if download else []
    figures = report.figures_markdown(
        info,
        options,
        backends,
        timings,
        elapsed,
        loads,
        probes,
        git,
        download,
        mixed,
        client,
        scale,
        check_scale,
        route_scale,
        install,
        reference,
        backup,
        exchange,
    )
    if scanning is not None:
        figures += "\n" + scanning.markdown()
    print("\n" + figures + "\n")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": info,
                "options": asdict(options),
                "elapsed_seconds": elapsed,
                "other_load_percent": loads,
                "cpu_probes_ms": probes,
                "http": [b.as_dict() for b in backends],
                "token_check": [asdict(t) for t in timings],
                "mixed": [m.as_dict() for m in mixed],
                "git_clone": git.as_dict() if git else None,
                "git_push": push.as_dict() if push else None,
                "download": download.as_dict() if download else None,
                "client": client.as_dict() if client else None,
                "install": install.as_dict() if install else None,
                "scale_out": scale.as_dict() if scale else None,
                "check_scale": check_scale.as_dict() if check_scale else None,
                "route_scale": route_scale.as_dict() if route_scale else None,
                "reference_routes": reference.as_dict() if reference else None,
                "secret_scanning": scanning.as_dict() if scanning else None,
                "backup": backup.as_dict() if backup else None,
                "workload_identity": exchange.as_dict() if exchange else None,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"Raw figures: {RESULTS.relative_to(ROOT)}")
    if args.write_docs:
        report.rewrite_docs(DOCS, figures)
        print(f"Rewrote the figures in {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
