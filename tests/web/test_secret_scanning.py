"""GitHub's secret-scanning partner endpoint over real HTTP: a ``tokensmith serve`` whose
TOKENSMITH_SECRET_SCANNING_KEYS_URL is a key server of the tests' own on loopback, reports
signed by a scanner of the tests' own, a real SMTP server for the owners' mail.

Signed reports revoke every live token they name and tell each owner (the refusal's words, the
security log, My Tokens, one mail each); unsigned, badly signed or replayed ones revoke nothing
(401); with the key server down, 503 and nothing revoked; a report of 1,000 tokens passes the
API's 64 KiB limit and one of 1,001 is refused whole; hostile signed bodies are 4xx.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select

from tests.support.ledger import SECRETS
from tests.support.pages import sign_in
from tests.support.secret_scanner import KeyServer, Scanner, SigningKey, report
from tests.support.servers import LiveServer
from tests.support.smtp import text_of, to
from tokensmith.store.models import AuditEvent, MailOutbox
from tokensmith.tokens import format as token_format

PASSWORD = "a password for scanning tests"
URL = "https://github.com/octocat/hello/blob/1a2b3c4d/deploy/app.env"


@pytest.fixture(scope="module")
def signing() -> tuple[SigningKey, SigningKey]:
    """GitHub's current key, and the next one, published before it signs anything with it."""
    return SigningKey(), SigningKey()


@pytest.fixture(scope="module")
def key_server(signing) -> Iterator[KeyServer]:
    server = KeyServer().publish(*signing).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(key_server, smtp, tmp_path_factory) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("scanning") / "data",
        name="scanning",
        env={
            "TOKENSMITH_SECRET_SCANNING_KEYS_URL": key_server.url,
            "TOKENSMITH_SMTP_URL": smtp.url,
            "TOKENSMITH_MAIL_FROM": "Tokensmith <tokens@tokensmith.test>",
            "TOKENSMITH_MAIL_POLL_SECONDS": "0.2",
        },
    ).start(timeout=60)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def scanner(server) -> Scanner:
    return Scanner(server.base_url)


def person(server: LiveServer, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    server.create_user(name, password=PASSWORD)
    return name


def works(server: LiveServer, token: str) -> bool:
    with server.client() as client:
        return client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def found_events(server: LiveServer) -> int:
    with server.store() as session:
        return session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "token.found_by_scanning")
        )


def test_with_the_key_server_down_a_report_is_503_revokes_nothing_and_goes_through_once_it_is_back(
    server, key_server, scanner, signing
):
    """The first report this server gets: it has no keys yet, and cannot have them."""
    current, _next = signing
    owner = person(server, "down")
    token = server.create_token(owner, "while GitHub is down")
    body = report(token)
    key_server.stop()
    try:
        refused = scanner.post(body, current)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "signing_keys_unavailable" and "Retry-After" in refused.headers
        assert "Nothing was revoked" in refused.json()["message"]
        assert works(server, token)
    finally:
        key_server.start()
    deadline = time.monotonic() + 10  # tried again at most once a second
    while (answer := scanner.post(body, current)).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert answer.status_code == 200, answer.text
    assert not works(server, token)


def test_a_signed_report_revokes_every_live_token_and_tells_each_owner(server, scanner, signing, smtp):
    current, _next = signing
    alice, bob = person(server, "alice"), person(server, "bob")
    in_gist = server.create_token(alice, "in a gist")
    in_package = server.create_token(alice, "in a package")
    bobs = server.create_token(bob, "ci")
    keeper = server.create_token(alice, "not leaked")
    with server.client() as client:  # alice used it once, from here: the mail says so
        client.get("/api/v1/me", headers={"Authorization": f"Bearer {in_gist}", "User-Agent": "deploy-script/1"})
    server.used_token_row(alice, "in a gist")
    unknown = token_format.generate("tks_")
    npm = "https://www.npmjs.com/package/acme-deploy"
    body = json.dumps(
        [
            {"token": token, "type": "tokensmith_personal_access_token", "url": url, "source": source}
            for token, url, source in (
                (in_gist, URL, "content"),
                (in_package, npm, "npm"),
                (bobs, URL, "commit"),
                (unknown, URL, "content"),
            )
        ]
    ).encode()
    answer = scanner.post(body, current)
    assert answer.status_code == 200, answer.text
    assert [item["label"] for item in answer.json()] == ["true_positive"] * 3 + ["false_positive"]
    assert all(set(item) == {"token_hash", "token_type", "label"} for item in answer.json())
    with server.client() as client:
        refusal = client.get("/api/v1/me", headers={"Authorization": f"Bearer {in_gist}"})
        assert refusal.status_code == 401
        assert "GitHub's secret scanning found it in public" in refusal.json()["message"]
        log = client.get("/api/v1/audit", auth=(alice, keeper)).json()["events"]
    found = [event for event in log if event["action"] == "token.found_by_scanning"]
    assert len(found) == 2 and all(event["ip"] is None for event in found)  # GitHub's address is not hers
    assert any(f"GitHub's secret scanning at {URL}" in event["description"] for event in found)
    assert works(server, keeper)
    with server.client() as browser:
        assert sign_in(browser, alice, PASSWORD).status_code == 303
        page = browser.get("/tokens").text
    assert "found in public by GitHub&#39;s secret scanning" in page and 'class="attention"' in page
    [mail] = smtp.mailbox.wait_for(to(f"{alice}@example.test"))
    words = " ".join(text_of(mail).split())
    assert "2 of your tokens were revoked after GitHub found it in public" in mail["Subject"]
    assert f"“in a gist” (tks_…{in_gist[-4:]}), found at {URL}" in words
    assert "found at https://www.npmjs.com/package/acme-deploy" in words and "by deploy-script/1" in words, words
    smtp.mailbox.wait_for(to(f"{bob}@example.test"))
    for secret in (*SECRETS, in_gist, in_package, bobs):
        assert secret not in text_of(mail)
    # GitHub sends the same report again: the same answer, nothing revoked twice, nobody told twice.
    events = found_events(server)
    again = scanner.post(body, current)
    assert again.status_code == 200 and again.json() == answer.json()
    assert found_events(server) == events
    with server.store() as session:
        mails = session.scalar(
            select(func.count()).select_from(MailOutbox).where(MailOutbox.recipient == f"{alice}@example.test")
        )
    assert mails == 1


def test_the_next_published_key_signs_too(server, scanner, signing):
    """GitHub lists its next key before it signs with it: a rotation needs nothing of anyone."""
    _current, following = signing
    owner = person(server, "rotated")
    token = server.create_token(owner, "found after a rotation")
    assert scanner.post(report(token), following).status_code == 200
    assert not works(server, token)


def test_unsigned_badly_signed_or_replayed_with_another_body_revokes_nothing(server, scanner, signing):
    current, _next = signing
    owner = person(server, "unsigned")
    token = server.create_token(owner, "kept")
    body = report(token)
    signed_elsewhere = report(token_format.generate("tks_"))  # a genuine report GitHub sent
    cases = {
        "unsigned": scanner.post(body, None),
        "a signature of another body": scanner.post(body, current, signature=current.sign(signed_elsewhere)),
        "another key's signature": scanner.post(body, current, signature=SigningKey().sign(body)),
        "a key nobody published": scanner.post(body, SigningKey()),
        "not base64": scanner.post(body, current, signature="%%%"),
        "a tampered body": scanner.post(body.replace(b"content", b"c0ntent"), current, signature=current.sign(body)),
    }
    for what, answer in cases.items():
        assert answer.status_code == 401, (what, answer.text)
        assert answer.json()["error"] == "invalid_signature" and "Nothing was revoked" in answer.json()["message"]
    assert works(server, token)


def test_a_report_of_a_thousand_tokens_passes_the_apis_body_limit_and_past_that_it_is_refused(server, scanner, signing):
    current, _next = signing
    owner = person(server, "bulk")
    real = [server.create_token(owner, f"bulk {n}") for n in range(3)]
    findings = [*real, *(token_format.generate("tks_") for _ in range(997))]
    body = report(*findings)
    assert len(body) > 160 * 1024  # well past the API's 64 KiB
    answer = scanner.post(body, current)
    assert answer.status_code == 200, answer.text
    labels = [item["label"] for item in answer.json()]
    assert len(labels) == 1000 and labels[:3] == ["true_positive"] * 3 and set(labels[3:]) == {"false_positive"}
    assert not any(works(server, token) for token in real)

    survivor = server.create_token(owner, "in too long a report")
    too_many = report(survivor, *(token_format.generate("tks_") for _ in range(1000)))
    refused = scanner.post(too_many, current)
    assert refused.status_code == 422 and "1,000" in refused.json()["message"]
    too_large = report(survivor, *(token_format.generate("tks_") for _ in range(10)), url="https://x/" + "y" * 60_000)
    assert len(too_large) > 512 * 1024
    assert scanner.post(too_large, current).status_code == 413
    assert works(server, survivor)
    # The larger limit is this route's alone.
    with server.client() as client:
        leak_report = {"tokens": [token_format.generate("tks_") + "x" * 150 for _ in range(100)], "pad": "z" * 70_000}
        assert client.post("/api/v1/tokens/revoke", json=leak_report).status_code == 413


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe\x00garbage",
        b'{"token": "tks_x"}',
        b"[]",
        b"[1, 2, 3]",
        b'[{"type": "tokensmith_personal_access_token"}]',
        b'[{"token": 42}]',
        b'[{"token": "' + b"x" * 300 + b'"}]',
        b"[" * 5000 + b"]" * 5000,
        b'[{"token": "tks_x", "url": ' + b"[" * 2000 + b"]" * 2000 + b"}]",
    ],
)
def test_hostile_signed_bodies_are_refused_in_words_and_revoke_nothing(server, scanner, signing, body):
    current, _next = signing
    answer = scanner.post(body, current)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid_input" and "Nothing was revoked" in answer.json()["message"]


def test_headers_past_what_a_signature_is_are_refused_before_anything_is_read(server, scanner, signing):
    current, _next = signing
    body = report(token_format.generate("tks_"))
    for header in ("Github-Public-Key-Identifier", "Github-Public-Key-Signature"):
        answer = scanner.post(body, current, extra=[(header, "A" * 1000)])
        assert 400 <= answer.status_code < 500, answer.text
    with httpx.Client(base_url=server.base_url) as client:
        assert client.get(Scanner.path).status_code == 405
