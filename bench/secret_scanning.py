"""GitHub's secret-scanning partner endpoint with a report of 1,000 live tokens, on SQLite.

    PYTHONPATH=src:. .venv/bin/python -m bench.secret_scanning [--rounds 3]

One ``tokensmith serve`` on SQLite, pinned to CPU 0 as ``make bench`` does, whose
TOKENSMITH_SECRET_SCANNING_KEYS_URL is a key server of the bench's own on loopback (the tests'
tests/support/secret_scanner.py); mail on, to an SMTP server that is not listening (the notices
are queued in the report's transaction, as in production, and their delivery is another
thread's). Each round makes 1,000 new live tokens of ten owners in the store, then times one
signed ``POST /api/v1/secret-scanning/github`` naming them all: checked, looked up, every one
revoked and audited, a mail queued per owner; then the same report again (each token found,
nothing left to revoke). The target: the first at most 1 s. The server is stopped by its pid.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.load import BenchError, BenchServer, LoadOptions, clean_environment, options_of, wrk_parser
from tests.support.ports import free_port
from tests.support.secret_scanner import KeyServer, Scanner, SigningKey, report

TOKENS = 1000
OWNERS = 10
TARGET_SECONDS = 1.0


@dataclass
class ScanningFigures:
    seconds: list[float] = field(default_factory=list)  # each round's report of 1,000 live tokens
    replay_seconds: list[float] = field(default_factory=list)  # the same report again
    body_bytes: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def met(self) -> bool:
        return self.median <= TARGET_SECONDS

    def as_dict(self) -> dict:
        return {**asdict(self), "median_seconds": self.median, "target_seconds": TARGET_SECONDS}

    def summary(self) -> str:
        replay = statistics.median(self.replay_seconds)
        return (
            f"a report of {TOKENS:,} live tokens ({self.body_bytes / 1024:.0f} KiB) answered in "
            f"{self.median * 1000:.0f} ms (median of {len(self.seconds)}; rounds: "
            f"{', '.join(f'{s * 1000:.0f}' for s in self.seconds)} ms), target ≤ {TARGET_SECONDS:.0f} s: "
            f"{'met' if self.met() else 'MISSED'}; the same report again: {replay * 1000:.0f} ms"
        )

    def markdown(self) -> str:
        rounds = ", ".join(f"{s * 1000:.0f}" for s in self.seconds)
        replays = ", ".join(f"{s * 1000:.0f}" for s in self.replay_seconds)
        intro = (
            f"`POST /api/v1/secret-scanning/github` with a signed report of {TOKENS:,} live tokens of "
            f"{OWNERS} owners ({self.body_bytes / 1024:.0f} KiB; mail on: a notice queued per owner), "
            "each round on new tokens (`bench/secret_scanning.py`):"
        )
        first = f"| the report, every token revoked | {self.median * 1000:.0f} ms | {rounds} ms | ≤ 1,000 ms |"
        again = (
            f"| the same report again (nothing left to revoke) | "
            f"{statistics.median(self.replay_seconds) * 1000:.0f} ms | {replays} ms | |"
        )
        return "\n".join(
            [
                "### GitHub's secret-scanning partner endpoint, SQLite",
                "",
                intro,
                "",
                "| | median | rounds | target |",
                "|---|---|---|---|",
                first,
                again,
                "",
            ]
        )


def _make_tokens(env: dict[str, str], round_number: int) -> list[str]:
    """1,000 live tokens of ten owners, straight in the store (the admin command, a thousand times
    over, would take minutes)."""
    from tokensmith.accounts import users
    from tokensmith.config import load_settings
    from tokensmith.store.database import create_store_engine, session_factory, unit_of_work
    from tokensmith.store.server_keys import load_server_keys
    from tokensmith.tokens import lifecycle as token_lifecycle

    settings = load_settings(env)
    engine = create_store_engine(settings)
    tokens = []
    try:
        with unit_of_work(session_factory(engine)) as session:
            keys = load_server_keys(settings)
            for owner_number in range(OWNERS):
                name = f"scanned-{round_number}-{owner_number}"
                owner = users.create_user(session, name, f"{name}@example.test", actor="bench")
                for number in range(TOKENS // OWNERS):
                    secret, _row = token_lifecycle.create_token(
                        session, keys, owner.id, f"token {number}", prefix=settings.token_prefix, actor="bench"
                    )
                    tokens.append(secret)
    finally:
        engine.dispose()
    return tokens


def _timed_post(scanner: Scanner, body: bytes, key: SigningKey) -> float:
    started = time.perf_counter()
    answer = scanner.post(body, key)
    elapsed = time.perf_counter() - started
    if answer.status_code != 200:
        raise BenchError(f"the report answered {answer.status_code}: {answer.text[:300]}")
    labels = {item["label"] for item in answer.json()}
    if labels != {"true_positive"} or len(answer.json()) != TOKENS:
        raise BenchError(f"the report's answer is not {TOKENS:,} true positives: {sorted(labels)}")
    return elapsed


def measure_secret_scanning(workdir: Path, options: LoadOptions, rounds: int = 3) -> ScanningFigures:
    workdir.mkdir(parents=True, exist_ok=True)
    key = SigningKey()
    keys = KeyServer().publish(key).start()
    env = {
        **clean_environment(workdir / "data", None),
        "TOKENSMITH_SECRET_SCANNING_KEYS_URL": keys.url,
        "TOKENSMITH_SMTP_URL": f"smtp://127.0.0.1:{free_port()}",
        "TOKENSMITH_MAIL_FROM": "bench@example.test",
    }
    server = BenchServer(workdir, env, options)
    figures = ScanningFigures()
    try:
        server.start()
        scanner = Scanner(server.base_url)
        scanner.post(report("tks_warm_up"), key)  # the key list fetched, the route's imports done
        for number in range(rounds):
            body = report(*_make_tokens(env, number))
            figures.body_bytes = len(body)
            figures.seconds.append(_timed_post(scanner, body, key))
            figures.replay_seconds.append(_timed_post(scanner, body, key))
            first, again = figures.seconds[-1] * 1000, figures.replay_seconds[-1] * 1000
            print(f"  round {number + 1}: {first:.0f} ms, again {again:.0f} ms")
    finally:
        server.stop()
        keys.stop()
    return figures


def main(argv: list[str]) -> int:
    parser = wrk_parser(__doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    options = options_of(args)
    with tempfile.TemporaryDirectory(prefix="tokensmith-scanning-") as workdir:
        figures = measure_secret_scanning(Path(workdir), options, rounds=min(args.rounds, 6))
    print(figures.summary())
    print(json.dumps(figures.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
