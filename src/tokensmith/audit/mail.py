"""Mail to token owners: a durable outbox in the store, and the thread that delivers it.

A notice (notices.py says what each one reads) is queued by ``queue``, in the transaction of
what it tells: it goes out if that commits and never if it rolls back. A ``MailSender``, a thread
of each server process, delivers queued mail over SMTP after the commit (woken at once by a
commit of its own process that queued some, and looking every ``poll_seconds`` for the rest), so
that no request waits for the SMTP server. While that server is down the sender tries again,
waiting twice as long each time, up to ten times ``poll_seconds``; nothing is lost.

Several processes and instances share one outbox: a sender claims a row (a conditional UPDATE
whose row count says whether it won) before it sends, for ``CLAIM_SECONDS``, so that each mail is
sent once. (A process killed between the SMTP server's acceptance and the row's marking sends
that one mail again once the claim lapses: at least once, with the same Message-ID, which mail
readers show once.)

Mail is off unless TOKENSMITH_SMTP_URL is set: then nothing is queued at all. ``configure``
switches it on for the process (the server's, an administration command's).
"""

from __future__ import annotations

import logging
import os
import secrets
import smtplib
import socket
import ssl
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Protocol

from sqlalchemy import ColumnElement, Engine, delete, or_, select, update
from sqlalchemy import event as orm_event
from sqlalchemy.orm import Session

from tokensmith import metrics
from tokensmith.clock import utcnow
from tokensmith.config import MailSettings, Settings
from tokensmith.housekeeping import Periodic
from tokensmith.store.database import connection_to, rows_changed
from tokensmith.store.models import MailOutbox

log = logging.getLogger("tokensmith.mail")

BATCH = 50  # rows a round reads at most; the next round, at once, takes the rest
CLAIM_SECONDS = 300  # far longer than one message's SMTP exchange (SMTP_TIMEOUT)
SMTP_TIMEOUT = 30.0
KEEP_SENT = timedelta(days=7)  # sent and given-up mail is removed after this
GIVE_UP_AFTER = timedelta(days=3)  # mail still unsent after this is given up
MAX_BACKOFF_ROUNDS = 10  # a retry waits at most this many poll intervals
_OUTBOX = MailOutbox.__table__


@dataclass(frozen=True)
class MailConfig:
    """What queueing needs to know: that mail is on, and the addresses mail may point to."""

    mail: MailSettings
    public_url: str
    tokens_page_url: str


_config: MailConfig | None = None
_senders: weakref.WeakSet[MailSender] = weakref.WeakSet()
_senders_lock = threading.Lock()


def configure(settings: Settings) -> MailConfig | None:
    """Mail on (TOKENSMITH_SMTP_URL set) or off for this process; what ``current`` answers."""
    global _config
    _config = MailConfig(settings.mail, settings.public_url, settings.tokens_page_url) if settings.mail else None
    return _config


def current() -> MailConfig | None:
    return _config


def plausible_address(address: str | None) -> bool:
    """An address mail can be sent to: one ``@``, no spaces or line breaks (which would be a
    header injection), at most 254 characters. Accounts without one get no mail."""
    if not address or len(address) > 254 or address.count("@") != 1:
        return False
    local, domain = address.split("@")
    return bool(local) and "." in domain and not any(char.isspace() or char in '<>,;"' for char in address)


def queue(
    session: Session, *, kind: str, recipient: str, subject: str, body: str, user_id: int | None = None
) -> MailOutbox:
    """Put a mail in the outbox, in the caller's transaction; sent once it commits."""
    config = _config
    domain = config.mail.sender_domain if config else "tokensmith.invalid"
    now = utcnow()
    row = MailOutbox(
        kind=kind,
        user_id=user_id,
        recipient=recipient,
        subject=subject[:300],
        body=body,
        message_id=f"<{secrets.token_hex(16)}@{domain}>",
        created_at=now,
        due_at=now,
        attempts=0,
    )
    session.add(row)
    session.info["mail_queued"] = True
    return row


@orm_event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    """A commit that queued mail wakes this process's senders: it goes out at once. (A
    savepoint's release is no commit: the mail waits for the transaction's.)"""
    if session.in_nested_transaction():
        return
    session.info.pop("mail_pending", None)
    if session.info.pop("mail_queued", False):
        with _senders_lock:
            senders = list(_senders)
        for sender in senders:
            sender.wake()


@orm_event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: object) -> None:
    if getattr(previous_transaction, "parent", None) is None:  # the transaction, not a savepoint
        session.info.pop("mail_pending", None)
        session.info.pop("mail_queued", None)


# --- delivery -------------------------------------------------------------------------------------


class OutboxRow(Protocol):
    """What a sender reads of a mail_outbox row (a Core row: no ORM session in the sender)."""

    id: int
    recipient: str
    subject: str
    body: str
    message_id: str
    created_at: datetime
    attempts: int


def message_of(row: OutboxRow, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row.recipient
    message["Subject"] = row.subject
    message["Date"] = format_datetime(row.created_at)
    message["Message-ID"] = row.message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(row.body)
    return message


def connect(mail: MailSettings) -> smtplib.SMTP:
    """A connection to the SMTP server, encrypted as the URL's scheme says, logged in if the
    URL names a user."""
    context = ssl.create_default_context()
    if mail.scheme == "smtps":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(mail.host, mail.port, timeout=SMTP_TIMEOUT, context=context)
    else:
        smtp = smtplib.SMTP(mail.host, mail.port, timeout=SMTP_TIMEOUT)
    try:
        if mail.scheme == "smtp+starttls":
            smtp.starttls(context=context)
        if mail.username:
            smtp.login(mail.username, mail.password or "")
    except BaseException:
        smtp.close()
        raise
    return smtp


# What says the SMTP server (or the way to it) is unavailable: try again later, every message.
_SERVER_FAILURES = (
    OSError,
    smtplib.SMTPConnectError,
    smtplib.SMTPServerDisconnected,
    smtplib.SMTPHeloError,
    smtplib.SMTPAuthenticationError,
)
# What one message was refused for: permanent (5xx) or not (4xx), as the server's code says.
_MESSAGE_FAILURES = (
    smtplib.SMTPRecipientsRefused,
    smtplib.SMTPSenderRefused,
    smtplib.SMTPDataError,
    smtplib.SMTPNotSupportedError,
)


def _refusal_code(error: Exception) -> int:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _text in error.recipients.values()]
        return min(codes) if codes else 550
    return getattr(error, "smtp_code", 550)


def _error_name(error: BaseException) -> str:
    """How a failure is kept and logged: its kind and SMTP code, never its words (which can
    quote an address or, from a misconfigured server, a credential)."""
    code = getattr(error, "smtp_code", None)
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code = _refusal_code(error)
    return f"{type(error).__name__}{f' {code}' if code else ''}"[:200]


class MailSender(Periodic):
    """Delivers the outbox: every ``poll_seconds``, at once when woken, later while failing."""

    def __init__(self, engine: Engine, mail: MailSettings) -> None:
        super().__init__("tokensmith-mail-sender", mail.poll_seconds)
        self.engine = engine
        self.mail = mail
        self.name_in_store = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.failures = 0  # rounds in a row that could not reach the SMTP server

    def start(self) -> MailSender:
        with _senders_lock:
            _senders.add(self)
        super().start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        with _senders_lock:
            _senders.discard(self)
        super().stop(timeout)

    def delay(self) -> float:
        if self.failures == 0:
            return self.interval
        return self.interval * min(2.0 ** (self.failures - 1), MAX_BACKOFF_ROUNDS)

    def run_once(self) -> None:
        while self.deliver() == BATCH:  # a full batch: there may be more
            pass

    def deliver(self) -> int:
        """One pass over the due mail: how many rows it read."""
        now = utcnow()
        with connection_to(self.engine) as connection:
            rows = connection.execute(
                select(_OUTBOX)
                .where(_OUTBOX.c.due_at <= now, _unclaimed(now))
                .order_by(_OUTBOX.c.due_at, _OUTBOX.c.id)
                .limit(BATCH)
            ).all()
        smtp: smtplib.SMTP | None = None
        try:
            for row in rows:
                if not self._claim(row.id):
                    continue  # another sender has it, or sent it already
                try:
                    message = message_of(row, self.mail.sender)
                except Exception as error:  # noqa: BLE001 a header that cannot be written: it never will be
                    self._give_up(row, error)
                    continue
                try:
                    if smtp is None:
                        smtp = connect(self.mail)
                    smtp.send_message(message)
                except _MESSAGE_FAILURES as error:
                    if smtp is not None:  # refused this message; the next may pass
                        self._refused(row, error)
                        continue
                    self._unavailable(row.id, error)  # STARTTLS or AUTH missing: the server's doing
                    return 0
                except _SERVER_FAILURES as error:
                    self._unavailable(row.id, error)
                    return 0  # the rest waits for the next round
                self._sent(row.id)
            self.failures = 0
        finally:
            if smtp is not None:
                try:
                    smtp.quit()
                except Exception:  # noqa: BLE001 a server gone mid-goodbye: the socket is closed all the same
                    smtp.close()
        return len(rows)

    def _unavailable(self, row_id: int, error: BaseException) -> None:
        self._release(row_id, error)
        self.failures += 1
        metrics.mail_failed()
        log.warning(
            "Mail: the SMTP server at %s:%s cannot be reached (%s); trying again in %.0f s",
            self.mail.host,
            self.mail.port,
            _error_name(error),
            self.delay(),
        )

    def _update(self, row_id: int, **values: object) -> int:
        with connection_to(self.engine) as connection:
            return connection.execute(
                update(_OUTBOX)
                .where(_OUTBOX.c.id == row_id, _OUTBOX.c.claimed_by == self.name_in_store)
                .values(**values)
            ).rowcount

    def _claim(self, row_id: int) -> bool:
        now = utcnow()
        with connection_to(self.engine) as connection:
            claimed = connection.execute(
                update(_OUTBOX)
                .where(_OUTBOX.c.id == row_id, _OUTBOX.c.due_at.is_not(None), _unclaimed(now))
                .values(claimed_by=self.name_in_store, claimed_until=now + timedelta(seconds=CLAIM_SECONDS))
            ).rowcount
        return claimed == 1

    def _sent(self, row_id: int) -> None:
        self._update(
            row_id,
            sent_at=utcnow(),
            due_at=None,
            claimed_by=None,
            claimed_until=None,
            attempts=_OUTBOX.c.attempts + 1,
            last_error=None,
        )
        metrics.mail_sent()

    def _release(self, row_id: int, error: BaseException) -> None:
        self._update(
            row_id, claimed_by=None, claimed_until=None, attempts=_OUTBOX.c.attempts + 1, last_error=_error_name(error)
        )

    def _refused(self, row: OutboxRow, error: Exception) -> None:
        """A message the server refused: given up for good (5xx), or retried later (4xx)."""
        code = _refusal_code(error)
        metrics.mail_failed()
        if 400 <= code < 500:
            wait = self.interval * min(2.0**row.attempts, MAX_BACKOFF_ROUNDS)
            self._update(
                row.id,
                due_at=utcnow() + timedelta(seconds=wait),
                claimed_by=None,
                claimed_until=None,
                attempts=_OUTBOX.c.attempts + 1,
                last_error=_error_name(error),
            )
            return
        self._give_up(row, error)

    def _give_up(self, row: OutboxRow, error: Exception) -> None:
        log.warning("Mail: mail %s is given up (%s)", row.id, _error_name(error))
        self._update(
            row.id,
            due_at=None,
            failed_at=utcnow(),
            claimed_by=None,
            claimed_until=None,
            attempts=_OUTBOX.c.attempts + 1,
            last_error=_error_name(error),
        )


def _unclaimed(now: datetime) -> ColumnElement[bool]:
    return or_(_OUTBOX.c.claimed_until.is_(None), _OUTBOX.c.claimed_until < now)


def prune(session: Session, now: datetime | None = None) -> int:
    """Give up mail unsent for GIVE_UP_AFTER, and remove what was sent or given up KEEP_SENT
    ago. Returns how many rows were removed."""
    now = now or utcnow()
    session.execute(
        update(_OUTBOX)
        .where(_OUTBOX.c.due_at.is_not(None), _OUTBOX.c.created_at < now - GIVE_UP_AFTER, _unclaimed(now))
        .values(due_at=None, failed_at=now, last_error="given up: unsent for 3 days")
    )
    return rows_changed(
        session, delete(_OUTBOX).where(or_(_OUTBOX.c.sent_at < now - KEEP_SENT, _OUTBOX.c.failed_at < now - KEEP_SENT))
    )
