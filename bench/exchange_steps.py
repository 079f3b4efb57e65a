"""Where an exchange spends its CPU, step by step, in process, on SQLite.

    PYTHONPATH=src:. .venv/bin/python -m bench.exchange_steps [COUNT [BATCH]]

A store of its own (migrated, a project with a trusted publisher of the tests' CI issuer on
loopback, its keys fetched once), then COUNT ID tokens (500 by default, after 60 to warm up),
each of its own: first ``exchange_batches.ready``'s steps, what runs on the event loop, with the
thread's CPU clock read between them; then ``exchange_batches.write_batch`` for BATCH of them at a
time (20 by default: wrk's connections), one unit each, what runs in the batch's thread, per
exchange. Prints each step's median and mean in µs. It calls the exchange's own pieces: a step
added to ``ready`` must be added here too. No profiler runs meanwhile (cProfile doubles the cost of
Python calls and hardly that of C ones: the proportions it gives are not the real ones).
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from tests.support.ci_issuer import CiIssuer
from tokensmith.accounts import users
from tokensmith.cli.serve import prepare_store
from tokensmith.clock import utcnow
from tokensmith.config import Settings
from tokensmith.projects import catalog
from tokensmith.projects import publishers as trusted_publishers
from tokensmith.store.database import create_store_engine, session_factory, unit_of_work
from tokensmith.store.server_keys import load_server_keys
from tokensmith.tokens import exchange_batches, id_tokens, workload_identity
from tokensmith.tokens.oidc_issuers import IssuerDirectory

WARM = 60
BATCH = int(sys.argv[2]) if len(sys.argv) > 2 else 20  # exchanges a batch


def measure(count: int) -> dict[str, list[int]]:
    folder = Path(tempfile.mkdtemp(prefix="tokensmith-bench-steps-"))
    settings = Settings(data_dir=folder / "data", public_url="http://127.0.0.1:8000")
    prepare_store(settings)
    engine = create_store_engine(settings)
    sessions = session_factory(engine)
    keys = load_server_keys(settings)
    directory = IssuerDirectory()
    spent: dict[str, list[int]] = defaultdict(list)
    with CiIssuer().running() as issuer:
        with unit_of_work(sessions) as session:
            owner = users.create_user(session, "alice", "alice@example.test", actor="bench")
            catalog.create_project(session, settings.data_dir, "bench-ci", "com.acme.bench", owner.id, actor="bench")
            trusted_publishers.add_publisher(
                session, "bench-ci", issuer=issuer.issuer, claims={"repository": "acme/app"}, actor="bench"
            )
        directory.refresh(issuer.issuer, None)
        audience = settings.workload_audience
        claims = issuer.github_claims(audience, lifetime=3600)
        tokens = [issuer.sign({**claims, "jti": f"steps-{time.time_ns()}-{n}"}) for n in range(count + WARM)]
        marks: list[tuple[str, int]] = []

        def mark(label: str) -> None:
            marks.append((label, time.thread_time_ns()))

        ready: list[exchange_batches.Ready] = []
        for number, raw in enumerate(tokens):
            # On the event loop: exchange_batches.ready's steps.
            marks.clear()
            mark("start")
            now = utcnow()
            presented = id_tokens.read(raw)
            mark("loop: the ID token read")
            held = directory.cached(presented.issuer)
            assert held is not None
            key = held.find(presented.key_id, presented.algorithm)
            assert key is not None and exchange_batches._quick_to_verify(key)
            mark("loop: the issuer's key found, its size checked")
            id_tokens.verify(presented, key)
            mark("loop: the signature verified (cryptography)")
            expires = id_tokens.check(presented, audience=audience, now=now)
            mark("loop: audience, times, jti")
            ready.append(exchange_batches.Ready(presented, expires, None, None, now))
            if number < WARM:
                continue
            for (_before, start), (label, end) in itertools.pairwise(marks):
                spent[label].append(end - start)
        # In the batch's thread: write_batch, for batches of BATCH exchanges (its unit's steps).
        for first in range(0, len(ready), BATCH):
            batch = ready[first : first + BATCH]
            start = time.thread_time_ns()
            with unit_of_work(sessions) as session:
                outcomes = exchange_batches.write_batch(
                    session, keys, batch, prefix=settings.token_prefix, minutes=settings.oidc_token_minutes
                )
                assert all(isinstance(outcome, workload_identity.Exchanged) for outcome in outcomes)
                written = time.thread_time_ns()
            end = time.thread_time_ns()
            if first < WARM:
                continue
            spent[f"batch: its unit's statements, per exchange ({BATCH} a batch)"].append(
                (written - start) // len(batch)
            )
            spent["batch: COMMIT, the session closed, per exchange"].append((end - written) // len(batch))
            spent["the batch, per exchange"].append((end - start) // len(batch))
    engine.dispose()
    return spent


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 500
    for label, values in measure(count).items():
        print(f"{label:<50} {statistics.median(values) / 1000:7.0f} µs  (mean {statistics.mean(values) / 1000:5.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
