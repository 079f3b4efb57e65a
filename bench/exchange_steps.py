"""Where an exchange's unit of work spends its CPU, step by step, in process, on SQLite.

    PYTHONPATH=src:. .venv/bin/python -m bench.exchange_steps [COUNT]

A store of its own (migrated, a project with a trusted publisher of the tests' CI issuer on
loopback, its keys fetched once), then COUNT exchanges (500 by default, after 50 to warm up),
each with an ID token of its own, replaying ``workload_identity.exchange``'s steps in one unit of
work with the thread's CPU clock read between them. Prints each step's median and mean in µs.
It calls the exchange's own pieces (``_spend``, ``mint_checked``, ``trail.record`` at once…): a
step added to ``exchange`` must be added here too. No profiler runs meanwhile (cProfile doubles the
cost of Python calls and hardly that of C ones: the proportions it gives are not the real ones).
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

from tests.support.ci_issuer import CiIssuer
from tokensmith.accounts import users
from tokensmith.audit import trail
from tokensmith.audit.trail import AuditAction
from tokensmith.cli.serve import prepare_store
from tokensmith.clock import utcnow
from tokensmith.config import Settings
from tokensmith.projects import catalog
from tokensmith.projects import publishers as trusted_publishers
from tokensmith.store.database import create_store_engine, session_factory, unit_of_work
from tokensmith.store.server_keys import load_server_keys
from tokensmith.tokens import id_tokens, workload_identity
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import limits as token_limits
from tokensmith.tokens.oidc_issuers import IssuerDirectory

WARM = 50


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

        for number, raw in enumerate(tokens):
            marks.clear()
            mark("start")
            with unit_of_work(sessions) as session:
                mark("session begun")
                now = utcnow()
                presented = id_tokens.read(raw)
                mark("the ID token read")
                candidates = trusted_publishers.candidates_for_issuer(session, presented.issuer)
                mark("the publishers of its issuer (BEGIN, one SELECT)")
                key = workload_identity._signing_key(directory, presented, False)
                mark("the issuer's key found in the cache")
                id_tokens.verify(presented, key)
                mark("the signature verified")
                expires = id_tokens.check(presented, audience=audience, now=now)
                publisher = workload_identity._chosen(candidates, presented)
                mark("audience, times, jti; the publisher matched")
                digest = workload_identity._spend(session, presented, expires)
                mark("the jti recorded")
                limits = token_limits.Limits(tuple(publisher.scopes), (publisher.project_id,), None)
                actor = workload_identity._actor(presented)
                _secret, row = token_lifecycle.mint_checked(
                    session, keys, publisher.account_id, workload_identity._token_name(presented, digest), limits,
                    prefix=settings.token_prefix, actor=actor, expires_at=now + timedelta(minutes=15), now=now,
                    ip=None, audited=False, name_is_unique=True,
                )  # fmt: skip
                mark("the token minted")
                session.connection().execute(
                    workload_identity._LINK, {"token_id": row.id, "publisher_id": publisher.id}
                )
                mark("its link to the publisher")
                trail.record(
                    session, AuditAction.TOKEN_EXCHANGED, at_once=True, actor=actor, user_id=publisher.account_id,
                    ip=None, at=now,
                    token_id=row.id, name=row.name, hint=row.hint, project=publisher.project_id,
                    publisher=publisher.name, publisher_id=publisher.id, issuer=presented.issuer,
                    subject=presented.text("sub", 255), jti=presented.text("jti", 255), matched=dict(publisher.claims),
                    **token_lifecycle.limits_of(row),
                )  # fmt: skip
                mark("the event written, its listeners told")
                session.flush()
                mark("anything left for the ORM to flush")
            mark("COMMIT, the session closed")
            if number < WARM:
                continue
            for (_before, start), (label, end) in itertools.pairwise(marks):
                spent[label].append(end - start)
            spent["the unit"].append(marks[-1][1] - marks[0][1])
    engine.dispose()
    return spent


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 500
    for label, values in measure(count).items():
        print(f"{label:<50} {statistics.median(values) / 1000:7.0f} µs  (mean {statistics.mean(values) / 1000:5.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
