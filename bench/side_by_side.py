"""The token route of two checkouts side by side: this one's against another's (main's, say).

    .venv/bin/python bench/side_by_side.py /path/to/other/checkout [--rounds 6 --duration 5]

Starts ``tokensmith serve`` of each (the other from its own ``.venv``, read only) on SQLite in a
temporary directory, pinned to CPU 0 as ``make bench`` does, mints a token in each with its own
admin command (this checkout's with limits: ``load.LIMITED``; a checkout without limits gets a
plain one), then drives ``GET /api/v1/me`` with wrk on CPU 1, alternating the two servers round
by round (the first in odd rounds, the other in even ones). Prints each round, the medians and
the ratio of the medians, and each round's own ratio. Both servers are stopped by their pids.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from bench.load import (  # noqa: E402
    LIMITED,
    BenchError,
    BenchServer,
    LoadOptions,
    clean_environment,
    http_get,
    options_of,
    run_wrk,
    tokensmith_command,
    wrk_parser,
)


def start(label: str, workdir: Path, tokensmith: list[str], options: LoadOptions) -> tuple[BenchServer, str]:
    workdir.mkdir(parents=True)
    server = BenchServer(workdir, clean_environment(workdir / "data", None), options, tokensmith).start()
    server.admin("users", "create", "bench", "--email", "bench@example.test")
    try:
        token = server.admin("tokens", "create", "--user", "bench", "--name", "bench", *LIMITED).strip()
        limited = True
    except BenchError:  # a checkout from before token limits
        token = server.admin("tokens", "create", "--user", "bench", "--name", "bench").strip()
        limited = False
    status, body = http_get(f"{server.base_url}/api/v1/me", {"Authorization": f"Bearer {token}"})
    if status != 200:
        raise BenchError(f"{label}: /api/v1/me answered {status}: {body[:200]!r}")
    print(f"{label}: {' '.join(tokensmith)} on port {server.port}, token {'with' if limited else 'without'} limits")
    return server, token


def main(argv: list[str]) -> int:
    parser = wrk_parser(__doc__.split("\n\n")[0])
    parser.add_argument("other", type=Path, help="the other checkout (its .venv/bin/tokensmith is run)")
    args = parser.parse_args(argv)
    options = options_of(args)
    other = [str(args.other.resolve() / ".venv" / "bin" / "tokensmith")]
    workdir = Path(tempfile.mkdtemp(prefix="tokensmith-side-by-side-"))
    servers: list[BenchServer] = []
    try:
        this, this_token = start("this checkout", workdir / "this", tokensmith_command(), options)
        servers.append(this)
        that, that_token = start("other checkout", workdir / "other", other, options)
        servers.append(that)
        pairs = {"this": (this, this_token), "other": (that, that_token)}
        rates: dict[str, list[float]] = {"this": [], "other": []}
        for name, (server, token) in pairs.items():  # warm-up
            run_wrk(
                name, f"{server.base_url}/api/v1/me", options, seconds=1, headers={"Authorization": f"Bearer {token}"}
            )
        for round_number in range(options.rounds):
            order = ["this", "other"] if round_number % 2 == 0 else ["other", "this"]
            for name in order:
                server, token = pairs[name]
                result = run_wrk(
                    name,
                    f"{server.base_url}/api/v1/me",
                    options,
                    seconds=options.duration,
                    headers={"Authorization": f"Bearer {token}"},
                    server_pid=server.process.pid,
                )
                rates[name].append(result.requests_per_second)
                print(
                    f"  round {round_number + 1}  {name:<5}  {result.requests_per_second:8.0f} req/s  "
                    f"p50 {result.p50_ms:5.2f} ms  server CPU {result.server_cpu_us_per_request:5.0f} µs/request"
                )
        medians = {name: statistics.median(values) for name, values in rates.items()}
        ratios = [t / o for t, o in zip(rates["this"], rates["other"], strict=False)]
        print(
            f"GET /api/v1/me, medians of {options.rounds} alternating rounds: this {medians['this']:,.0f} req/s, "
            f"other {medians['other']:,.0f} req/s; ratio this / other {medians['this'] / medians['other']:.3f} "
            f"(rounds {min(ratios):.3f}–{max(ratios):.3f})"
        )
    finally:
        for server in servers:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
