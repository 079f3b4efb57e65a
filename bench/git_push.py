"""``git push`` of the bench repository (about 2,000 files, 20 MB) with push protection against
without it: what scanning a push's new objects for tokens costs.

Two real ``tokensmith serve`` (pinned to the server's core, one at a time busy), the same but for
``TOKENSMITH_PUSH_PROTECTION=false``; each round pushes the whole repository into a fresh project
of each, alternating which goes first. The figure is the ratio of the median push times; the
issue holds it to at most 1.3. Run alone: ``python -m bench.git_push --rounds 3``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.git_clone import GitClient, RepositoryShape, build_repository
from bench.load import BenchError, BenchServer, LoadOptions, clean_environment, pinned
from bench.machine import CLIENT_CPU, can_pin

USERNAME = "bench"
ON, OFF = "scanning", "not scanning"
LIMIT = 1.3


@dataclass
class PushFigures:
    repository: RepositoryShape
    rounds: int
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def median(self, mode: str) -> float:
        return statistics.median(self.seconds[mode])

    @property
    def ratio(self) -> float:
        return self.median(ON) / self.median(OFF)

    def as_dict(self) -> dict:
        return {
            "ratio": self.ratio,
            "limit": LIMIT,
            "rounds": self.rounds,
            "repository": asdict(self.repository),
            "seconds": self.seconds,
            "median_seconds": {mode: self.median(mode) for mode in self.seconds},
        }

    def summary(self) -> str:
        return (
            f"git push of {self.repository.files:,} files, {self.repository.bytes / 1e6:.1f} MB: "
            f"{self.median(ON):.2f} s scanning, {self.median(OFF):.2f} s not (medians of {self.rounds}); "
            f"ratio {self.ratio:.2f} (at most {LIMIT})"
        )


def measure_git_push(workdir: Path, options: LoadOptions, rounds: int = 3, log=print) -> PushFigures:
    workdir.mkdir(parents=True, exist_ok=True)
    servers: dict[str, BenchServer] = {}
    try:
        for mode, flag in ((ON, "true"), (OFF, "false")):
            folder = workdir / mode.replace(" ", "-")
            env = {**clean_environment(folder / "data", None), "TOKENSMITH_PUSH_PROTECTION": flag}
            folder.mkdir(parents=True, exist_ok=True)
            servers[mode] = BenchServer(folder, env, options).start()
        client = GitClient(workdir / "home", options)
        for server in servers.values():
            server.admin("users", "create", USERNAME, "--email", "bench@example.test")
            token = server.admin("tokens", "create", "--user", USERNAME, "--name", "bench push").strip()
            client.remember(server.base_url, USERNAME, token)
        source = workdir / "source"
        shape = build_repository(client, source)
        figures = PushFigures(shape, rounds, {ON: [], OFF: []})

        def push(mode: str, number: int) -> float:
            server = servers[mode]
            project = f"push-{number}"
            server.admin("projects", "create", project, "--group-id", "com.example.bench", "--owner", USERNAME)
            command = [
                *pinned(CLIENT_CPU, options),
                "git",
                "push",
                "--quiet",
                f"{server.base_url}/git/{project}.git",
                "HEAD:master",
            ]
            started = time.perf_counter()
            done = subprocess.run(command, cwd=source, env=client.env, capture_output=True, text=True, timeout=300)
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                raise BenchError(f"git push ({mode}) failed:\n{done.stderr[-2000:]}\n{server.console()}")
            return seconds

        for mode in (ON, OFF):  # warm-up: page cache, each server's first push
            push(mode, 0)
        for number in range(1, rounds + 1):
            for mode in (ON, OFF) if number % 2 else (OFF, ON):
                seconds = push(mode, number)
                figures.seconds[mode].append(seconds)
                log(f"  git push  round {number}  {mode:<13} {seconds * 1000:7.0f} ms")
        return figures
    finally:
        for server in servers.values():
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    options = LoadOptions(pin=not args.no_pin and can_pin())
    workdir = Path(tempfile.mkdtemp(prefix="tokensmith-bench-push-"))
    try:
        figures = measure_git_push(workdir, options, rounds=args.rounds)
    except BenchError as error:
        print(f"Benchmark failed: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(figures.summary())
    return 0 if figures.ratio <= LIMIT else 2


if __name__ == "__main__":
    sys.exit(main())
