"""After the run: no token and no password the tests used was written anywhere.

Every test that handled a plain secret put it in the ledger; every server log, SQLite file and
PostgreSQL database the tests used is watched. When a pytest session reaches its last test, and
before that test's fixtures (a PostgreSQL server among them) are torn down, this reads them all,
byte for byte. Under pytest-xdist each worker is a session of its own with its own ledger: each
inspects what its own tests left.
"""

from __future__ import annotations

import re
from collections.abc import Generator

import pytest
from sqlalchemy import create_engine, inspect, text

from tests.support import ledger

# The one deliberate display of a secret: the first start's admin password, on the console.
FIRST_START_BANNER = re.compile(rb"={72}\n First start: created user 'admin'.*?={72}\n", re.S)


def needles() -> list[bytes]:
    found = []
    for secret in ledger.SECRETS:
        found.append(secret.encode())
        if secret.startswith("tks_"):
            found.append(secret[4:36].encode())  # the random part, even without its prefix
    return found


def leaks_in(content: bytes) -> list[str]:
    return [needle.decode()[:6] + "…" for needle in needles() if needle in content]


def inspect_what_the_run_left() -> None:
    """Fails (pytest.fail) naming the file or database a secret reached."""
    if not ledger.SECRETS:
        return  # no test that handles secrets ran here
    files = [path for path in ledger.WATCHED if path.exists()]
    if not files:
        pytest.fail("Tests handled secrets but no server log or store file was watched.", pytrace=False)
    inspected = 0
    for path in sorted(files):
        content = path.read_bytes()
        if path.suffix == ".log":
            if content.count(b"First start: created user") > 1:
                pytest.fail(f"The first start's banner was shown more than once in {path}", pytrace=False)
            content = FIRST_START_BANNER.sub(b"", content)
        inspected += len(content)
        if leaks_in(content):
            pytest.fail(f"A secret the tests used was written to {path}: {leaks_in(content)}", pytrace=False)
    for url in sorted(ledger.DATABASES):
        dump = dump_database(url)
        inspected += len(dump)
        if leaks_in(dump):
            name = url.rsplit("/", 1)[-1]
            pytest.fail(f"A secret the tests used was written to the PostgreSQL database {name}", pytrace=False)
    if inspected == 0:
        pytest.fail("The watched files and databases were all empty: nothing proves a thing.", pytrace=False)


def dump_database(url: str) -> bytes:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            chunks = []
            for table in inspect(connection).get_table_names():
                for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                    chunks.append(repr(tuple(row)).encode())
            return b"\n".join(chunks)
    finally:
        engine.dispose()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """The session's last test: inspect before its fixtures (and the session's, PostgreSQL among
    them) are torn down; a leak is then reported as an error in that test's teardown, naming the
    file, once every fixture is stopped."""
    leak = None
    if nextitem is None:
        try:
            inspect_what_the_run_left()
        except pytest.fail.Exception as failure:
            leak = failure
    result = yield
    if leak is not None:
        raise leak
    return result
