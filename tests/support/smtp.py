"""A real SMTP server on loopback (aiosmtpd), keeping every message it is handed.

It runs in a thread of the test process (aiosmtpd's Controller), on a port of its own that it
keeps across ``stop`` and ``start``: a test can take it down and bring it back.
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.support.ports import free_port


class Mailbox:
    """What the SMTP server received, in order: the raw bytes and the parsed message."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, EmailMessage]] = []
        self._arrived = threading.Condition()
        # Recipients the server refuses, and its answer: "550 ..." for good, "451 ..." for now.
        self.refusals: dict[str, str] = {}

    async def handle_RCPT(self, server: object, session: object, envelope: object, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        if address in self.refusals:
            return self.refusals[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802 - aiosmtpd's name
        raw = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        with self._arrived:
            self.messages.append((raw, message))
            self._arrived.notify_all()
        return "250 OK"

    def matching(self, predicate: Callable[[EmailMessage], bool]) -> list[EmailMessage]:
        with self._arrived:
            return [message for _raw, message in self.messages if predicate(message)]

    def wait_for(self, predicate: Callable[[EmailMessage], bool], count: int = 1,
                 timeout: float = 10) -> list[EmailMessage]:
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
            f"received: {[str(m['Subject']) for _r, m in self.messages]}")
        return found

    def raw(self) -> bytes:
        with self._arrived:
            return b"\n".join(raw for raw, _message in self.messages)


class SmtpServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SmtpServer:
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def to(address: str) -> Callable[[EmailMessage], bool]:
    return lambda message: message["To"] == address


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()
