"""An exchange against a token check through the whole application, in process, by CPU time.

    PYTHONPATH=src:. .venv/bin/python -m bench.exchange_app [COUNT [CONCURRENT]] [--profile FILE]

The ASGI application ``tokensmith serve`` runs (web/app.create_app, on SQLite) driven by this
process's event loop, without uvicorn and without sockets: CONCURRENT requests at a time (20 by
default, as wrk's connections in bench/workload_identity.py), alternating rounds of COUNT (600 by
default) ``GET /api/v1/me`` with a Bearer token and ``POST /api/v1/oidc/exchange``, each with an
ID token of its own (the tests' CI issuer on loopback, its keys fetched once). Prints the CPU the
process spent per request (every thread's: the loop's and the batches'), each round and the
medians, and the ratio. What it leaves out is what both routes pay alike — uvicorn's reading of
the request and writing of the answer, the access log — and the exchange's bigger request (~1 KB
of body) and answer. ``--profile FILE``: cProfile (by thread CPU time) of the exchanges' rounds, the loop's thread and
the batches' thread each (FILE.loop, FILE.batch), for pstats.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from tests.support.ci_issuer import CiIssuer
from tokensmith.accounts import users
from tokensmith.cli.serve import prepare_store
from tokensmith.config import Settings
from tokensmith.projects import catalog
from tokensmith.projects import publishers as trusted_publishers
from tokensmith.store.database import create_store_engine, session_factory, unit_of_work
from tokensmith.web.app import create_app

ROUNDS = 5
LOOP_SHARE: list[float] = []  # the event loop's thread's CPU a request, each round


async def _call(
    app: Any,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    answer: dict[str, Any] | None = None,
) -> int:
    """One request through the application: its status (``answer``: filled with its JSON body)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), *headers, (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif answer is not None:
            answer.update(orjson.loads(message["body"]))

    await app(scope, receive, send)
    return status


async def _round(app: Any, requests: list[Callable[[], Any]], concurrent: int, expected: int) -> float:
    queue = list(reversed(requests))

    async def worker() -> None:
        while queue:
            status = await queue.pop()()
            if status != expected:
                raise RuntimeError(f"answered {status}, not {expected}")

    start, loop_start = time.process_time_ns(), time.thread_time_ns()
    await asyncio.gather(*(worker() for _ in range(concurrent)))
    LOOP_SHARE.append((time.thread_time_ns() - loop_start) / len(requests) / 1000)
    return (time.process_time_ns() - start) / len(requests) / 1000


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=600)
    parser.add_argument("concurrent", nargs="?", type=int, default=20)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="tokensmith-bench-app-"))
    settings = Settings(data_dir=folder / "data", public_url="http://127.0.0.1:8000")
    prepare_store(settings)
    with CiIssuer().running() as issuer:
        engine = create_store_engine(settings)
        with unit_of_work(session_factory(engine)) as session:
            owner = users.create_user(session, "alice", "alice@example.test", actor="bench")
            catalog.create_project(session, settings.data_dir, "bench-ci", "com.acme.bench", owner.id, actor="bench")
            trusted_publishers.add_publisher(
                session, "bench-ci", issuer=issuer.issuer, claims={"repository": "acme/app"}, actor="bench"
            )
        engine.dispose()
        app = create_app(settings)
        claims = issuer.github_claims(settings.workload_audience, lifetime=3600)
        count = args.count
        id_tokens = iter(
            [issuer.sign({**claims, "jti": f"app-{time.time_ns()}-{n}"}) for n in range(count * (ROUNDS + 1) + 1)]
        )
        json_type = (b"content-type", b"application/json")

        def exchange() -> Any:
            body = b'{"token": "' + next(id_tokens).encode() + b'"}'
            return _call(app, "POST", "/api/v1/oidc/exchange", [json_type], body)

        async def run() -> dict[str, list[float]]:
            first: dict[str, Any] = {}
            body = b'{"token": "' + next(id_tokens).encode() + b'"}'
            await _call(app, "POST", "/api/v1/oidc/exchange", [json_type], body, first)
            bearer = [(b"authorization", f"Bearer {first['token']}".encode())]

            def check() -> Any:
                return _call(app, "GET", "/api/v1/me", bearer, b"")

            spent: dict[str, list[float]] = {"check": [], "exchange": []}
            # a warm-up round of each
            await _round(app, [check] * count, args.concurrent, 200)
            await _round(app, [exchange] * count, args.concurrent, 201)
            profiles = _Profiles(app) if args.profile else None
            for number in range(ROUNDS):
                order = ["check", "exchange"] if number % 2 == 0 else ["exchange", "check"]
                for route in order:
                    if route == "check":
                        spent[route].append(await _round(app, [check] * count, args.concurrent, 200))
                        continue
                    if profiles:
                        profiles.enable()
                    spent[route].append(await _round(app, [exchange] * count, args.concurrent, 201))
                    if profiles:
                        profiles.disable()
                print(
                    f"  round {number + 1}: check {spent['check'][-1]:6.0f} µs, "
                    f"exchange {spent['exchange'][-1]:6.0f} µs"
                    f" (on the loop's thread: the last {LOOP_SHARE[-1]:.0f} µs)"
                )
            if profiles and args.profile:
                profiles.dump(args.profile)
            return spent

        spent = asyncio.run(run())
        runtime = _runtime(app)
        batches = runtime.exchanges.batches
        print(
            f"  medians: check {statistics.median(spent['check']):.0f} µs, exchange "
            f"{statistics.median(spent['exchange']):.0f} µs of CPU a request: "
            f"{statistics.median(spent['exchange']) / statistics.median(spent['check']):.2f} × "
            f"({runtime.exchanges.written / max(batches, 1):.1f} exchanges a batch)"
        )
    return 0


def _runtime(app: Any) -> Any:
    return app.app.state.runtime


class _Profiles:
    """cProfile on the loop's thread, and on the batches' thread around each unit."""

    def __init__(self, app: Any) -> None:
        # The threads' own CPU clocks: time spent waiting (for the GIL, in epoll) is not counted.
        self.loop = cProfile.Profile(time.thread_time_ns, 1e-9)
        self.batch = cProfile.Profile(time.thread_time_ns, 1e-9)
        runtime = _runtime(app)
        self.exchanges = runtime.exchanges
        original = self.exchanges.run_unit
        self.on = False

        async def run_unit(work: Callable[..., Any]) -> Any:
            def profiled(session: Any) -> Any:
                if not self.on:
                    return work(session)
                self.batch.enable()
                try:
                    return work(session)
                finally:
                    self.batch.disable()

            return await original(profiled)

        self.exchanges.run_unit = run_unit

    def enable(self) -> None:
        self.on = True
        self.loop.enable()

    def disable(self) -> None:
        self.loop.disable()
        self.on = False

    def dump(self, path: Path) -> None:
        self.loop.dump_stats(f"{path}.loop")
        self.batch.dump_stats(f"{path}.batch")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
