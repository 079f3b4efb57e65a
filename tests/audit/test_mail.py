"""Mail to token owners, end to end: real ``tokensmith serve`` processes, a real SMTP server
(aiosmtpd) on loopback. A token created or rotated, revoked by someone else (a leak report, an
administrator), about to expire, expired: each mailed once, after the commit, never delaying the
request, and with no secret in it; retried while the SMTP server is down; sent once by two
instances on one PostgreSQL; nothing queued when mail is not configured. (What each mail says for
every reason is in test_notices.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from tests.support.ledger import SECRETS, remember
from tests.support.pages import csrf_of, sign_in
from tests.support.servers import LiveServer
from tests.support.smtp import SmtpServer, text_of, to
from tokensmith.clock import utcnow
from tokensmith.store.models import MailOutbox, PersonalToken

PASSWORD = "a password for mail tests"
REMINDER_SECONDS = 0.3


@pytest.fixture(scope="module")
def mailing_server(smtp, tmp_path_factory) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("mailing") / "data",
        name="mailing",
        env={
            "TOKENSMITH_SMTP_URL": smtp.url,
            "TOKENSMITH_MAIL_FROM": "Tokensmith <tokens@tokensmith.test>",
            "TOKENSMITH_MAIL_POLL_SECONDS": "0.2",
            "TOKENSMITH_MAIL_REMINDER_SECONDS": str(REMINDER_SECONDS),
        },
    ).start(timeout=60)
    yield live
    live.stop()


@pytest.fixture
def person(mailing_server) -> Iterator[tuple[str, httpx.Client]]:
    name = f"mia-{uuid.uuid4().hex[:8]}"
    mailing_server.create_user(name, password=PASSWORD)
    with mailing_server.client() as client:
        assert sign_in(client, name, PASSWORD).status_code == 303
        yield name, client


def address(name: str) -> str:
    return f"{name}@example.test"


def create_on_page(client: httpx.Client, name: str, **fields: str) -> str:
    page = client.get("/tokens")
    response = client.post("/tokens", data={"name": name, "csrf_token": csrf_of(page), **fields})
    assert response.status_code == 201, response.text
    return remember(re.search(r'data-testid="new-token" id="new-token">(\S+)</code>', response.text).group(1))


def about(name: str, token_name: str, words: str):
    return lambda message: (
        message["To"] == address(name) and token_name in message["Subject"] and words in message["Subject"]
    )


def words_of(message) -> str:
    """The mail's text with its lines run together: what it says, however it is wrapped."""
    return " ".join(text_of(message).split())


def assert_no_secret(message, *secrets: str) -> None:
    """Neither in the bytes sent nor in the text they decode to (quoted-printable breaks lines)."""
    raw, decoded = message.as_bytes(), "".join(text_of(message).split())
    for secret in (*secrets, *SECRETS, PASSWORD):
        assert secret.encode() not in raw and secret.replace(" ", "") not in decoded


def test_a_token_created_on_the_page_is_mailed_to_its_owner_with_no_secret(mailing_server, smtp, person):
    name, client = person
    started = time.monotonic()
    secret = create_on_page(client, "deploy key", expiration="30")
    assert time.monotonic() - started < 2  # the page does not wait for the mail
    [message] = smtp.mailbox.wait_for(about(name, "deploy key", "created"))
    body = text_of(message)
    assert message["From"] == "Tokensmith <tokens@tokensmith.test>"
    assert re.fullmatch(r"<[0-9a-f]{32}@tokensmith\.test>", message["Message-ID"])
    assert message["Date"] and message["Auto-Submitted"] == "auto-generated"
    assert f"“deploy key” (tks_…{secret[-4:]})" in body
    assert f"By:       {name}, from 127.0.0.1" in body
    assert "Expires:  " in body and "never" not in body.split("Expires:")[1].splitlines()[0]
    assert "revoke the token now on My Tokens" in words_of(message)
    assert f"{mailing_server.base_url}/tokens" in body
    assert_no_secret(message, secret, secret[4:36])


def test_a_rotation_is_one_mail_and_the_owner_revoking_is_none(mailing_server, smtp, person):
    name, client = person
    secret = create_on_page(client, "rotating")
    smtp.mailbox.wait_for(about(name, "rotating", "created"))
    token_id = client.get("/api/v1/me", auth=(name, secret)).json()["token"]["id"]
    rotated = client.post(f"/api/v1/tokens/{token_id}/rotate", auth=(name, secret))
    new_secret = remember(rotated.json()["token"])
    [message] = smtp.mailbox.wait_for(about(name, "rotating", "rotated"))
    assert f"(tks_…{new_secret[-4:]})" in text_of(message)
    assert_no_secret(message, secret, new_secret)
    assert client.delete(f"/api/v1/tokens/{rotated.json()['id']}", auth=(name, new_secret)).status_code == 204
    create_on_page(client, "after the revocation")  # its mail comes after any about the revocation
    smtp.mailbox.wait_for(about(name, "after the revocation", "created"))
    assert smtp.mailbox.matching(to(address(name))) and not smtp.mailbox.matching(
        lambda m: m["To"] == address(name) and "revoked" in m["Subject"]
    )
    assert len(smtp.mailbox.matching(about(name, "rotating", ""))) == 2  # created, rotated: nothing else


def test_a_leak_report_tells_the_owner_where_they_last_used_the_token(mailing_server, smtp, person):
    name, client = person
    secret = create_on_page(client, "leaky")
    assert client.get("/api/v1/me", auth=(name, secret)).status_code == 200
    mailing_server.used_token_row(name, "leaky")
    with mailing_server.client() as stranger:
        assert stranger.post("/api/v1/tokens/revoke", json={"tokens": [secret]}).status_code == 202
    [message] = smtp.mailbox.wait_for(about(name, "leaky", "reported leaked"))
    body = text_of(message)
    assert f"(tks_…{secret[-4:]})" in body and "Why:      it was reported leaked" in body
    assert "Last used: " in body and "from 127.0.0.1 by python-httpx/" in words_of(message)
    assert "create a new token" in words_of(message)
    assert_no_secret(message, secret)


def test_an_administrator_revoking_every_token_sends_one_mail_that_lists_them(mailing_server, smtp, person):
    name, _client = person
    for token_name in ("laptop", "ci"):
        mailing_server.create_token(name, token_name)
    result = mailing_server.cli("tokens", "revoke-all", "--user", name)
    assert result.returncode == 0, result.stderr
    [message] = smtp.mailbox.wait_for(
        lambda m: m["To"] == address(name) and "2 of your tokens were revoked" in m["Subject"]
    )
    body = text_of(message)
    assert "“laptop” (tks_…" in body and "“ci” (tks_…" in body
    assert "Why: an administrator (admin (shell)) revoked it" in words_of(message)
    assert "by an administrator" in message["Subject"]


def test_a_token_made_from_the_shell_is_mailed_with_the_running_servers_address(mailing_server, smtp, person):
    """Issue 18: from a shell without TOKENSMITH_PUBLIC_URL, the mail linked to
    http://127.0.0.1:8000/tokens whatever the server's address. The server records its public
    URL in the store when it starts (deployment.py); the shell's own variable still wins."""
    name, _client = person
    shell = {key: value for key, value in mailing_server.env.items() if key != "TOKENSMITH_PUBLIC_URL"}
    for token_name, env in (
        ("from the shell", shell),
        ("from a shell that says", {**shell, "TOKENSMITH_PUBLIC_URL": "https://tokens.example.test"}),
    ):
        made = subprocess.run(
            [sys.executable, "-m", "tokensmith", "tokens", "create", "--user", name, "--name", token_name],
            env=env,
            cwd=mailing_server.data_dir.parent,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        remember(made.stdout.strip())
    [told] = smtp.mailbox.wait_for(about(name, "from the shell", "created"))
    assert f"{mailing_server.base_url}/tokens" in text_of(told) and "127.0.0.1:8000" not in text_of(told)
    [said] = smtp.mailbox.wait_for(about(name, "from a shell that says", "created"))
    assert "https://tokens.example.test/tokens" in text_of(said)


def test_reminders_come_once_for_a_token_expiring_within_7_days_and_once_it_has_expired(mailing_server, smtp, person):
    name, _client = person
    now = utcnow()
    # Made outside the reminders' reach, then given their ages in one transaction: the job runs
    # every 0.3 s and must never see a token half set up (it notes each token it has looked at).
    mailing_server.create_token(name, "quarterly", expires_at=now + timedelta(days=60))
    mailing_server.create_token(name, "weekly", expires_at=now + timedelta(days=6))  # lived 6 days only
    mailing_server.create_token(name, "old", expires_at=now + timedelta(days=60))
    with mailing_server.store() as session:
        ids = {
            row.name: row.id
            for row in session.scalars(
                select(PersonalToken).where(
                    PersonalToken.name.in_(["quarterly", "weekly", "old"]), PersonalToken.revoked_at.is_(None)
                )
            )
            if row.owner.username == name
        }
        session.execute(
            update(PersonalToken)
            .where(PersonalToken.id == ids["quarterly"])
            .values(created_at=now - timedelta(days=84), expires_at=now + timedelta(days=6))
        )
        session.execute(
            update(PersonalToken)
            .where(PersonalToken.id == ids["old"])
            .values(created_at=now - timedelta(days=90), expires_at=now - timedelta(hours=1))
        )
    [expiring] = smtp.mailbox.wait_for(about(name, "quarterly", "expires on"))
    [expired] = smtp.mailbox.wait_for(about(name, "old", "has expired"))
    assert "in 6 days" in words_of(expiring) and "create a new token" in words_of(expiring)
    assert "expired on" in words_of(expired) and "Last used: never" in words_of(expired)
    time.sleep(REMINDER_SECONDS * 5)  # rounds enough to send any of them twice
    assert len(smtp.mailbox.matching(about(name, "quarterly", "expires on"))) == 1
    assert len(smtp.mailbox.matching(about(name, "old", "expired"))) == 1
    assert not smtp.mailbox.matching(about(name, "weekly", "expires"))  # its creation said when it ends
    with mailing_server.store() as session:
        pending = session.scalars(select(MailOutbox).where(MailOutbox.due_at.is_not(None))).all()
    assert pending == []


def test_mail_waits_while_the_smtp_server_is_down_and_goes_once_it_is_back(mailing_server, smtp, person):
    name, client = person
    smtp.stop()
    try:
        started = time.monotonic()
        create_on_page(client, "while down")
        assert time.monotonic() - started < 2  # the request does not wait for the SMTP server
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with mailing_server.store() as session:
                row = session.scalars(select(MailOutbox).where(MailOutbox.recipient == address(name))).one()
            if row.attempts >= 2:
                break
            time.sleep(0.1)
        assert row.attempts >= 2 and row.sent_at is None and row.due_at is not None
        assert row.last_error.startswith("ConnectionRefusedError")
        assert not smtp.mailbox.matching(to(address(name)))
    finally:
        smtp.start()
    [_message] = smtp.mailbox.wait_for(about(name, "while down", "created"), timeout=15)
    assert "Tokensmith: the SMTP server" not in mailing_server.console()  # logged as below, never a message's text
    assert "cannot be reached (ConnectionRefusedError)" in mailing_server.console()


def test_without_an_smtp_server_configured_nothing_is_queued(server):
    """The shared server has no TOKENSMITH_SMTP_URL: tokens come and go as ever, no mail is kept."""
    name = f"nomail-{uuid.uuid4().hex[:8]}"
    server.create_user(name, password=PASSWORD)
    with server.client() as client:
        assert sign_in(client, name, PASSWORD).status_code == 303
        secret = create_on_page(client, "unmailed")
        assert client.post("/api/v1/tokens/revoke", json={"tokens": [secret]}).status_code == 202
    with server.store() as session:
        assert session.scalars(select(MailOutbox)).all() == []


@pytest.mark.postgres
def test_two_instances_on_one_postgresql_send_each_mail_exactly_once(postgres, smtp, tmp_path):
    from tests.conftest import mailing_instances
    from tokensmith.accounts import users
    from tokensmith.audit import mail
    from tokensmith.config import load_settings
    from tokensmith.store.server_keys import load_server_keys
    from tokensmith.tokens import lifecycle as token_lifecycle

    with mailing_instances(postgres, smtp, tmp_path / "shared-data", "instance") as instances:
        name = f"fleet-{uuid.uuid4().hex[:8]}"
        instances[0].create_user(name, password=PASSWORD)
        for number, instance in enumerate(instances):  # mail queued by each instance's requests
            with instance.client() as client:
                assert sign_in(client, name, PASSWORD).status_code == 303
                create_on_page(client, f"token {number}")
                create_on_page(client, f"token {number}b")
        now = utcnow()
        settings = load_settings(instances[0].env)
        with instances[0].store() as session:
            owner = users.get_user(session, name)
            for number in range(5):  # reminders, which both instances' jobs look for
                _secret, row = token_lifecycle.create_token(
                    session,
                    load_server_keys(settings),
                    owner.id,
                    f"expiring {number}",
                    prefix="tks_",
                    actor="tests",
                    expires_at=now + timedelta(days=3),
                )
                row.created_at = now - timedelta(days=60)
            for number in range(40):  # a backlog that both senders find at once
                mail.queue(
                    session,
                    kind="test",
                    recipient=address(name),
                    subject=f"backlog {number}",
                    body="Nothing secret.",
                    user_id=owner.id,
                )
        expected = 4 + 5 + 40
        received = smtp.mailbox.wait_for(to(address(name)), count=expected, timeout=30)
        time.sleep(1)  # a duplicate would come now
        received = smtp.mailbox.matching(to(address(name)))
        ids = [message["Message-ID"] for message in received]
        assert len(ids) == expected and len(set(ids)) == expected, sorted(m["Subject"] for m in received)
        with instances[0].store() as session:
            rows = session.scalars(select(MailOutbox).where(MailOutbox.recipient == address(name))).all()
        assert len(rows) == expected and all(row.sent_at is not None and row.attempts == 1 for row in rows)


# --- the sender, round by round, on a store of its own -------------------------------------------


@pytest.fixture
def outbox_engine(tmp_path):
    from tests.support.ledger import watch
    from tokensmith.config import Settings
    from tokensmith.store.database import create_store_engine, migrate

    engine = create_store_engine(Settings(data_dir=tmp_path))
    watch(tmp_path / "tokensmith.db")
    migrate(engine)
    yield engine
    engine.dispose()


def queued(engine, *recipients: str) -> list[int]:
    from tokensmith.audit import mail
    from tokensmith.store.database import session_factory, unit_of_work

    with unit_of_work(session_factory(engine)) as session:
        rows = [
            mail.queue(session, kind="test", recipient=recipient, subject=f"to {recipient}", body="Hello.")
            for recipient in recipients
        ]
        session.flush()
        return [row.id for row in rows]


def outbox_rows(engine) -> dict[str, MailOutbox]:
    from tokensmith.store.database import session_factory, unit_of_work

    with unit_of_work(session_factory(engine)) as session:
        return {row.recipient: row for row in session.scalars(select(MailOutbox))}


def test_a_refused_recipient_is_given_up_and_a_deferred_one_retried_later(outbox_engine, smtp):
    from tokensmith.audit.mail import MailSender
    from tokensmith.config import MailSettings

    smtp.mailbox.refusals.update(
        {"gone@example.test": "550 5.1.1 No such user", "busy@example.test": "451 4.3.0 Try again later"}
    )
    sender = MailSender(outbox_engine, MailSettings("smtp", "127.0.0.1", smtp.port, "tokens@tokensmith.test"))
    queued(outbox_engine, "gone@example.test", "busy@example.test", "fine@example.test")
    assert sender.deliver() == 3
    rows = outbox_rows(outbox_engine)
    assert rows["fine@example.test"].sent_at is not None and rows["fine@example.test"].due_at is None
    assert rows["gone@example.test"].failed_at is not None and rows["gone@example.test"].due_at is None
    assert rows["gone@example.test"].last_error == "SMTPRecipientsRefused 550"
    assert rows["busy@example.test"].due_at > utcnow() and rows["busy@example.test"].attempts == 1
    assert [m["To"] for m in smtp.mailbox.matching(lambda m: m["Subject"].startswith("to "))] == ["fine@example.test"]
    assert sender.deliver() == 0  # nothing due until the deferred one's wait is over


def test_a_row_claimed_by_one_sender_is_not_sent_by_another(outbox_engine, smtp):
    from tokensmith.audit.mail import MailSender
    from tokensmith.config import MailSettings

    settings = MailSettings("smtp", "127.0.0.1", smtp.port, "tokens@tokensmith.test")
    first, second = MailSender(outbox_engine, settings), MailSender(outbox_engine, settings)
    [claimed, _other] = queued(outbox_engine, "claimed@example.test", "other@example.test")
    assert first._claim(claimed)
    assert not second._claim(claimed)
    second.deliver()
    assert [
        m["To"] for m in smtp.mailbox.matching(lambda m: m["To"] in ("claimed@example.test", "other@example.test"))
    ] == ["other@example.test"]
    first._sent(claimed)
    rows = outbox_rows(outbox_engine)
    assert rows["claimed@example.test"].sent_at is not None and not second._claim(claimed)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # smtps is TLS; aiosmtpd cannot tell
@pytest.mark.parametrize("tls", ["starttls", "smtps"])
def test_mail_goes_over_tls_with_a_login_whose_password_is_never_kept(outbox_engine, tmp_path, monkeypatch, tls):
    from tests.support.smtp import self_signed
    from tokensmith.audit.mail import MailSender
    from tokensmith.config import load_settings

    certificate = self_signed(tmp_path)
    password = remember("smtp-relay-password-0123")
    server = SmtpServer(tls=tls, certificate=certificate, login=("relay@acme.test", password)).start()
    try:
        url = server.url.replace("://", f"://relay%40acme.test:{password}@")
        mail_settings = load_settings({"TOKENSMITH_SMTP_URL": url, "TOKENSMITH_MAIL_FROM": "tokens@acme.test"}).mail
        sender = MailSender(outbox_engine, mail_settings)
        queued(outbox_engine, "wrong-ca@example.test")
        sender.deliver()  # the certificate is nobody's the system trusts: refused, and kept for later
        assert server.mailbox.messages == [] and sender.failures == 1
        assert outbox_rows(outbox_engine)["wrong-ca@example.test"].last_error.startswith("SSLCertVerificationError")
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # now trusted, as a company CA would be
        sender.deliver()
        [_message] = server.mailbox.wait_for(to("wrong-ca@example.test"))
        assert server.logins == ["relay@acme.test"] and sender.failures == 0
        assert password not in repr(mail_settings) and password not in repr(outbox_rows(outbox_engine))
    finally:
        server.stop()
