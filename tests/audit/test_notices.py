"""What each mail says and when one is queued, on the store (SQLite and PostgreSQL): in the
transaction of the event it tells, for every kind of revocation by someone other than the
owner, and the expiry reminders with the clock given. (Delivery, end to end: test_mail.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.support.ledger import remember
from tokensmith.accounts import users
from tokensmith.audit import mail, notices, trail
from tokensmith.clock import utcnow
from tokensmith.config import Settings
from tokensmith.store.models import MailOutbox, TokenReminder
from tokensmith.tokens import application_tokens
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens.application_tokens import Application


def outbox(db) -> list[MailOutbox]:
    db.flush()
    return list(db.scalars(select(MailOutbox).order_by(MailOutbox.id)))


def clear_outbox(db) -> None:
    """Forget the mail queued so far (what setting a test up queued)."""
    for row in outbox(db):
        db.delete(row)
    db.flush()
    db.info.pop("mail_pending", None)


def test_without_mail_configured_nothing_is_queued(db, make_user, make_token):
    notices.listen(Settings())  # listening, with no mail configured
    try:
        owner = make_user()
        _secret, _row = make_token(owner)
        token_lifecycle.revoke_all_tokens(db, owner.id, actor="admin (shell)", reason="admin")
        assert outbox(db) == []
    finally:
        trail.unsubscribe(notices.for_event)


def test_a_new_token_is_queued_for_its_owner_in_the_same_transaction(db, make_user, make_token, mail_on):
    owner = make_user()
    secret, row = make_token(owner, "build bot", expires_at=utcnow() + timedelta(days=30))
    [queued] = outbox(db)
    assert (queued.kind, queued.recipient, queued.user_id) == ("token.created", owner.email, owner.id)
    assert queued.subject == "Tokensmith: a token “build bot” was created on your account"
    assert f"“build bot” ({row.hint})" in queued.body and "By:       tests" in queued.body
    assert "scopes: Everything; projects: every project of its owner; from: anywhere" in " ".join(queued.body.split())
    assert "https://tokens.example.test/tokens" in queued.body
    assert secret not in queued.body and secret[4:] not in queued.body
    assert queued.due_at is not None and queued.message_id.endswith("@example.test>")


def test_a_rotation_is_one_mail_about_the_rotation(db, keys, make_user, make_token, mail_on):
    owner = make_user()
    _secret, row = make_token(owner, "rotating")
    clear_outbox(db)
    new_secret, new = token_lifecycle.rotate_token(
        db, keys, row.id, owner.id, prefix="tks_", actor=owner.username, presented_token_id=row.id
    )
    [queued] = outbox(db)
    assert queued.kind == "token.rotated" and "was rotated" in queued.subject
    assert new.hint in queued.body and new_secret not in queued.body


def test_the_owner_revoking_their_own_token_is_not_mailed(db, make_user, make_token, mail_on):
    owner = make_user()
    _secret, row = make_token(owner)
    clear_outbox(db)
    token_lifecycle.revoke_token(db, row.id, owner.id, actor=owner.username)
    assert outbox(db) == []


def test_revoke_all_by_an_administrator_is_one_mail_listing_every_token(db, make_user, make_token, mail_on):
    owner = make_user()
    hints = [make_token(owner, name)[1].hint for name in ("laptop", "ci", "nas")]
    clear_outbox(db)
    token_lifecycle.revoke_all_tokens(db, owner.id, actor="admin (shell)", reason="admin")
    [queued] = outbox(db)
    assert queued.subject == "Tokensmith: 3 of your tokens were revoked by an administrator"
    assert all(hint in queued.body for hint in hints)
    assert "an administrator (admin (shell)) revoked it" in queued.body


def _revocation_mail(db, owner, reason: str, actor: str, **details) -> MailOutbox:
    clear_outbox(db)
    trail.record(
        db,
        "token.revoked",
        actor=actor,
        user_id=owner.id,
        ip="192.0.2.7",
        token_id=1,
        name="ci",
        hint="tks_…Ab12",
        reason=reason,
        **details,
    )
    [queued] = outbox(db)
    return queued


@pytest.mark.parametrize(
    "reason, actor, details, subject, words",
    [
        (
            "push_protection",
            "bob",
            {"project": "acme-contracts", "commit": "0123abcd", "path": "ci/deploy.yml"},
            "after it was found in a git push",
            [
                "found in a git push by bob (project acme-contracts, commit 0123abcd, file ci/deploy.yml)",
                "amend or rebase",
            ],
        ),
        (
            "rotation_reuse",
            "authentication",
            {},
            "after a rotated token was used again",
            ["someone kept a copy of the old secret", "Find where the old token was copied"],
        ),
        (
            "account_disabled",
            "scim",
            {},
            "when your account was disabled",
            ["your account was disabled (by your identity provider)", "enable your account again"],
        ),
        ("admin", "root", {}, "by an administrator", ["an administrator (root) revoked it"]),
        (
            "secret_scanning",
            "GitHub secret scanning",
            {"url": "https://github.com/octocat/hello/blob/1a2b/app.env", "source": "content"},
            "after GitHub found it in public",
            [
                "secret scanning found it in public, at https://github.com/octocat/hello/blob/1a2b/app.env (content)",
                "rewrite the history that holds it",
            ],
        ),
        ("policy_sweep", "identity provider", {}, "", ["your identity provider revoked it (policy sweep)"]),
    ],
)
def test_every_revocation_by_someone_else_says_who_why_and_what_to_do(
    db, make_user, mail_on, reason, actor, details, subject, words
):
    owner = make_user()
    queued = _revocation_mail(db, owner, reason, actor, **details)
    assert queued.subject == f"Tokensmith: your token “ci” was revoked {subject}".rstrip()
    assert "“ci” (tks_…Ab12)" in queued.body and "What to do:" in queued.body
    for phrase in words:
        assert phrase in " ".join(queued.body.split()), queued.body


def test_disabling_an_account_mails_its_owner_once_for_all_its_tokens(db, make_user, make_token, mail_on):
    owner = make_user()
    make_token(owner, "one")
    make_token(owner, "two")
    clear_outbox(db)
    users.disable_user(db, owner, actor="scim")
    [queued] = outbox(db)
    assert "2 of your tokens were revoked when your account was disabled" in queued.subject


def test_an_owner_without_an_address_gets_no_mail(db, make_user, make_token, mail_on):
    owner = make_user()
    owner.email = "not an address"
    make_token(owner)
    assert outbox(db) == []


def test_reminders_are_queued_once_each_30_7_and_1_days_before_a_token_expires_and_once_it_has(
    db, make_user, make_token, mail_on
):
    owner, other = make_user(), make_user()
    now = utcnow()

    def token(name, *, created_days_ago, expires_in_days, user=owner):
        _secret, row = make_token(user, name, expires_at=now + timedelta(days=max(expires_in_days, 1)))
        row.created_at = now - timedelta(days=created_days_ago)
        row.expires_at = now + timedelta(days=expires_in_days)
        return row

    token("quarterly", created_days_ago=80, expires_in_days=25)
    token("monthly", created_days_ago=25, expires_in_days=5)
    token("tomorrow", created_days_ago=40, expires_in_days=0.5)
    token("short", created_days_ago=1, expires_in_days=5)  # its creation mail said when it ends
    token("later", created_days_ago=1, expires_in_days=20)  # so did this one's, for 30 days before
    token("yesterday", created_days_ago=40, expires_in_days=-1)
    token("long ago", created_days_ago=400, expires_in_days=-30)
    revoked = token("revoked", created_days_ago=25, expires_in_days=5)
    revoked.revoked_at = now
    token("disabled owner's", created_days_ago=25, expires_in_days=5, user=other)
    other.is_active = False
    clear_outbox(db)

    def round_at(days: float) -> list[str]:
        clear_outbox(db)
        notices.queue_reminders(db, now + timedelta(days=days))
        return sorted(row.subject.removeprefix("Tokensmith: your token ") for row in outbox(db))

    first = round_at(0)
    assert [subject.split(" expires on ")[0] for subject in first[:3]] == ["“monthly”", "“quarterly”", "“tomorrow”"]
    assert first[3] == "“yesterday” has expired" and len(first) == 4
    quarterly = next(row.body for row in outbox(db) if "“quarterly”" in row.subject)
    assert "in 25 days" in " ".join(quarterly.split())
    assert notices.queue_reminders(db, now) == 0  # noted: never twice
    assert notices.queue_reminders(db, now + timedelta(hours=1)) == 0
    # Mailed or not (the short ones, the disabled owner's), each is dealt with once.
    assert len(db.scalars(select(TokenReminder)).all()) == 7
    assert round_at(6) == ["“monthly” has expired", "“short” has expired", "“tomorrow” has expired"]
    assert [subject.split(" expires on ")[0] for subject in round_at(18.5)] == ["“later”", "“quarterly”"]
    assert [subject.split(" expires on ")[0] for subject in round_at(24.7)] == ["“later” has expired", "“quarterly”"]
    assert round_at(24.8) == []


def test_an_application_token_is_mailed_nothing_of_its_own(db, keys, make_user, make_token, mail_on):
    owner = make_user()
    now = utcnow()
    _secret, parent = make_token(owner, "Laptop", expires_at=now + timedelta(days=5))
    parent.created_at = now - timedelta(days=25)
    _secret, child = application_tokens.derive_token(
        db, keys, parent.id, owner.id, Application("nuxeo-cli", "1"), prefix="tks_", actor=owner.username, ip=None
    )
    remember(_secret)
    child.created_at = parent.created_at
    assert [row.subject for row in outbox(db)] == ["Tokensmith: a token “Laptop” was created on your account"]
    clear_outbox(db)
    assert notices.queue_reminders(db, now) == 1  # the parent's
    assert next(row.subject for row in outbox(db)).startswith("Tokensmith: your token “Laptop” expires on ")
    clear_outbox(db)
    token_lifecycle.revoke_token(db, parent.id, owner.id, actor=owner.username)
    assert outbox(db) == []  # the owner's own revocation, and its child's with it


def test_pruning_gives_up_old_unsent_mail_and_removes_what_went_a_week_ago(db, make_user, mail_on):
    owner = make_user()
    now = utcnow()
    sent, stale, _fresh = (
        mail.queue(db, kind="test", recipient=owner.email, subject=subject, body="-")
        for subject in ("sent", "stale", "fresh")
    )
    sent.sent_at, sent.due_at = now - timedelta(days=8), None
    stale.created_at = now - timedelta(days=4)
    db.flush()
    assert mail.prune(db, now) == 1
    db.expire_all()
    assert [(row.subject, row.failed_at is not None, row.due_at is None) for row in outbox(db)] == [
        ("stale", True, True),
        ("fresh", False, False),
    ]
