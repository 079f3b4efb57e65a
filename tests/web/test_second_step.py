"""The second step and the passkey sign-in over real HTTP, against hostile answers.

A live server whose public URL is http://localhost:PORT (so its relying party is ``localhost``),
driven as a client without JavaScript would, with a WebAuthn authenticator written in Python
(tests/support/authenticator.py) that breaks one check at a time. Each refusal is a clear 4xx,
and signs nobody in. The server believes X-Forwarded-For from loopback, so that each case counts
in the throttle under an address of its own (no traffic goes anywhere but 127.0.0.1).
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from tests.support.authenticator import SoftAuthenticator, b64url
from tests.support.ledger import remember
from tests.support.pages import csrf_of, sign_in
from tests.support.servers import LiveServer
from tokensmith.store.models import Passkey

_addresses = itertools.count(1)


@pytest.fixture(scope="module")
def at_localhost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose public URL is http://localhost:PORT."""
    live = LiveServer(tmp_path_factory.mktemp("second-step") / "data", env={"TOKENSMITH_TRUSTED_PROXIES": "127.0.0.1"})
    live.env["TOKENSMITH_PUBLIC_URL"] = f"http://localhost:{live.port}"
    yield live.start()
    live.stop()


def client_from_elsewhere(at_localhost: LiveServer) -> httpx.Client:
    """A client whose requests come, as the server sees them, from an address of their own."""
    return at_localhost.client(headers={"X-Forwarded-For": f"198.51.100.{next(_addresses)}"})


def a_person(at_localhost: LiveServer) -> tuple[str, str]:
    username, password = f"step-{secrets.token_hex(4)}", remember("pw-" + secrets.token_urlsafe(18))
    at_localhost.create_user(username, password=password)
    return username, password


def add_a_passkey(at_localhost: LiveServer, client: httpx.Client, name: str = "Soft key") -> SoftAuthenticator:
    """Signed in with ``client``, add a passkey as the Security page's script does."""
    csrf = csrf_of(client.get("/settings/security"))
    options = client.post("/settings/security/passkeys/options", headers={"X-CSRF-Token": csrf}).json()
    authenticator = SoftAuthenticator(origin=f"http://localhost:{at_localhost.port}", rp_id="localhost")
    reply = client.post(
        "/settings/security/passkeys",
        data={"name": name, "credential": json.dumps(authenticator.register(options)), "csrf_token": csrf},
    )
    assert reply.status_code == 200, reply.text
    assert f"Your passkey “{name}” was added." in reply.text
    return authenticator


@pytest.fixture(scope="module")
def enrolled(at_localhost: LiveServer) -> tuple[str, str, SoftAuthenticator]:
    username, password = a_person(at_localhost)
    with client_from_elsewhere(at_localhost) as client:
        assert sign_in(client, username, password).headers["location"] == "/tokens"
        return username, password, add_a_passkey(at_localhost, client)


def begin_passkey_sign_in(client: httpx.Client) -> tuple[str, dict[str, Any]]:
    csrf = csrf_of(client.get("/login"))
    reply = client.post("/login/passkey/options", headers={"X-CSRF-Token": csrf})
    assert reply.status_code == 200, reply.text
    return csrf, reply.json()


def answer(client: httpx.Client, csrf: str, credential: dict[str, Any] | str) -> httpx.Response:
    text = credential if isinstance(credential, str) else json.dumps(credential)
    return client.post("/login/passkey", data={"credential": text, "csrf_token": csrf, "next": "/tokens"})


def stored_count(at_localhost: LiveServer, authenticator: SoftAuthenticator) -> int:
    with at_localhost.store() as session:
        return session.scalars(
            select(Passkey.sign_count).where(Passkey.credential_id == authenticator.credential_id)
        ).one()


def signed_in(client: httpx.Client) -> bool:
    return "tokensmith_session" in client.cookies or client.get("/tokens").status_code == 200


def test_a_passkey_alone_signs_in_and_its_counter_moves_on(
    at_localhost: LiveServer, enrolled: tuple[str, str, SoftAuthenticator]
) -> None:
    username, _password, authenticator = enrolled
    with client_from_elsewhere(at_localhost) as client:
        csrf, options = begin_passkey_sign_in(client)
        assert options["rpId"] == "localhost" and options["userVerification"] == "required"
        assert options["allowCredentials"] == []  # discoverable: the passkey says whose it is
        reply = answer(client, csrf, authenticator.assertion(options))
        assert reply.status_code == 303 and reply.headers["location"] == "/tokens"
        assert f"Signed in as <strong>{username}</strong>" in client.get("/tokens").text


@pytest.mark.parametrize(
    ("hostile", "words"),
    [
        ("another origin", "another site (origin), not http://localhost:"),
        ("another relying party", "another site (relying party), not localhost"),
        ("forged signature", "signature does not verify"),
        ("counter gone backwards", "counter went backwards"),
        ("no user verification", "check it is you (a PIN or a fingerprint)"),
        ("replayed answer", "not for this request (used already, or from an earlier page)"),
        ("unknown passkey", "This passkey is not registered here"),
        ("not JSON", "could not be read or verified"),
        ("too large", "characters long; at most 16,384 are accepted"),
    ],
)
def test_a_hostile_passkey_answer_is_refused_in_words_and_signs_in_nobody(
    at_localhost: LiveServer, enrolled: tuple[str, str, SoftAuthenticator], hostile: str, words: str
) -> None:
    _username, _password, authenticator = enrolled
    with client_from_elsewhere(at_localhost) as client:
        csrf, options = begin_passkey_sign_in(client)
        if hostile == "another origin":
            sent: dict[str, Any] | str = authenticator.assertion(options, origin="https://evil.example")
        elif hostile == "another relying party":
            sent = authenticator.assertion(options, rp_id="evil.example")
        elif hostile == "forged signature":
            sent = authenticator.assertion(options, signer=ec.generate_private_key(ec.SECP256R1()))
        elif hostile == "counter gone backwards":
            sent = authenticator.assertion(options, counter=stored_count(at_localhost, authenticator) - 1)
        elif hostile == "no user verification":
            sent = authenticator.assertion(options, verified=False)
        elif hostile == "replayed answer":
            # An answer that worked once, replayed against a new sign-in (and its new challenge).
            with client_from_elsewhere(at_localhost) as first:
                first_csrf, first_options = begin_passkey_sign_in(first)
                used = authenticator.assertion(first_options)
                assert answer(first, first_csrf, used).status_code == 303
            sent = used
        elif hostile == "unknown passkey":
            stranger = SoftAuthenticator(origin=authenticator.origin, rp_id="localhost", user_handle=b"x" * 32)
            sent = stranger.assertion(options)
        elif hostile == "not JSON":
            sent = "{this is not json"
        else:
            sent = {**authenticator.assertion(options), "padding": "A" * 20_000}
        reply = answer(client, csrf, sent)
        assert reply.status_code == 401, reply.text
        assert words in reply.text.replace("&#34;", '"')
        assert "Traceback" not in reply.text
        assert not signed_in(client)


def test_a_body_far_too_large_is_refused_before_it_is_read(at_localhost: LiveServer) -> None:
    with client_from_elsewhere(at_localhost) as client:
        csrf, _options = begin_passkey_sign_in(client)
        reply = answer(client, csrf, "x" * 1_000_000)
        assert reply.status_code == 413 and "larger than POST /login/passkey accepts" in reply.text
        assert not signed_in(client)


def test_a_huge_attestation_or_another_origin_adds_no_passkey(at_localhost: LiveServer) -> None:
    username, password = a_person(at_localhost)
    with client_from_elsewhere(at_localhost) as client:
        sign_in(client, username, password)
        for hostile, words in (
            ("huge", "characters long; at most 16,384 are accepted"),
            ("origin", "another site (origin)"),
        ):
            csrf = csrf_of(client.get("/settings/security"))
            options = client.post("/settings/security/passkeys/options", headers={"X-CSRF-Token": csrf}).json()
            authenticator = SoftAuthenticator(
                origin="https://evil.example" if hostile == "origin" else f"http://localhost:{at_localhost.port}",
                rp_id="localhost",
            )
            made = authenticator.register(options, padding=30_000 if hostile == "huge" else 0)
            reply = client.post(
                "/settings/security/passkeys",
                data={"name": "Hostile", "credential": json.dumps(made), "csrf_token": csrf},
            )
            assert reply.status_code == 422, reply.text
            assert words in reply.text and "No passkey yet" in reply.text


def test_a_half_done_sign_in_opens_nothing(
    at_localhost: LiveServer, enrolled: tuple[str, str, SoftAuthenticator]
) -> None:
    username, password, _authenticator = enrolled
    with client_from_elsewhere(at_localhost) as client:
        reply = sign_in(client, username, password)
        assert reply.status_code == 303 and reply.headers["location"] == "/login/second-step"
        pending = next(cookie for cookie in client.cookies.jar if cookie.name == "tokensmith_sign_in")
        assert pending.path == "/login" and "tokensmith_session" not in client.cookies
        assert client.get("/tokens").headers["location"].startswith("/login")
        assert client.get("/settings/security").headers["location"].startswith("/login")
        # Its secret is no session, and no credential of the API either.
        with at_localhost.client(cookies={"tokensmith_session": pending.value or ""}) as other:
            assert other.get("/tokens").status_code == 303
        assert httpx.get(f"{at_localhost.base_url}/api/v1/me", auth=(username, password)).status_code == 401
        step = client.get("/login/second-step")
        assert step.status_code == 200 and "Second step" in step.text and "Use a passkey" in step.text


def test_the_second_step_takes_only_the_persons_own_passkey(
    at_localhost: LiveServer, enrolled: tuple[str, str, SoftAuthenticator]
) -> None:
    _username, _password, theirs = enrolled
    username, password = a_person(at_localhost)
    with client_from_elsewhere(at_localhost) as client:
        sign_in(client, username, password)
        mine = add_a_passkey(at_localhost, client, "Mine")
    with client_from_elsewhere(at_localhost) as client:
        sign_in(client, username, password)
        csrf = csrf_of(client.get("/login/second-step"))
        options = client.post("/login/second-step/passkey-options", headers={"X-CSRF-Token": csrf}).json()
        assert [key["id"] for key in options["allowCredentials"]] == [b64url(mine.credential_id)]
        reply = client.post(
            "/login/second-step", data={"credential": json.dumps(theirs.assertion(options)), "csrf_token": csrf}
        )
        assert reply.status_code == 401 and "not registered here for this account" in reply.text
        assert not signed_in(client)
        options = client.post("/login/second-step/passkey-options", headers={"X-CSRF-Token": csrf}).json()
        reply = client.post(
            "/login/second-step", data={"credential": json.dumps(mine.assertion(options)), "csrf_token": csrf}
        )
        assert reply.status_code == 303 and reply.headers["location"] == "/tokens"
        assert signed_in(client)


def test_the_embedded_default_takes_passkeys_at_localhost(server: LiveServer) -> None:
    """The shared server, started as `make serve` starts one (public URL http://127.0.0.1:PORT):
    its relying party is localhost, and a passkey made at http://localhost:PORT is taken."""
    username, password = a_person(server)
    with server.client() as client:
        sign_in(client, username, password)
        csrf = csrf_of(client.get("/settings/security"))
        options = client.post("/settings/security/passkeys/options", headers={"X-CSRF-Token": csrf}).json()
        assert options["rp"]["id"] == "localhost"
        authenticator = SoftAuthenticator(origin=f"http://localhost:{server.port}", rp_id="localhost")
        reply = client.post(
            "/settings/security/passkeys",
            data={"name": "Here", "credential": json.dumps(authenticator.register(options)), "csrf_token": csrf},
        )
        assert reply.status_code == 200 and "Your passkey “Here” was added." in reply.text
