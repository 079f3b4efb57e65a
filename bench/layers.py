"""What each layer around the token route costs, in process: the ASGI application called
directly (no socket, no HTTP parsing: uvicorn's share is the same for every route), in
microseconds of CPU per request, median of interleaved batches.

- the bare FastAPI JSON route (bench/bare_app.py): the framework's floor;
- ``GET /healthz`` and ``GET /api/v1/me`` served at the edge (web/edge.py), as in production;
- the same two routes through FastAPI's whole dispatch (the application behind the edge):
  its middleware (error pages, the body limit, exceptions, the exit stack), the route scan,
  the dependency solver;
- pieces of the token route alone: parsing the Authorization header, the check (parse,
  checksum, digest, lookup, limits, the use noted), the Prometheus counter, the answer
  (serialised once, with its headers), the access log's line.

    PYTHONPATH=src python bench/layers.py [calls]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from starlette.responses import Response  # noqa: E402
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string  # noqa: E402

from bench.bare_app import app as bare_app  # noqa: E402
from tests.support.seeding import never_used_tokens  # noqa: E402
from tokensmith import metrics  # noqa: E402
from tokensmith.cli.serve import prepare_store  # noqa: E402
from tokensmith.config import load_settings  # noqa: E402
from tokensmith.web.access_log import AccessLog  # noqa: E402
from tokensmith.web.app import create_app  # noqa: E402
from tokensmith.web.auth import _check_token, parse_authorization  # noqa: E402
from tokensmith.web.schemas import Me  # noqa: E402


def scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict) -> None:
    if message["type"] == "http.response.start" and message["status"] != 200:
        raise RuntimeError(f"answered {message['status']}")


def served(app, path: str, headers=()) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        await app(scope(path, list(headers)), receive, send)

    return call


async def measure(cases: dict[str, Callable[[], Awaitable[None]]], calls: int, batches: int) -> dict[str, float]:
    per_call: dict[str, list[float]] = {name: [] for name in cases}
    for work in cases.values():
        for _ in range(200):
            await work()
    for _ in range(batches):
        for name, work in cases.items():
            start = time.thread_time_ns()
            for _ in range(calls):
                await work()
            per_call[name].append((time.thread_time_ns() - start) / calls / 1000)
    return {name: statistics.median(values) for name, values in per_call.items()}


def main(calls: int = 3000, batches: int = 7) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix="tokensmith-layers-")) / "data"
    settings = load_settings({"TOKENSMITH_DATA_DIR": str(directory), "TOKENSMITH_PUBLIC_URL": "http://127.0.0.1:8000"})
    prepare_store(settings)
    (token,) = never_used_tokens(settings, "admin", 1)
    edge = create_app(settings)
    framework = edge.inner
    runtime = framework.state.runtime
    bearer = [(b"authorization", f"Bearer {token}".encode())]
    credentials = parse_authorization(f"Bearer {token}", settings.token_prefix)
    identity = _check_token(runtime, credentials, "127.0.0.1", "wrk", None)

    async def header_parse() -> None:
        parse_authorization(f"Bearer {token}", settings.token_prefix)

    async def check() -> None:
        await runtime.check_on_store(_check_token, runtime, credentials, "127.0.0.1", "wrk", None)

    async def counter() -> None:
        metrics.count_authentication("token", "ok")

    # The access log's line: uvicorn's fields, noted, then formatted and written 400 at a time
    # (as the writer thread does), all on this thread here so that all of it is counted.
    access_log = AccessLog(open(os.devnull, "w"))  # noqa: SIM115 (closed below)
    access_log._writer = threading.current_thread()  # no thread of its own: flushed right here
    lines = 0
    request = scope("/api/v1/me", bearer)

    async def access_line() -> None:
        nonlocal lines
        # The fields as uvicorn's protocol gathers them from the request's scope.
        access_log.info(
            '%s - "%s %s HTTP/%s" %d',
            get_client_addr(request),
            request["method"],
            get_path_with_query_string(request),
            request["http_version"],
            200,
        )
        lines += 1
        if lines % 400 == 0:
            access_log.flush()

    async def answer() -> None:
        await Response(Me.json_of(identity), media_type="application/json")(scope("/api/v1/me", []), receive, send)

    cases = {
        "bare FastAPI JSON route (the floor)": served(bare_app, "/bare"),
        "GET /healthz at the edge": served(edge, "/healthz"),
        "GET /healthz through FastAPI's dispatch": served(framework, "/healthz"),
        "GET /api/v1/me at the edge": served(edge, "/api/v1/me", bearer),
        "GET /api/v1/me through FastAPI's dispatch": served(framework, "/api/v1/me", bearer),
        "  the Authorization header parsed": header_parse,
        "  the check (parse, checksum, digest, lookup, use noted, counter)": check,
        "  the Prometheus counter alone": counter,
        "  the answer (JSON once, headers, sent)": answer,
        "  the access log's line (noted, formatted, written; web/access_log.py)": access_line,
    }
    try:
        figures = asyncio.run(measure(cases, calls, batches))
    finally:
        runtime.stop()
        access_log.flush()
    for name, value in figures.items():
        print(f"  {name:<68} {value:7.1f} µs CPU")
    return figures


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
