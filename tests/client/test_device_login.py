"""The client's side of the device grant, where a real server would not misbehave on demand
(httpx MockTransport): how it paces its polls and what it says for each of the RFC's answers.
The grant end to end, with a real server and Chromium, is tests/web/test_device.py."""

from __future__ import annotations

import httpx
import pytest

from tokensmith.client import device_login
from tokensmith.client.device_login import DeviceCode
from tokensmith.client.errors import ClientError, InvalidInput, Refused
from tokensmith.client.server_api import ServerApi

CODE = DeviceCode("d" * 43, "BDWP-HQPK", "https://tokens.example.test/device", 600, 5)


def api(answers: list[httpx.Response]) -> ServerApi:
    pending = iter(answers)
    return ServerApi("https://tokens.example.test", transport=httpx.MockTransport(lambda request: next(pending)))


def error(code: str) -> httpx.Response:
    return httpx.Response(400, json={"error": code, "error_description": code.replace("_", " ")})


def test_the_client_polls_at_the_interval_and_slows_down_when_told():
    waits: list[float] = []
    answers = [
        error("authorization_pending"),
        error("slow_down"),
        error("authorization_pending"),
        httpx.Response(200, json={"access_token": "tks_" + "t" * 38, "token_type": "bearer"}),
    ]
    token = device_login.wait_for_token(api(answers), CODE, sleep=waits.append, clock=lambda: 0.0)
    assert token == "tks_" + "t" * 38 and waits == [5, 5, 10, 10]


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (error("access_denied"), "denied in the browser"),
        (error("expired_token"), "The code expired before it was approved"),
    ],
)
def test_a_denial_or_an_expiry_ends_the_wait_in_words(answer, says):
    with pytest.raises(Refused, match=says):
        device_login.wait_for_token(api([answer]), CODE, sleep=lambda _: None, clock=lambda: 0.0)


def test_a_code_still_pending_past_its_lifetime_is_expired():
    clock = iter([0.0, 601.0])
    with pytest.raises(Refused, match="expired"):
        device_login.wait_for_token(
            api([error("authorization_pending")]), CODE, sleep=lambda _: None, clock=lambda: next(clock)
        )


def test_a_server_without_the_grant_or_with_nonsense_is_named():
    with pytest.raises(ClientError, match="does not offer browser login"):
        device_login.request_code(api([httpx.Response(404, text="Not Found")]), [])
    with pytest.raises(ClientError, match="something else than a code"):
        device_login.request_code(api([httpx.Response(200, json={"user_code": "X"})]), [])
    with pytest.raises(InvalidInput, match="refused the login request: no such scope"):
        device_login.request_code(
            api([httpx.Response(400, json={"error": "invalid_scope", "error_description": "no such scope"})]), ["x"]
        )
    with pytest.raises(ClientError, match="refused the login request"):
        device_login.wait_for_token(
            api([httpx.Response(500, text="oops")]), CODE, sleep=lambda _: None, clock=lambda: 0.0
        )
