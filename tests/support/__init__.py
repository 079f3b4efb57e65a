"""Real parts for the tests and the benchmark: servers on loopback, PostgreSQL, a ledger of
every secret the tests saw (so a last test can prove none was written anywhere)."""
