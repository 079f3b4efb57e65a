"""The token check among 1,000 tokens and among 1,000,000, each presented at random.

Two SQLite stores, migrated, seeded straight into the table (the bench's own shortcut:
``personal_tokens.create_token`` for a million would take an hour): ``filler`` rows with random
digests, and among them, spread evenly through the table, ``presented`` real tokens whose
secrets the bench keeps. Each call presents one of those, in a random order, so that a lookup
finds its pages wherever they are, as a server with many clients does. The
check runs as the server runs it: ``token_check.verify_token`` on the check engine's
connection of the thread (web/runtime.Runtime.check_connection). Batches alternate between
the two stores; the figure is the median batch, in microseconds of the thread's CPU time (user
and system: a page SQLite reads from the OS is counted) per call, and the ratio of the large
store's to the small one's.

Beside it, the floor: the same SELECT on a bare ``sqlite3`` connection (the same page cache, no
Tokensmith code around it, no write meanwhile): how much a lookup in SQLite's B-tree itself
grows from one size to the other, which no check built on it can be flatter than in absolute
terms.
"""

from __future__ import annotations

import functools
import random
import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tokensmith.accounts import users
from tokensmith.clock import utcnow
from tokensmith.config import Settings
from tokensmith.store.database import create_check_engine, create_store_engine, migrate, session_factory, unit_of_work
from tokensmith.store.server_keys import load_server_keys
from tokensmith.store.sqlite import CHECK_CACHE_KIB
from tokensmith.tokens import check as token_check
from tokensmith.tokens import format as token_format

PREFIX = "tks_"
SIZES = (1_000, 1_000_000)
PRESENTED = 2_000  # real tokens among the large store's rows, presented at random
RATIO_TARGET = 1.1
# The server writes last-used times in one transaction a few times a second (usage.py): every
# 0.2 s, about every 400 checks at the token route's 2,000 requests/s. A commit elsewhere makes
# SQLite drop the check connection's page cache at its next read (WAL), so the bench writes too.
WRITE_EVERY = 400


@dataclass
class ScaleFigures:
    sizes: tuple[int, ...]
    median_us: dict[str, float]  # by mode and store size: "quiet 1000", "writes 1000000"
    batches_us: dict[str, list[float]]
    seed_seconds: dict[str, float]
    write_every: int = WRITE_EVERY

    def ratio_of(self, mode: str) -> float:
        return self.median_us[f"{mode} {max(self.sizes)}"] / self.median_us[f"{mode} {min(self.sizes)}"]

    @property
    def ratio(self) -> float:
        """The server's case: last-used times written as it does."""
        return self.ratio_of("writes")

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "ratio": self.ratio,
            "ratio_quiet": self.ratio_of("quiet"),
            "ratio_driver": self.ratio_of("driver"),
        }


def seed(data_dir: Path, size: int) -> tuple[Settings, list[str]]:
    """A store of ``size`` live tokens of one user; the secrets of up to PRESENTED of them,
    spread evenly through the table."""
    settings = Settings(data_dir=data_dir, token_prefix=PREFIX)
    engine = create_store_engine(settings)
    try:
        migrate(engine)
        keys = load_server_keys(settings)
        with unit_of_work(session_factory(engine)) as session:
            user = users.create_user(session, "bench", "bench@example.test", actor="bench")
            user_id = user.id
    finally:
        engine.dispose()
    presented = min(PRESENTED, size)
    secrets_ = [token_format.generate(PREFIX) for _ in range(presented)]
    created = utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")
    columns = "id, user_id, name, digest, key_version, hint, scopes, created_at"
    gap = size // presented  # every gap-th row is a presented token; the others filler
    with sqlite3.connect(settings.sqlite_path) as store:
        # Fast: no fsync; the table's own indexes built once at the end rather than row by row;
        # the filler inserted in the order of its (random) digests, so that the digest's unique
        # index is appended to, not split at random a million times. Ids interleave filler and
        # presented tokens, so that the presented rows lie all through the table.
        store.execute("PRAGMA synchronous=OFF")
        store.execute("PRAGMA cache_size=-262144")
        indexes = store.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name = 'personal_tokens' AND sql IS NOT NULL"
        ).fetchall()
        for name, _sql in indexes:
            store.execute(f'DROP INDEX "{name}"')
        if gap > 1:
            store.execute(
                f"INSERT INTO personal_tokens ({columns}) WITH RECURSIVE n(i) AS "
                "(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?), "
                "sorted(digest) AS (SELECT randomblob(32) AS digest FROM n ORDER BY digest), "
                "numbered(r, digest) AS (SELECT row_number() OVER (), digest FROM sorted) "
                "SELECT r + (r - 1) / ?, ?, 'filler ' || r, digest, ?, 'tks_…fill', '[\"api\"]', ? FROM numbered",
                (size - presented, gap - 1, user_id, keys.current, created),
            )
        store.executemany(
            f"INSERT INTO personal_tokens ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    (number + 1) * gap,
                    user_id,
                    f"presented {number}",
                    keys.digest(token_check.PURPOSE, secret),
                    keys.current,
                    token_format.hint(secret, PREFIX),
                    '["api"]',
                    created,
                )
                for number, secret in enumerate(secrets_)
            ],
        )
        for _name, sql in indexes:
            store.execute(sql)
        store.execute("ANALYZE")
        (total,) = store.execute("SELECT count(*) FROM personal_tokens").fetchone()
    if total != size:
        raise RuntimeError(f"seeded {total} tokens, not {size}")
    return settings, secrets_


def measure_check_scale(
    workdir: Path,
    *,
    calls: int = 4000,
    batches: int = 9,
    sizes: tuple[int, ...] = SIZES,
    write_every: int = WRITE_EVERY,
    log: Callable[[str], None] = print,
) -> ScaleFigures:
    checks, seeded = {}, {}
    engines, connections = [], []
    try:
        for size in sizes:
            started = time.monotonic()
            settings, secrets_ = seed(workdir / f"store-{size}", size)
            seeded[str(size)] = time.monotonic() - started
            log(f"  seeded {size:>9,} tokens in {seeded[str(size)]:.1f} s")
            engine = create_check_engine(settings)  # as the server's check connection is made
            engines.append(engine)
            connection = engine.connect()
            keys = load_server_keys(settings)
            order = random.Random(size).choices(secrets_, k=calls)
            writer = sqlite3.connect(settings.sqlite_path, isolation_level=None)
            connections.append(writer)
            bare = sqlite3.connect(settings.sqlite_path, isolation_level=None)
            bare.execute(f"PRAGMA cache_size=-{CHECK_CACHE_KIB}")
            connections.append(bare)
            digests = [keys.digest(token_check.PURPOSE, secret) for secret in order]

            def lookup(bare=bare, digests=digests) -> None:
                for digest in digests:
                    bare.execute(LOOKUP_SQL, (digest,)).fetchone()

            def check(connection=connection, keys=keys, order=order, writer=writer, writes=False) -> None:
                for number, secret in enumerate(order):
                    if writes and number % write_every == 0:
                        writer.execute(
                            "UPDATE personal_tokens SET last_used_at = ? WHERE id = 1",
                            (utcnow().strftime("%Y-%m-%d %H:%M:%S.%f"),),
                        )
                    token_check.verify_token(connection, keys, secret, prefix=PREFIX)

            check()  # warm: the pages the lookups reach, as a server's would be after a while
            checks[f"quiet {size}"] = check
            checks[f"writes {size}"] = functools.partial(check, writes=True)
            lookup()
            checks[f"driver {size}"] = lookup
        per_call: dict[str, list[float]] = {key: [] for key in checks}
        for _ in range(batches):
            for key, check in checks.items():
                start = time.thread_time_ns()  # this thread's CPU, user and system: on a shared
                check()  # machine, what others run does not count
                per_call[key].append((time.thread_time_ns() - start) / calls / 1000)
    finally:
        for engine in engines:
            engine.dispose()
        for opened in connections:
            opened.close()
    figures = ScaleFigures(
        tuple(sizes), {key: statistics.median(v) for key, v in per_call.items()}, per_call, seeded, write_every
    )
    for key in checks:
        mode, size = key.split()
        log(
            f"  random tokens among {int(size):>9,}, {MODES[mode]:<38}: {figures.median_us[key]:6.1f} µs per check "
            f"(batches {min(per_call[key]):.1f}–{max(per_call[key]):.1f})"
        )
    for mode in MODES:
        log(f"  ratio {max(sizes):,} / {min(sizes):,}, {MODES[mode]}: {figures.ratio_of(mode):.2f}")
    return figures


MODES = {
    "quiet": "no write meanwhile",
    "writes": f"a commit every {WRITE_EVERY} checks",
    "driver": "SQLite's lookup alone (the floor)",
}
LOOKUP_SQL = token_check._BY_DIGEST_SQLITE  # the check's one statement, as the driver runs it


if __name__ == "__main__":
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tokensmith-check-scale-") as directory:
        measure_check_scale(
            Path(directory),
            calls=int(sys.argv[1]) if len(sys.argv) > 1 else 4000,
            write_every=int(sys.argv[2]) if len(sys.argv) > 2 else WRITE_EVERY,
        )
