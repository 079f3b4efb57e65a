"""A 100 MB artifact from the Studio Maven repository, against the same file from nginx.

Both servers run on CPU 0, one at a time; curl downloads on CPU 1 into /dev/null, with the
token from a netrc file (never on a command line). Alternating rounds, medians, a ratio.
"""

from __future__ import annotations

import os
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.load import BenchError, BenchServer, LoadOptions, clean_environment, pinned
from bench.machine import CLIENT_CPU, SERVER_CPU, cpu_speed_ms
from tests.support.nginx import Nginx, NginxUnavailable
from tokensmith.config import load_settings
from tokensmith.projects import maven_repository
from tokensmith.projects.maven_repository import Coordinates
from tokensmith.store.database import create_store_engine, session_factory, unit_of_work

TARGET_RATIO = 0.7
SIZE = 100 * 1024 * 1024
GROUP, PROJECT, VERSION = "com.example.bench", "bench-download", "1.0.0"


@dataclass
class DownloadFigures:
    size_bytes: int
    tokensmith_mb_s: list[float] = field(default_factory=list)
    nginx_mb_s: list[float] = field(default_factory=list)
    cpu_probes_ms: list[float] = field(default_factory=list)

    @property
    def tokensmith(self) -> float:
        return statistics.median(self.tokensmith_mb_s)

    @property
    def nginx(self) -> float:
        return statistics.median(self.nginx_mb_s)

    @property
    def ratio(self) -> float:
        return self.tokensmith / self.nginx

    def as_dict(self) -> dict:
        return {**asdict(self), "tokensmith_median": self.tokensmith, "nginx_median": self.nginx, "ratio": self.ratio}


def download_mb_s(url: str, options: LoadOptions, netrc: Path | None = None) -> float:
    credentials = ["--netrc-file", str(netrc)] if netrc is not None else []
    command = [
        *pinned(CLIENT_CPU, options),
        "curl",
        "-sS",
        "--fail",
        *credentials,
        "-o",
        "/dev/null",
        "-w",
        "%{size_download} %{time_total}",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise BenchError(f"curl {url} failed: {done.stderr.strip()}")
    size, seconds = done.stdout.split()
    if int(size) != SIZE:
        raise BenchError(f"downloaded {size} bytes from {url}, expected {SIZE}")
    return SIZE / 1e6 / float(seconds)


def measure_download(workdir: Path, options: LoadOptions, rounds: int = 5, log=print) -> DownloadFigures:
    data_dir = workdir / "data"
    server = BenchServer(workdir, clean_environment(data_dir, None), options)
    workdir.mkdir(parents=True, exist_ok=True)
    server.start()
    nginx = None
    try:
        server.admin("users", "create", "downloader", "--email", "dl@example.test")
        server.admin("projects", "create", PROJECT, "--group-id", GROUP, "--owner", "downloader")
        token = server.admin("tokens", "create", "--user", "downloader", "--name", "download").strip()
        coordinates = Coordinates(GROUP, PROJECT, VERSION)
        log(f"  publishing a {SIZE // (1024 * 1024)} MB artifact ...")
        engine = create_store_engine(load_settings(server.env))
        try:
            with unit_of_work(session_factory(engine)) as session:
                maven_repository.publish(
                    session,
                    maven_repository.studio_root(data_dir),
                    coordinates,
                    {"jar": os.urandom(SIZE), "pom": maven_repository.pom(coordinates)},
                )
        finally:
            engine.dispose()
        relative = f"{GROUP.replace('.', '/')}/{PROJECT}/{VERSION}/{coordinates.file_name('jar')}"
        netrc = workdir / "netrc"
        netrc.write_text(f"machine 127.0.0.1 login downloader password {token}\n")
        netrc.chmod(0o600)
        try:
            nginx = (
                Nginx(workdir / "nginx", prefix=pinned(SERVER_CPU, options), log_requests=False)
                .serve_folder(maven_repository.studio_root(data_dir).resolve())
                .start()
            )
        except NginxUnavailable as error:
            raise BenchError(str(error)) from error
        ours = f"{server.base_url}/maven/studio/{relative}"
        theirs = f"http://127.0.0.1:{nginx.port}/{relative}"
        download_mb_s(ours, options, netrc), download_mb_s(theirs, options)  # warm the page cache
        figures = DownloadFigures(SIZE)
        for number in range(rounds):
            figures.cpu_probes_ms.append(cpu_speed_ms(SERVER_CPU))
            order = [("tokensmith", ours, netrc), ("nginx", theirs, None)]
            for name, url, credentials in order if number % 2 == 0 else reversed(order):
                speed = download_mb_s(url, options, credentials)
                getattr(figures, f"{name}_mb_s").append(speed)
                log(f"  download round {number + 1}  {name:<10} {speed:8.0f} MB/s")
        return figures
    finally:
        if nginx is not None:
            nginx.stop()
        server.stop()
