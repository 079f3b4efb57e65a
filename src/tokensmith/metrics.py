"""Prometheus metrics, added up over every worker of an instance.

``tokensmith serve --workers N`` runs prometheus-client's multiprocess mode: it names a
directory in ``PROMETHEUS_MULTIPROC_DIR`` (its own, or the one given, emptied at start) before
the workers start, each worker keeps its values in a file there, and ``/metrics``, whichever
worker answers, reads them all. One worker keeps its values in memory. Either way a scrape
covers one instance: a deployment of several is scraped instance by instance.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

disable_created_metrics()  # the *_created series only add noise to every scrape

AUTHENTICATIONS = Counter(
    "tokensmith_authentications",
    "Authentication attempts by credential method and outcome.",
    ["method", "outcome"],
)

METHODS = ("token", "password", "session", "sign_in")
OUTCOMES = (
    "ok",
    "unknown",
    "wrong_user",
    "revoked",
    "expired",
    "password_refused",
    "bad_password",
    "malformed",
    "disabled",
    "token_in_browser",
    "throttled",
)

# Every series exists from the start, at 0, so that rates and alerts work before the first
# event; and counting is a dict lookup, not a label resolution, on every request.
_SERIES = {(method, outcome): AUTHENTICATIONS.labels(method, outcome) for method in METHODS for outcome in OUTCOMES}
# A CI job's ID token exchanged (web/workload_identity.py): its refusals are counted by their codes
# as they come; its success, on every exchange, is looked up like the others.
_SERIES["id_token", "ok"] = AUTHENTICATIONS.labels("id_token", "ok")


def count_authentication(method: str, outcome: str) -> None:
    series = _SERIES.get((method, outcome))
    (series or AUTHENTICATIONS.labels(method, outcome)).inc()


USAGE_RECORDS = Counter(
    "tokensmith_usage_records",
    "Last-used times of tokens and sessions, by what became of them: written, or dropped "
    "(too many pending while the store was down, or refused by it).",
    ["outcome"],
)
_USAGE = {outcome: USAGE_RECORDS.labels(outcome) for outcome in ("written", "dropped")}


def count_usage(outcome: str, count: int = 1) -> None:
    _USAGE[outcome].inc(count)


MAIL = Counter(
    "tokensmith_mail",
    "Mail to token owners by outcome: sent, or a failed try (the SMTP server unreachable, or the message refused).",
    ["outcome"],
)
_MAIL = {outcome: MAIL.labels(outcome) for outcome in ("sent", "failed")}


def mail_sent() -> None:
    _MAIL["sent"].inc()


def mail_failed() -> None:
    _MAIL["failed"].inc()


EXCHANGE_BATCHES = Counter(
    "tokensmith_exchange_batches",
    "Batches of CI exchanges written, one transaction each (tokens/exchange_batches.py).",
)
EXCHANGES_BATCHED = Counter(
    "tokensmith_exchanges_batched",
    "CI exchanges written in those batches: divided by the batches, how many a batch held.",
)


def exchange_batch_written(size: int) -> None:
    EXCHANGE_BATCHES.inc()
    EXCHANGES_BATCHED.inc(size)


WORKERS = Gauge(
    "tokensmith_workers",
    "Worker processes serving this instance (each counts 1 while it lives).",
    multiprocess_mode="livesum",
)


def worker_started() -> None:
    WORKERS.set(1)


def exposition() -> bytes:
    """The text a scrape gets: this process's metrics, or, in multiprocess mode, every worker's."""
    directory = os.environ.get(MULTIPROCESS_DIR)
    if not directory:
        return generate_latest()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)


@contextlib.contextmanager
def multiprocess_directory() -> Iterator[Path]:
    """``PROMETHEUS_MULTIPROC_DIR`` for the workers about to start: the one given, emptied
    (what a previous run left there would be added up), or a new one, removed at the end. Set
    before the workers start, since prometheus-client reads it when first imported."""
    given = os.environ.get(MULTIPROCESS_DIR)
    directory = Path(given) if given else Path(tempfile.mkdtemp(prefix="tokensmith-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROCESS_DIR] = str(directory)
    try:
        yield directory
    finally:
        if not given:
            del os.environ[MULTIPROCESS_DIR]
            shutil.rmtree(directory, ignore_errors=True)


def worker_gone(pid: int) -> None:
    """A worker exited (or was killed): its live gauges stop counting. Its counters stay, as
    they must: the instance's totals do not go down when a worker is replaced."""
    mark_process_dead(pid, os.environ[MULTIPROCESS_DIR])
