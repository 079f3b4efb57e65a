"""The API as schemathesis fuzzes it from /openapi.json: without credentials and with a token.

Schemathesis generates requests from the schema (valid ones, and invalid ones of every kind)
and checks every answer: never a 5xx, only documented statuses and content types, answers
that match their schema, a 405 with a truthful Allow. Bounded in time; the seed is fixed so a
failure replays (the command it prints does). It runs from its own environment
(.venv-schemathesis, made by `make test`), since its dependencies are not the server's.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import unavailable
from tests.support.secret_scanner import KeyServer, SigningKey
from tests.support.seeding import never_used_tokens
from tests.support.servers import LiveServer
from tokensmith.config import load_settings

SCHEMATHESIS = Path(__file__).resolve().parents[2] / ".venv-schemathesis" / "bin" / "schemathesis"
CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
SECONDS = 30
SEED = "20261202"


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if not SCHEMATHESIS.exists():
        unavailable(f"{SCHEMATHESIS} is missing: `make test` installs schemathesis there")
    # Secret-scanning reports are checked against a key list of the tests' own, which the
    # fuzzer's made-up signatures are not in (GitHub's is out of reach here: that would be a 503).
    keys = KeyServer().publish(SigningKey()).start()
    live = LiveServer(
        tmp_path_factory.mktemp("fuzzed") / "data", name="fuzzed", env={"TOKENSMITH_SECRET_SCANNING_KEYS_URL": keys.url}
    ).start()
    yield live
    live.stop()
    keys.stop()


def fuzz(live: LiveServer, *headers: str) -> subprocess.CompletedProcess[str]:
    """One bounded run, from the server's folder (schemathesis keeps a cache where it runs)."""
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        f"{live.base_url}/openapi.json",
        "--checks",
        "all",
        "--max-time",
        str(SECONDS),
        "--seed",
        SEED,
        "--generation-database",
        "none",
        "--no-color",
    ]
    for header in headers:
        command += ["-H", header]
    return subprocess.run(command, capture_output=True, text=True, timeout=SECONDS * 4, cwd=live.data_dir.parent)


def assert_clean(run: subprocess.CompletedProcess[str]) -> None:
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "generated" in run.stdout


def test_fuzzing_without_credentials_finds_nothing(fuzzed):
    offset = len(fuzzed.console())
    assert_clean(fuzz(fuzzed))
    assert_no_server_error_logged(fuzzed.console()[offset:])


def test_fuzzing_with_a_token_finds_nothing(fuzzed):
    fuzzed.create_user("fuzzer")
    # The fuzzer tries DELETE and rotate on ids of its choosing (1, 2, ... first): thousands of
    # tokens before its own keep it from revoking the token it fuzzes with in the first second.
    fuzzed.create_user("bystander")
    never_used_tokens(load_settings(fuzzed.env), "bystander", 5000)
    token = fuzzed.create_token("fuzzer", "fuzzing")
    offset = len(fuzzed.console())
    assert_clean(fuzz(fuzzed, f"Authorization: Bearer {token}"))
    assert_no_server_error_logged(fuzzed.console()[offset:])


def assert_no_server_error_logged(console: str) -> None:
    assert "Traceback" not in console and "unexpected" not in console
    assert '" 500 ' not in console and '" 503 ' not in console
