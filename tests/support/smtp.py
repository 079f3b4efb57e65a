"""A real SMTP server on loopback (aiosmtpd), keeping every message it is handed.

It runs in a thread of the test process (aiosmtpd's Controller), on a port of its own that it
keeps across ``stop`` and ``start``: a test can take it down and bring it back.
"""

from __future__ import annotations

import email
import email.policy
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.ports import free_port


class Mailbox:
    """What the SMTP server received, in order: the raw bytes and the parsed message."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, EmailMessage]] = []
        self._arrived = threading.Condition()
        # Recipients the server refuses, and its answer: "550 ..." for good, "451 ..." for now.
        self.refusals: dict[str, str] = {}

    async def handle_RCPT(
        self,
        server: object,
        session: object,
        envelope: object,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refusals:
            return self.refusals[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        with self._arrived:
            self.messages.append((raw, message))
            self._arrived.notify_all()
        return "250 OK"

    def matching(self, predicate: Callable[[EmailMessage], bool]) -> list[EmailMessage]:
        with self._arrived:
            return [message for _raw, message in self.messages if predicate(message)]

    def wait_for(
        self, predicate: Callable[[EmailMessage], bool], count: int = 1, timeout: float = 10
    ) -> list[EmailMessage]:
        """The messages matching ``predicate`` once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = [message for _raw, message in self.messages if predicate(message)]
                if len(found) >= count or time.monotonic() >= deadline:
                    break
                self._arrived.wait(max(0.0, deadline - time.monotonic()))
        assert len(found) >= count, (
            f"expected {count} matching message(s), got {len(found)}; "
            f"received: {[str(m['Subject']) for _r, m in self.messages]}"
        )
        return found

    def raw(self) -> bytes:
        with self._arrived:
            return b"\n".join(raw for raw, _message in self.messages)


class SmtpServer:
    """``tls``: None (plain), "starttls" (STARTTLS required) or "smtps" (TLS from the start),
    with the certificate ``certificate`` (see ``self_signed``); ``login``: the (user, password)
    it requires, over TLS."""

    def __init__(
        self,
        *,
        tls: str | None = None,
        certificate: tuple[Path, Path] | None = None,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        self.tls = tls
        self.certificate = certificate
        self.login = login
        self.logins: list[str] = []  # who logged in
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        scheme = {None: "smtp", "starttls": "smtp+starttls", "smtps": "smtps"}[self.tls]
        return f"{scheme}://127.0.0.1:{self.port}"

    def _authenticate(
        self, server: object, session: object, envelope: object, mechanism: str, auth_data: object
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.login is not None
            and (auth_data.login.decode(), auth_data.password.decode()) == self.login
        )
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    def start(self) -> SmtpServer:
        context = None
        if self.tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.certificate)
        options: dict[str, object] = {}
        if self.login:
            # aiosmtpd does not count TLS from the start (smtps) as TLS for AUTH: it is.
            options.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=self.tls != "smtps")
        if self.tls == "starttls":
            options.update(tls_context=context, require_starttls=True)
        self._controller = Controller(
            self.mailbox,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="127.0.0.1",
            ssl_context=context if self.tls == "smtps" else None,
            **options,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by openssl; the certificate is its own CA."""
    certificate, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(certificate),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return certificate, key


def to(address: str) -> Callable[[EmailMessage], bool]:
    return lambda message: message["To"] == address


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()
