"""The client's edge cases that a real server does not produce on demand (httpx MockTransport)."""

from __future__ import annotations

import re

import httpx
import pytest

from tokensmith.client.credentials import Credential
from tokensmith.client.errors import Refused, Unreachable
from tokensmith.client.server_api import ServerApi

CREDENTIAL = Credential("https://tokens.example.test", "alice", "tks_" + "x" * 38)


def api(handler) -> ServerApi:
    return ServerApi.of(CREDENTIAL, transport=httpx.MockTransport(handler))


def test_a_503_says_the_server_is_temporarily_unavailable():
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            503,
            json={"error": "store_unavailable", "message": "The token store is unreachable; try again in a moment."},
        )

    with pytest.raises(Unreachable, match="temporarily unavailable: The token store is unreachable"):
        api(answer).me()


def test_a_tls_failure_is_named_as_such():
    def refuse(request):
        raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")

    with pytest.raises(
        Unreachable, match=re.escape("TLS certificate of https://tokens.example.test could not be verified")
    ):
        api(refuse).me()


def test_a_timeout_and_a_refusal_read_in_words():
    def slow(request):
        raise httpx.ReadTimeout("timed out")

    with pytest.raises(Unreachable, match="did not answer in time"):
        api(slow).me()
    answer = lambda request: httpx.Response(401, json={"error": "token_revoked", "message": "This token was revoked."})  # noqa: E731
    with pytest.raises(Refused) as refused:
        api(answer).me()
    assert refused.value.code == "token_revoked" and refused.value.message == "This token was revoked."


def test_the_token_goes_in_the_authorization_header_only():
    seen = {}

    def record(request):
        seen["url"], seen["auth"] = str(request.url), request.headers["authorization"]
        return httpx.Response(200, json=[])

    api(record).tokens()
    assert CREDENTIAL.token not in seen["url"] and seen["auth"].startswith("Basic ")
