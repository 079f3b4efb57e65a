"""Prometheus metrics. One process, one registry: with several workers, scrape each."""

from __future__ import annotations

from prometheus_client import Counter, disable_created_metrics

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
_SERIES = {
    (method, outcome): AUTHENTICATIONS.labels(method, outcome)
    for method in METHODS
    for outcome in OUTCOMES
}


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
