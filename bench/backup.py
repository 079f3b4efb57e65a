"""``tokensmith backup`` of the benchmark's store and repository: how long, and how large.

The store: a million tokens on SQLite, seeded as bench/check_scale.py seeds its large store;
the repository: the bench's 2,000 files and 20 MB in two commits (bench/git_clone.py), pushed
into a project's bare repository and released once (a jar of the tree, published at both of
the release's coordinates). Then, as a person runs them (the server's shell, a process each):
``backup create`` plain and with a passphrase, alternating over the rounds; ``backup verify``;
``backup restore`` into an empty data dir. Seconds of each (wall clock; medians over the rounds),
and the file's size against the data dir's. Run alone: ``python -m bench.backup --rounds 2``.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.check_scale import seed
from bench.git_clone import GitClient, RepositoryShape, build_repository
from bench.load import BenchError, LoadOptions, clean_environment
from tokensmith.accounts import users
from tokensmith.config import Settings
from tokensmith.projects import catalog, git_repositories, releases
from tokensmith.store.database import create_store_engine, session_factory, unit_of_work

TOKENS = 1_000_000
PASSPHRASE = "the benchmark's backup passphrase"
STEPS = ("create", "create, encrypted", "verify", "restore")


@dataclass
class BackupFigures:
    tokens: int
    store_bytes: int
    data_dir_bytes: int
    repository: RepositoryShape
    rounds: int
    seconds: dict[str, list[float]] = field(default_factory=dict)
    file_bytes: dict[str, int] = field(default_factory=dict)  # plain, encrypted

    def median(self, step: str) -> float:
        return statistics.median(self.seconds[step])

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "median_seconds": {step: self.median(step) for step in self.seconds},
        }

    def summary(self) -> str:
        plain, encrypted = self.file_bytes["plain"], self.file_bytes["encrypted"]
        return (
            f"backup of {self.tokens:,} tokens ({self.store_bytes / 1e6:.0f} MB store) and a "
            f"{self.repository.bytes / 1e6:.0f} MB repository ({self.data_dir_bytes / 1e6:.0f} MB data dir): create "
            f"{self.median('create'):.1f} s, {plain / 1e6:.0f} MB ({plain / self.data_dir_bytes:.0%} of the data dir); "
            f"encrypted {self.median('create, encrypted'):.1f} s, {encrypted / 1e6:.0f} MB; verify "
            f"{self.median('verify'):.1f} s, restore {self.median('restore'):.1f} s"
        )


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _deployment(workdir: Path, tokens: int, options: LoadOptions, log) -> tuple[Settings, RepositoryShape, float]:
    started = time.monotonic()
    settings, _secrets = seed(workdir / "data", tokens)
    with contextlib.closing(sqlite3.connect(settings.sqlite_path)) as store:
        store.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # one file, as a server's checkpoints leave it
    engine = create_store_engine(settings)
    try:
        with unit_of_work(session_factory(engine)) as session:
            owner = users.get_user(session, "bench")
            catalog.create_project(session, settings.data_dir, "bench", "com.example.bench", owner.id, actor="bench")
        client = GitClient(workdir / "home", options)
        shape = build_repository(client, workdir / "work")
        bare = git_repositories.repository_path(settings.data_dir, "bench")
        client.run("push", "--quiet", f"file://{bare}", "HEAD:master", cwd=workdir / "work", timeout=600)
        with unit_of_work(session_factory(engine)) as session:
            owner = users.get_user(session, "bench")
            releases.release(
                session, settings.data_dir, "bench", owner.id, revision="master", version_name="1.0.0", actor="bench"
            )
        with contextlib.closing(sqlite3.connect(settings.sqlite_path)) as store:
            store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    shutil.rmtree(workdir / "work", ignore_errors=True)
    seconds = time.monotonic() - started
    log(f"  seeded {tokens:,} tokens, pushed and released the repository in {seconds:.0f} s")
    return settings, shape, seconds


def _timed(command: list[str], env: dict[str, str], stdin: str | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run(command, env=env, input=stdin, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command[2:5])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.monotonic() - started


def measure_backup(
    workdir: Path, options: LoadOptions, rounds: int = 2, tokens: int = TOKENS, log=print
) -> BackupFigures:
    workdir.mkdir(parents=True, exist_ok=True)
    settings, shape, _seeded = _deployment(workdir, tokens, options, log)
    env = clean_environment(settings.data_dir, None)
    tokensmith = [sys.executable, "-m", "tokensmith"]
    (workdir / "passphrase").write_text(PASSPHRASE + "\n")
    figures = BackupFigures(
        tokens=tokens,
        store_bytes=(settings.data_dir / "tokensmith.db").stat().st_size,
        data_dir_bytes=_folder_bytes(settings.data_dir),
        repository=shape,
        rounds=rounds,
        seconds={step: [] for step in STEPS},
    )
    backups = workdir / "backups"
    backups.mkdir()
    plain, encrypted = backups / "plain.tsbackup", backups / "encrypted.tsbackup"
    for number in range(rounds):
        for target in (plain, encrypted) if number % 2 == 0 else (encrypted, plain):  # alternating
            target.unlink(missing_ok=True)  # a backup never replaces a file
            sealed = ["--passphrase-file", str(workdir / "passphrase")] if target is encrypted else []
            took = _timed([*tokensmith, "backup", "create", str(target), *sealed], env)
            figures.seconds["create, encrypted" if target is encrypted else "create"].append(took)
            figures.file_bytes[target.stem] = target.stat().st_size
    encrypted.unlink()
    for number in range(rounds):
        figures.seconds["verify"].append(_timed([*tokensmith, "backup", "verify", str(plain)], env))
        restored = workdir / f"restored-{number}"
        restore_env = {**env, "TOKENSMITH_DATA_DIR": str(restored)}
        figures.seconds["restore"].append(_timed([*tokensmith, "backup", "restore", str(plain)], restore_env))
        shutil.rmtree(restored)
    log(f"  {figures.summary()}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=TOKENS)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tokensmith-bench-backup-"))
    try:
        measure_backup(workdir, LoadOptions(pin=False), rounds=args.rounds, tokens=args.tokens)
    except BenchError as error:
        print(f"Benchmark failed: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
