"""Where a token check's time goes on PostgreSQL, in process: the trip to the threadpool, the
check pool's checkout, the statement (prepared by psycopg or not), the whole check; and the
check as the server runs it now, its lookup read on the event loop (store/postgresql.AsyncReads)
against the same in a thread of its own, as it ran before.

One Python process, a fresh PostgreSQL cluster (stopped by its pid), a store migrated with one
real token; each piece run by ``tasks`` concurrent asyncio tasks as the server's requests are,
for ``calls`` calls; figures in microseconds of the process's CPU time per call (user and
system, every thread: what the one core of a worker pays) and in calls per second of wall time.

    PYTHONPATH=src python bench/postgres_check.py [calls] [tasks]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from starlette.concurrency import run_in_threadpool  # noqa: E402

from tests.support.postgres import PostgresServer  # noqa: E402
from tokensmith.accounts import users  # noqa: E402
from tokensmith.config import Settings  # noqa: E402
from tokensmith.store.database import (  # noqa: E402
    connection_to,
    create_check_engine,
    create_store_engine,
    fetch_one_on_driver,
    migrate,
    ping,
    session_factory,
    unit_of_work,
)
from tokensmith.store.postgresql import AsyncReads  # noqa: E402
from tokensmith.store.server_keys import load_server_keys  # noqa: E402
from tokensmith.tokens import check as token_check  # noqa: E402
from tokensmith.tokens import lifecycle as token_lifecycle  # noqa: E402

PREFIX = "tks_"


async def timed(label: str, work, calls: int, tasks: int) -> None:
    async def worker(count: int) -> None:
        for _ in range(count):
            await work()

    for _ in range(2):  # warm, then timed
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(calls // tasks) for _ in range(tasks)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"  {label:<62} {cpu / calls * 1e6:7.1f} µs CPU/call  {calls / wall:8.0f} calls/s")


def main(calls: int, tasks: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="tokensmith-pgcheck-"))
    base.chmod(0o711)
    postgres = PostgresServer(base / "pg")
    try:
        postgres.init().start()
        url = postgres.url
        settings = Settings(data_dir=base / "data", database_url=url, token_prefix=PREFIX)
        engine = create_store_engine(settings)
        migrate(engine)
        keys = load_server_keys(settings)
        with unit_of_work(session_factory(engine)) as session:
            user = users.create_user(session, "bench", "bench@example.test", actor="bench")
            secret, _ = token_lifecycle.create_token(session, keys, user.id, "bench", prefix=PREFIX, actor="bench")
        engine.dispose()
        check = create_check_engine(settings)
        digest = keys.digest(token_check.PURPOSE, secret)

        def checkout() -> None:
            with connection_to(check):
                pass

        def lookup_prepared() -> None:
            with connection_to(check) as connection:
                fetch_one_on_driver(connection, token_check._BY_DIGEST_POSTGRESQL, {"digest": digest})

        def lookup_unprepared() -> None:
            with connection_to(check) as connection:
                connection.connection.driver_connection.prepare_threshold = None
                fetch_one_on_driver(connection, token_check._BY_DIGEST_POSTGRESQL, {"digest": digest})
                connection.connection.driver_connection.prepare_threshold = 5

        def verify() -> None:
            with connection_to(check) as connection:
                token_check.verify_token(connection, keys, secret, prefix=PREFIX)

        async def noop() -> None:
            await run_in_threadpool(lambda: None)

        async def in_thread(work):
            async def call() -> None:
                await run_in_threadpool(work)

            return call

        async def on_loop(work):
            async def call() -> None:
                work()

            return call

        reads = AsyncReads(check, tasks)

        async def verify_on_loop() -> None:
            digests = keys.all_digests(token_check.PURPOSE, secret)
            row = await reads.fetch_keyed(token_check.ASYNCPG_BY_DIGESTS, token_check.DIGEST_AT, digests)
            token_check.verify_token(token_check.Fetched(digests, row), keys, secret, prefix=PREFIX)

        print(f"PostgreSQL, {calls:,} calls by {tasks} tasks:")

        async def all_then_close(*pieces) -> None:
            await _all(*pieces)
            reads.close()  # on the loop its connections belong to

        asyncio.run(
            all_then_close(
                calls,
                tasks,
                noop,
                in_thread,
                on_loop,
                checkout,
                lookup_prepared,
                lookup_unprepared,
                verify,
                lambda: ping(lambda: connection_to(check)),
                verify_on_loop,
            )
        )
        check.dispose()
    finally:
        postgres.stop()


def _nothing() -> None:
    pass


async def _all(
    calls, tasks, noop, in_thread, on_loop, checkout, prepared, unprepared, verify, health, verify_on_loop
) -> None:
    await timed("trip to the threadpool alone (nothing to do)", noop, calls, tasks)
    executor = ThreadPoolExecutor(max_workers=tasks, thread_name_prefix="check")

    async def executor_noop() -> None:
        await asyncio.get_running_loop().run_in_executor(executor, _nothing)

    async def executor_verify() -> None:
        await asyncio.get_running_loop().run_in_executor(executor, verify)

    await timed("trip to an executor of its own alone (run_in_executor)", executor_noop, calls, tasks)
    for _ in range(3):  # the server's way before and now, alternated
        await timed("verify_token in an executor of its own (before)", executor_verify, calls, tasks)
        await timed("its lookup read on the loop, asynchronously (AsyncReads, now)", verify_on_loop, calls, tasks)
    executor.shutdown()
    await timed("pool checkout + checkin, on the loop", await on_loop(checkout), calls, tasks)
    await timed(
        "lookup on the driver, prepared (psycopg, after 5 runs), on the loop", await on_loop(prepared), calls, tasks
    )
    await timed("lookup on the driver, never prepared, on the loop", await on_loop(unprepared), calls, tasks)
    await timed("verify_token (parse, digest, lookup), on the loop", await on_loop(verify), calls, tasks)
    await timed("verify_token in the threadpool (as the server runs it)", await in_thread(verify), calls, tasks)
    await timed("ping (SELECT 1) in the threadpool (/healthz)", await in_thread(health), calls, tasks)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4000, int(sys.argv[2]) if len(sys.argv) > 2 else 20)
