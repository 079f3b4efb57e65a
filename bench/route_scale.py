"""The token route among 1,000 tokens and among 1,000,000, over HTTP: how much of the check's
growth with the store (bench/check_scale.py) a client of the server feels.

    PYTHONPATH=src:. .venv/bin/python -m bench.route_scale [--rounds 6 --duration 5]

Seeds the two stores as bench/check_scale.py does (the large one straight into the table, with
2,000 real tokens spread through it; the small one all real), starts ``tokensmith serve`` on
each, pinned to CPU 0 as ``make bench`` does, and drives ``GET /api/v1/me`` with wrk on CPU 1,
each request presenting one of the store's real tokens at random (random_tokens.lua; the
tokens sit in a file of the temporary directory, never printed). The two servers alternate
round by round, one under load at a time; each token's first use makes the server write its
last-used time, as it would. Prints each round, the medians, and the ratio of the small
store's requests/s to the large one's (how much slower among a million), and each server's
CPU per request. Both servers are stopped by their pids.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.check_scale import SIZES, seed
from bench.load import BenchServer, LoadOptions, clean_environment, http_get, options_of, run_wrk, wrk_parser

SCRIPT = Path(__file__).resolve().parent / "random_tokens.lua"


def start(workdir: Path, size: int, options: LoadOptions) -> tuple[BenchServer, Path]:
    data_dir = workdir / f"store-{size}"
    _settings, secrets = seed(data_dir, size)
    tokens_file = workdir / f"tokens-{size}"
    tokens_file.write_text("\n".join(secrets) + "\n")
    tokens_file.chmod(0o600)
    server = BenchServer(workdir / f"server-{size}", clean_environment(data_dir, None), options).start()
    status, _body = http_get(f"{server.base_url}/api/v1/me", {"Authorization": f"Bearer {secrets[0]}"})
    if status != 200:
        server.stop()
        raise SystemExit(f"a seeded token was refused ({status}) by the server on the store of {size:,}")
    return server, tokens_file


@dataclass
class RouteScaleFigures:
    sizes: tuple[int, ...]
    requests_per_second: dict[int, list[float]]  # by store size, one per round
    server_cpu_us: dict[int, list[float]]

    def median_rate(self, size: int) -> float:
        return statistics.median(self.requests_per_second[size])

    def median_cpu(self, size: int) -> float:
        return statistics.median(self.server_cpu_us[size])

    @property
    def ratio(self) -> float:
        """How much slower among the large store: the small one's requests/s over the large one's."""
        small, large = min(self.sizes), max(self.sizes)
        return self.median_rate(small) / self.median_rate(large)

    @property
    def round_ratios(self) -> list[float]:
        small, large = min(self.sizes), max(self.sizes)
        return [
            s / big for s, big in zip(self.requests_per_second[small], self.requests_per_second[large], strict=False)
        ]

    def summary(self) -> str:
        small, large = min(self.sizes), max(self.sizes)
        return (
            f"GET /api/v1/me with random tokens, medians of {len(self.round_ratios)} alternating rounds: among "
            f"{small:,} {self.median_rate(small):,.0f} req/s ({self.median_cpu(small):.0f} µs CPU/request), "
            f"among {large:,} {self.median_rate(large):,.0f} req/s ({self.median_cpu(large):.0f} µs CPU/request); "
            f"ratio {small:,} / {large:,}: {self.ratio:.3f} (rounds {min(self.round_ratios):.3f}–"
            f"{max(self.round_ratios):.3f})"
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def measure_route_scale(
    workdir: Path, options: LoadOptions, *, sizes: tuple[int, ...] = SIZES, log: Callable[[str], None] = print
) -> RouteScaleFigures:
    servers: dict[int, tuple[BenchServer, Path]] = {}
    figures = RouteScaleFigures(tuple(sizes), {size: [] for size in sizes}, {size: [] for size in sizes})
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for size in sizes:
            (workdir / f"server-{size}").mkdir()
            servers[size] = start(workdir, size, options)
            log(f"  the server on a store of {size:>9,} tokens is up")

        def measure(size: int, seconds: int) -> tuple[float, float]:
            server, tokens_file = servers[size]
            result = run_wrk(
                f"{size:,}",
                f"{server.base_url}/api/v1/me",
                options,
                seconds=seconds,
                headers={},
                server_pid=server.process.pid,
                script=SCRIPT,
                script_args=[str(tokens_file)],
            )
            return result.requests_per_second, result.server_cpu_us_per_request

        for size in sizes:  # warm-up: every token used once, its last-used time written
            measure(size, options.warmup + 2)
        for round_number in range(options.rounds):
            for size in sizes if round_number % 2 == 0 else sizes[::-1]:
                rate, us = measure(size, options.duration)
                figures.requests_per_second[size].append(rate)
                figures.server_cpu_us[size].append(us)
                log(
                    f"  round {round_number + 1}  among {size:>9,} tokens  {rate:8,.0f} req/s  "
                    f"server CPU {us:5.0f} µs/request"
                )
    finally:
        for server, _tokens in servers.values():
            server.stop()
    log(f"  {figures.summary()}")
    return figures


def main(argv: list[str]) -> int:
    options = options_of(wrk_parser(__doc__.split("\n\n")[0]).parse_args(argv))
    with tempfile.TemporaryDirectory(prefix="tokensmith-route-scale-") as directory:
        measure_route_scale(Path(directory), options)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
