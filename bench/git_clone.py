"""``git clone`` through the server against ``git clone file://`` of the same bare repository.

A repository of about 2,000 files and 20 MB is built in the bench's temporary directory,
pushed with real ``git push`` over HTTP into a project of a real ``tokensmith serve`` (pinned
to its core, as for wrk), then cloned alternately from the server and straight from the
server's own bare repository with ``file://``, into /dev/shm (the disk here makes clone times
jump). Every process started is stopped by its own process id; every clone is deleted.
"""

from __future__ import annotations

import base64
import http.client
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.load import BenchError, BenchServer, LoadOptions, clean_environment, pinned
from bench.machine import CLIENT_CPU, CLOCK_TICKS, SERVER_CPU, ForeignLoad, cpu_affinity, cpu_speed_ms
from tests.support.nginx import FcgiWrap, Nginx, NginxUnavailable, htpasswd_line

PROJECT = "bench"
USERNAME = "bench"
FILES = 2000
DIRECTORIES = 40  # 8 modules of 5 packages each
TARGET_BYTES = 20_000_000
COMMITS = 2  # each adds half of the directories
HTTP, FILE = "http", "file"
LABELS = {HTTP: "git clone http://…/git/bench.git (server)", FILE: "git clone file:// (same bare repository)"}
CLONE_ROOT = Path("/dev/shm")
_WORDS_SEED = 20261128


# --- the repository ------------------------------------------------------------------------------


@dataclass
class RepositoryShape:
    files: int
    directories: int
    commits: int
    bytes: int  # of the files checked out
    binary_files: int  # random bytes: do not compress at all
    pack_bytes: int = 0  # of the server's bare repository after the push
    build_seconds: float = 0.0
    push_seconds: float = 0.0


def _vocabulary(rng: random.Random) -> list[str]:
    letters = "etaoinshrdlucmfwypvbgkqjxz"
    weights = [12, 9, 8, 8, 7, 7, 6, 6, 4, 4, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    return ["".join(rng.choices(letters, weights, k=rng.randint(2, 10))) for _ in range(5000)]


def _text(rng: random.Random, words: list[str], size: int) -> bytes:
    """Pseudo-text of about ``size`` bytes: lines of words, which zlib packs to about a half."""
    out, length = [], 0
    while length < size:
        line = " ".join(rng.choices(words, k=rng.randint(4, 14))) + "\n"
        out.append(line)
        length += len(line)
    return "".join(out).encode()[:size]


def write_tree(work: Path, seed: int = _WORDS_SEED) -> RepositoryShape:
    """The files: every other one random bytes, the rest pseudo-text; sizes vary around 10 KB."""
    rng = random.Random(seed)
    words = _vocabulary(rng)
    mean = TARGET_BYTES // FILES
    total = binary = 0
    for number in range(FILES):
        directory = DIRECTORIES * number // FILES
        folder = work / f"module-{directory // 5}" / f"package-{directory % 5}"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(mean // 5, mean * 9 // 5)
        if number % 2:
            (folder / f"data-{number:04d}.bin").write_bytes(rng.randbytes(size))
            binary += 1
        else:
            (folder / f"notes-{number:04d}.txt").write_bytes(_text(rng, words, size))
        total += size
    return RepositoryShape(files=FILES, directories=DIRECTORIES, commits=COMMITS, bytes=total, binary_files=binary)


class GitClient:
    """git as a person runs it: a HOME of its own, no system config, the `store` credential
    helper; the token goes to the helper on stdin, never on a command line or in a URL."""

    def __init__(self, home: Path, options: LoadOptions) -> None:
        self.home = home
        self.options = options
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Bench",
            "GIT_AUTHOR_EMAIL": "bench@example.test",
            "GIT_COMMITTER_NAME": "Bench",
            "GIT_COMMITTER_EMAIL": "bench@example.test",
        }

    def run(self, *args: str, cwd: Path | None = None, input: str | None = None, timeout: float = 120) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd or self.home,
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise BenchError(f"git {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done.stdout

    def remember(self, base_url: str, username: str, token: str) -> None:
        store = self.home / ".git-credentials"
        store.touch(mode=0o600)
        self.run("config", "--global", "credential.helper", f"store --file={store}")
        self.run(
            "credential",
            "approve",
            input=(
                f"protocol=http\nhost={urllib.parse.urlsplit(base_url).netloc}\n"
                f"username={username}\npassword={token}\n\n"
            ),
        )

    def clone_command(self, source: str, destination: Path) -> list[str]:
        """A normal clone (full history, checkout), the client on its own CPU.

        Through the server, the serving side (uvicorn, upload-pack, pack-objects)
        runs on the server's CPU. Over ``file://`` git starts ``git-upload-pack`` itself, which
        would then share the client's CPU: it is started on the server's CPU instead, so that
        both clones have one CPU serving and one cloning, and differ only by the server.
        """
        command = [*pinned(CLIENT_CPU, self.options), "git", "clone", "--quiet"]
        if self.options.pin and source.startswith("file://"):
            command.append(f"--upload-pack=taskset -c {SERVER_CPU} git-upload-pack")
        return [*command, source, str(destination)]


def build_repository(client: GitClient, work: Path) -> RepositoryShape:
    """The bench repository in ``work``: its files, in two commits."""
    started = time.monotonic()
    shape = write_tree(work)
    client.run("init", "--quiet", "--initial-branch=master", str(work))
    modules = sorted(p.name for p in work.iterdir() if p.name.startswith("module-"))
    half = len(modules) // 2
    for number, part in enumerate((modules[:half], modules[half:]), 1):
        client.run("add", "--", *part, cwd=work)
        client.run("commit", "--quiet", "-m", f"Bench repository, part {number} of {COMMITS}", cwd=work)
    shape.build_seconds = time.monotonic() - started
    return shape


def build_and_push(client: GitClient, work: Path, url: str) -> RepositoryShape:
    shape = build_repository(client, work)
    started = time.monotonic()
    client.run("push", "--quiet", url, "HEAD:master", cwd=work, timeout=300)
    shape.push_seconds = time.monotonic() - started
    return shape


# --- the timed clones ----------------------------------------------------------------------------


def _cpu_split(pid: int) -> tuple[float, float]:
    """A process's own CPU seconds, and its exited children's (the git backends it reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0, 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS, (int(fields[13]) + int(fields[14])) / CLOCK_TICKS


@dataclass
class CloneRun:
    source: str
    seconds: float
    server_python_ms: float = 0.0  # the server process itself (uvicorn, FastAPI, the streaming)
    server_git_ms: float = 0.0  # the git processes it ran (upload-pack, pack-objects)
    foreign_cpu_percent: float = 0.0
    cpu_probe_ms: float = 0.0
    warmup: bool = False


@dataclass
class CloneFigures:
    source: str
    label: str
    median_seconds: float
    min_seconds: float
    max_seconds: float
    server_python_ms: float
    server_git_ms: float
    foreign_cpu_percent: float  # the worst run's


FETCHES_PER_ROUND = 5
FIRST_BYTES_PER_ROUND = 10


@dataclass
class FetchFigures:
    """No-op ``git fetch`` through the server and through ``git http-backend`` (nginx +
    fcgiwrap + Basic authentication: the floor), and the time to the first byte of ``info/refs``."""

    server_ms: list[float] = field(default_factory=list)
    floor_ms: list[float] = field(default_factory=list)
    round_ratios: list[float] = field(default_factory=list)
    refused_first_byte_ms: list[float] = field(default_factory=list)  # no credentials: the 401
    authenticated_first_byte_ms: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(self.server_ms) / statistics.median(self.floor_ms)

    @property
    def first_byte_gap_ms(self) -> float:
        return statistics.median(self.authenticated_first_byte_ms) - statistics.median(self.refused_first_byte_ms)

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "first_byte_gap_ms": self.first_byte_gap_ms}


@dataclass
class GitFigures:
    backend: str
    repository: RepositoryShape
    rounds: int
    http: CloneFigures
    file: CloneFigures
    runs: list[CloneRun] = field(default_factory=list)
    fetch: FetchFigures | None = None

    @property
    def ratio(self) -> float:
        return self.http.median_seconds / self.file.median_seconds

    @property
    def round_ratios(self) -> list[float]:
        timed = [r for r in self.runs if not r.warmup]
        http = [r.seconds for r in timed if r.source == HTTP]
        file = [r.seconds for r in timed if r.source == FILE]
        return [h / f for h, f in zip(http, file, strict=False)]

    @property
    def cpu_probes_ms(self) -> list[float]:
        return [r.cpu_probe_ms for r in self.runs if not r.warmup]

    def as_dict(self) -> dict:
        return {
            "backend": self.backend,
            "ratio": self.ratio,
            "round_ratios": self.round_ratios,
            "rounds": self.rounds,
            "repository": asdict(self.repository),
            "http": asdict(self.http),
            "file": asdict(self.file),
            "runs": [asdict(r) for r in self.runs],
            "fetch": self.fetch.as_dict() if self.fetch else None,
        }


def _summary(source: str, runs: list[CloneRun]) -> CloneFigures:
    seconds = [r.seconds for r in runs]
    return CloneFigures(
        source=source,
        label=LABELS[source],
        median_seconds=statistics.median(seconds),
        min_seconds=min(seconds),
        max_seconds=max(seconds),
        server_python_ms=statistics.median(r.server_python_ms for r in runs),
        server_git_ms=statistics.median(r.server_git_ms for r in runs),
        foreign_cpu_percent=max(r.foreign_cpu_percent for r in runs),
    )


def count_files(root: Path) -> int:
    return sum(
        len(files) for folder, _dirs, files in os.walk(root) if ".git" not in Path(folder).relative_to(root).parts
    )


def measure_git_clone(
    workdir: Path, options: LoadOptions, rounds: int = 5, log: Callable[[str], None] = print
) -> GitFigures:
    """Serve a project from SQLite, push the bench repository into it, then time clones."""
    backend = "sqlite"  # the store only answers the auth check: one store is enough
    workdir.mkdir(parents=True, exist_ok=True)
    env = clean_environment(workdir / "data", None)
    server = BenchServer(workdir, env, options)
    clones = Path(tempfile.mkdtemp(prefix="tokensmith-bench-clones-", dir=CLONE_ROOT if CLONE_ROOT.is_dir() else None))
    runs: list[CloneRun] = []
    fetch = None
    try:
        server.start()
        server.admin("users", "create", USERNAME, "--email", "bench@example.test")
        token = server.admin("tokens", "create", "--user", USERNAME, "--name", "bench git").strip()
        server.admin("projects", "create", PROJECT, "--group-id", "com.example.bench", "--owner", USERNAME)
        bare = (workdir / "data" / "git" / f"{PROJECT}.git").resolve()
        if not (bare / "HEAD").is_file():
            raise BenchError(f"`tokensmith projects create` made no bare repository at {bare}")
        sources = {HTTP: f"{server.base_url}/git/{PROJECT}.git", FILE: bare.as_uri()}

        client = GitClient(workdir / "home", options)
        client.remember(server.base_url, USERNAME, token)
        shape = build_and_push(client, workdir / "source", sources[HTTP])
        head = client.run("rev-parse", "HEAD", cwd=workdir / "source").strip()
        shape.pack_bytes = sum(p.stat().st_size for p in (bare / "objects").rglob("*") if p.is_file())
        log(
            f"  repository: {shape.files:,} files in {shape.directories} directories, "
            f"{shape.bytes / 1e6:.1f} MB ({shape.binary_files:,} of random bytes), {shape.commits} commits; "
            f"{shape.pack_bytes / 1e6:.1f} MB in the server's bare repository; "
            f"built in {shape.build_seconds:.1f} s, pushed over HTTP in {shape.push_seconds:.1f} s"
        )

        def clone(source: str, number: int, *, timed: bool) -> CloneRun:
            destination = clones / f"{source}-{number}"
            probe = cpu_speed_ms(SERVER_CPU, options.pin) if timed else 0.0
            python_before, git_before = _cpu_split(server.process.pid)
            with ForeignLoad(lambda: [server.process.pid]) as load:
                started = time.perf_counter()
                done = subprocess.run(
                    client.clone_command(sources[source], destination),
                    env=client.env,
                    cwd=clones,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                seconds = time.perf_counter() - started
            python_after, git_after = _cpu_split(server.process.pid)
            try:
                if done.returncode != 0:
                    raise BenchError(
                        f"git clone {sources[source]} failed ({done.returncode}):\n{done.stderr[-3000:]}"
                        + (f"\nServer log:\n{server.console()}" if source == HTTP else "")
                    )
                if server.process.poll() is not None:
                    raise BenchError(f"The server died during a clone:\n{server.console()}")
                cloned = client.run("rev-parse", "HEAD", cwd=destination).strip()
                if cloned != head:
                    raise BenchError(f"The clone from {source} is at {cloned}, the push was {head}")
                if not timed and count_files(destination) != shape.files:
                    raise BenchError(
                        f"The clone from {source} checked out {count_files(destination)} files, not {shape.files}"
                    )
            finally:
                shutil.rmtree(destination, ignore_errors=True)
            return CloneRun(
                source,
                seconds,
                (python_after - python_before) * 1000,
                (git_after - git_before) * 1000,
                load.percent,
                probe,
                warmup=not timed,
            )

        for source in (FILE, HTTP):  # one warm-up each: page cache, the server's first request
            runs.append(clone(source, 0, timed=False))
        order = [FILE, HTTP]
        for round_number in range(rounds):
            for source in order if round_number % 2 == 0 else order[::-1]:
                run = clone(source, round_number + 1, timed=True)
                runs.append(run)
                server_cpu = (
                    f"  server CPU {run.server_python_ms:4.0f} ms Python + {run.server_git_ms:4.0f} ms git"
                    if source == HTTP
                    else ""
                )
                log(
                    f"  git clone  round {round_number + 1}  {source:<5} {run.seconds * 1000:7.0f} ms"
                    f"  other load {run.foreign_cpu_percent:3.0f}%  CPU probe {run.cpu_probe_ms:4.1f} ms{server_cpu}"
                )
        fetch = measure_fetches(workdir, client, server, token, sources[HTTP], clones, options, rounds, log)
        warnings = [
            line
            for line in server.log_path.read_text(errors="replace").splitlines()
            if "git backend" in line or "Traceback" in line
        ]
        if warnings:
            raise BenchError("The server logged errors during the clones:\n" + "\n".join(warnings[-20:]))
    finally:
        server.stop()
        shutil.rmtree(clones, ignore_errors=True)
    timed = [r for r in runs if not r.warmup]
    return GitFigures(
        backend,
        shape,
        rounds,
        _summary(HTTP, [r for r in timed if r.source == HTTP]),
        _summary(FILE, [r for r in timed if r.source == FILE]),
        runs,
        fetch,
    )


# --- no-op fetches, and the first byte of info/refs ----------------------------------------------


def measure_fetches(
    workdir: Path,
    client: GitClient,
    server: BenchServer,
    token: str,
    url: str,
    clones: Path,
    options: LoadOptions,
    rounds: int,
    log: Callable[[str], None],
) -> FetchFigures:
    """A ``git fetch`` that finds nothing new, through the server and through ``git
    http-backend`` under nginx + fcgiwrap, with HTTP Basic authentication (an htpasswd file with
    the same username and token), on the same bare repository (both on the server's CPU, git on
    the client's, git's store helper giving both the credentials after their 401), alternating;
    then the first byte of ``info/refs`` with and without credentials."""
    target = clones / "fetch-target"
    client.run("clone", "--quiet", "--no-checkout", url, str(target), timeout=300)
    users = workdir / "cgi" / "htpasswd"
    users.parent.mkdir(parents=True, exist_ok=True)
    users.write_text(htpasswd_line(USERNAME, token))
    fcgi = FcgiWrap(workdir / "cgi", prefix=pinned(SERVER_CPU, options))
    nginx = Nginx(workdir / "cgi", prefix=pinned(SERVER_CPU, options), log_requests=False)
    figures = FetchFigures()
    try:
        fcgi.start()
        nginx.git_http_backend((workdir / "data" / "git").resolve(), fcgi.socket, users).start()
        client.remember(nginx.url, USERNAME, token)  # git's store helper answers for both servers alike
        sources = {"server": url, "floor": f"{nginx.url}/git/{PROJECT}.git"}
        command = {
            name: [*pinned(CLIENT_CPU, options), "git", "-C", str(target), "fetch", "--quiet", source]
            for name, source in sources.items()
        }

        def fetch(name: str) -> float:
            started = time.perf_counter()
            done = subprocess.run(command[name], env=client.env, capture_output=True, text=True, timeout=60)
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                raise BenchError(
                    f"git fetch from the {name} failed ({done.returncode}):\n{done.stderr[-2000:]}"
                    + (f"\nnginx: {nginx.errors()}" if name == "floor" else "")
                )
            return seconds * 1000

        for name in sources:  # warm-up, and a check that both work
            fetch(name)
        for round_number in range(rounds):
            medians = {}
            for name in ["server", "floor"] if round_number % 2 == 0 else ["floor", "server"]:
                times = [fetch(name) for _ in range(FETCHES_PER_ROUND)]
                (figures.server_ms if name == "server" else figures.floor_ms).extend(times)
                medians[name] = statistics.median(times)
            figures.round_ratios.append(medians["server"] / medians["floor"])
            log(
                f"  git fetch  round {round_number + 1}  no-op: server {medians['server']:5.1f} ms, "
                f"git http-backend {medians['floor']:5.1f} ms"
            )
        with cpu_affinity(CLIENT_CPU, options.pin):
            first_bytes(server.port, token, figures, rounds)
        log(
            f"  info/refs  first byte: refused (401) {statistics.median(figures.refused_first_byte_ms):.2f} ms, "
            f"authenticated {statistics.median(figures.authenticated_first_byte_ms):.2f} ms"
        )
    except NginxUnavailable as error:
        raise BenchError(f"The git http-backend floor did not start: {error}") from error
    finally:
        nginx.stop()
        fcgi.stop()
    return figures


def first_bytes(port: int, token: str, figures: FetchFigures, rounds: int) -> None:
    """Milliseconds to the first byte of ``GET info/refs``, refused (no credentials) and
    authenticated, alternating, each on a new connection as git makes it."""
    credentials = "Basic " + base64.b64encode(f"{USERNAME}:{token}".encode()).decode()
    kinds = {"refused": ({}, 401), "authenticated": ({"Authorization": credentials, "Git-Protocol": "version=2"}, 200)}
    for _ in range(rounds * FIRST_BYTES_PER_ROUND):
        for kind, (headers, expected) in kinds.items():
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                started = time.perf_counter()
                connection.request("GET", f"/git/{PROJECT}.git/info/refs?service=git-upload-pack", headers=headers)
                answer = connection.getresponse()
                answer.read(1)
                milliseconds = (time.perf_counter() - started) * 1000
                answer.read()
            finally:
                connection.close()
            if answer.status != expected:
                raise BenchError(f"info/refs ({kind}) answered {answer.status}, not {expected}")
            getattr(figures, f"{kind}_first_byte_ms").append(milliseconds)
