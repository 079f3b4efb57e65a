"""After the whole run: no token and no password the tests used was written anywhere.

Every test that handled a plain secret put it in the ledger; every server log, SQLite file and
PostgreSQL database the tests used is watched. This reads them all, byte for byte.
"""

from __future__ import annotations

import re

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


@pytest.mark.last
def test_no_secret_reached_a_log_or_the_store():
    if not ledger.SECRETS:
        pytest.skip("no test that handles secrets ran")
    files = [path for path in ledger.WATCHED if path.exists()]
    assert files, "no server log or store file was watched"
    inspected = 0
    for path in sorted(files):
        content = path.read_bytes()
        if path.suffix == ".log":
            assert content.count(b"First start: created user") <= 1, path
            content = FIRST_START_BANNER.sub(b"", content)
        inspected += len(content)
        assert leaks_in(content) == [], f"secret written to {path}"
    for url in sorted(ledger.DATABASES):
        dump = dump_database(url)
        inspected += len(dump)
        assert leaks_in(dump) == [], f"secret written to the PostgreSQL database {url.rsplit('/', 1)[-1]}"
    assert inspected > 10_000, "too little was inspected to prove anything"


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
