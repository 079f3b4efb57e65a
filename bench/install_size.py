"""What each distribution costs to install: tokensmith (the server, with the client) and
tokensmith-client (the client alone, for laptops and CI).

Both wheels are built once from this checkout (``pip wheel --no-deps``, as ``make dist`` does).
Then each is installed with pip into a fresh virtual environment of its own, as a person
would (``python -m venv``, then ``pip install WHEEL``, which resolves and installs its
dependencies and compiles them to bytecode), alternately: a first round whose installs fill
pip's cache (not timed, as a second install on a machine would not download again), then
``rounds`` timed rounds, the order reversed from one round to the next. *Install time*: the
``pip install`` alone, median of the timed rounds. *Size*: what the install added to the
environment's site-packages and bin, in bytes on disk; *distributions*: what ``pip list``
shows beyond a fresh environment's own.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.load import BenchError

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = {"tokensmith": ROOT, "tokensmith-client": ROOT / "distributions" / "client"}


@dataclass
class Installed:
    wheel_bytes: int
    installed_bytes: int
    distributions: list[str]
    seconds: list[float] = field(default_factory=list)

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)


@dataclass
class InstallFigures:
    installs: dict[str, Installed]
    rounds: int

    def as_dict(self) -> dict:
        return asdict(self)


def _pip(python: Path, *args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(python), "-m", "pip", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    if done.returncode != 0:
        raise BenchError(f"pip {' '.join(args[:2])} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def build_wheels(folder: Path) -> dict[str, Path]:
    """Both wheels, built from this checkout into ``folder``."""
    _pip(
        Path(sys.executable),
        "wheel",
        "--quiet",
        "--no-deps",
        "-w",
        str(folder),
        *(str(path) for path in DISTRIBUTIONS.values()),
    )
    return {name: next(folder.glob(f"{name.replace('-', '_')}-*.whl")) for name in DISTRIBUTIONS}


def _disk_bytes(folders: list[Path]) -> int:
    return sum(path.lstat().st_blocks * 512 for folder in folders for path in folder.rglob("*"))


def _listed(python: Path) -> set[str]:
    return {entry["name"].lower() for entry in json.loads(_pip(python, "list", "--format", "json"))}


def _install(wheel: Path, venv: Path) -> tuple[float, int, list[str]]:
    """A fresh environment, the wheel installed into it: seconds, bytes added, what came."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    folders = [venv / "lib", venv / "bin"]
    before_bytes, before = _disk_bytes(folders), _listed(python)
    started = time.perf_counter()
    _pip(python, "install", "--quiet", str(wheel))
    seconds = time.perf_counter() - started
    return seconds, _disk_bytes(folders) - before_bytes, sorted(_listed(python) - before)


def measure_install(workdir: Path, *, rounds: int = 2) -> InstallFigures:
    workdir.mkdir(parents=True)
    wheels = build_wheels(workdir / "dist")
    installs: dict[str, Installed] = {}
    names = list(wheels)
    for number in range(rounds + 1):  # round 0 fills pip's cache
        for name in names if number % 2 == 0 else names[::-1]:
            seconds, added, distributions = _install(wheels[name], workdir / name)
            shutil.rmtree(workdir / name)
            if name not in installs:
                installs[name] = Installed(wheels[name].stat().st_size, added, distributions)
            elif number > 0:
                installs[name].seconds.append(seconds)
    return InstallFigures(installs, rounds)
