"""What token owners are told by mail, and when (mail.py sends it).

Told: a token was created (or rotated), someone other than the owner revoked one (a leak
report, GitHub's secret scanning, push protection, an administrator, the identity provider, the
reuse of a rotated token, the retirement of unused tokens), a token will be revoked within a week
unless it is used, a token expires within 30, 7 and 1 days, a token has expired. An application
token (application_tokens.py) has no expiry reminder of its own: it expires with the token it was
made from, whose reminder tells. Those about what happened follow from audit events
(``for_event``, called by trail.record in the same transaction); the expiry reminders are queued by
``queue_reminders``, which the sweep (tokens/sweep.py) runs in one instance at a time.

Each mail says what happened, to which token (its name and hint), when, by whom or why, and
what to do. None carries a secret: no token, no password, no link that opens anything. A mail
about many tokens at once names the first ``LISTED`` of them, and says how many more.
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, select
from sqlalchemy import event as orm_event
from sqlalchemy.orm import Session

from tokensmith.audit import mail, trail
from tokensmith.audit.trail import AuditAction, Event, RevokeReason
from tokensmith.clock import display, utcnow
from tokensmith.config import Settings
from tokensmith.scopes import describe as describe_limits
from tokensmith.store.models import MailOutbox, PersonalToken, TokenReminder, User

# Expiry reminders: a token expiring within each of these is reminded once, at the nearest, if
# it lived longer than that (a shorter one's creation mail said when it ends). The 7 days' kind
# keeps its name from before there were three.
REMINDER_STAGES = (
    (timedelta(days=1), "expiring1"),
    (timedelta(days=7), "expiring"),
    (timedelta(days=30), "expiring30"),
)
LISTED = 50  # tokens a mail names at most
# An expired token is mentioned only if it expired this recently: not the old ones, when mail
# is switched on, nor after a long outage.
EXPIRED_NOTICE_WINDOW = timedelta(days=7)
REMINDERS_PER_ROUND = 500
# Revocations the owner did themselves (through an application that signed out, too), or that a
# mail of its own tells (a rotation; an application token revoked with its parent: the parent's).
_OWN_REVOCATIONS = {RevokeReason.OWNER, RevokeReason.ROTATED, RevokeReason.APPLICATION, RevokeReason.PARENT_REVOKED}
_IDENTITY_PROVIDER_ACTORS = {"scim", "identity provider"}


@dataclass
class _Pending:
    """A mail queued in this transaction that later events of the same kind join (revoke-all
    sends one mail listing every token, not one per token). What it says is written when the
    session next flushes (``_write_pending``): once for a thousand events joined in between."""

    row: MailOutbox
    owner: User
    config: mail.MailConfig
    events: list[Event] = field(default_factory=list)
    written: bool = False


def listen(settings: Settings) -> mail.MailConfig | None:
    """Mail on or off for this process (``mail.configure``), and from now on the owners told
    of the audit events that concern them: the server's start and the shell's commands call it."""
    config = mail.configure(settings)
    trail.subscribe(for_event)
    return config


def for_event(session: Session, event: Event) -> None:
    """Queue the mail an audit event calls for, if any, in the event's transaction."""
    config = mail.current()
    if config is None or event.user_id is None:
        return
    details = event.details or {}
    if event.action == AuditAction.TOKEN_CREATED:
        key: tuple[Any, ...] = ("token", details.get("token_id"))
    elif event.action == AuditAction.TOKEN_ROTATED:
        key = ("token", details.get("token_id"))  # its token.created came just before: this replaces it
    elif event.action in _SECOND_FACTOR_CHANGES:
        key = ("second factor", event.id or id(event))
    elif event.action in (AuditAction.TOKEN_LEAK_REPORTED, AuditAction.TOKEN_FOUND_BY_SCANNING) or (
        event.action == AuditAction.TOKEN_REVOKED and details.get("reason") not in _OWN_REVOCATIONS
    ):
        key = ("revoked", event.user_id, event.action, details.get("reason"), event.actor)
    elif event.action == AuditAction.TOKEN_UNUSED_WARNING:
        key = ("unused", event.user_id)
    else:
        return
    owner = session.get(User, event.user_id)
    if owner is None or not mail.plausible_address(owner.email):
        return
    pending: dict[tuple[Any, ...], _Pending] = session.info.setdefault("mail_pending", {})
    if key in pending and event.action != AuditAction.TOKEN_ROTATED:
        pending[key].events.append(event)
    elif key in pending:
        pending[key].events = [event]
    else:
        row = mail.queue(session, kind=event.action, recipient=owner.email, subject="", body="", user_id=owner.id)
        pending[key] = _Pending(row, owner, config, [event])
    pending[key].written = False


@orm_event.listens_for(Session, "before_flush")
def _write_pending(session: Session, _context: object, _instances: object) -> None:
    """Write what each mail queued in this transaction says, from every event it tells, before
    its row goes to the store (every flush: the commit's, and any a query makes before)."""
    for entry in session.info.get("mail_pending", {}).values():
        if not entry.written:
            entry.row.kind = entry.events[0].action
            entry.row.subject, entry.row.body = _compose(entry.owner, entry.events, entry.config)
            entry.written = True


def _compose(owner: User, events: list[Event], config: mail.MailConfig) -> tuple[str, str]:
    first = events[0]
    if first.action == AuditAction.TOKEN_CREATED:
        subject, lines = _created(first, rotated=False)
    elif first.action == AuditAction.TOKEN_ROTATED:
        subject, lines = _created(first, rotated=True)
    elif first.action == AuditAction.TOKEN_UNUSED_WARNING:
        subject, lines = _unused_warning(events)
    elif first.action in _SECOND_FACTOR_CHANGES:
        subject, lines = _second_factor_changed(first)
    else:
        subject, lines = _revoked(events)
    return subject, _letter(owner, lines, config)


def _letter(owner: User, lines: list[str], config: mail.MailConfig) -> str:
    greeting = f"Hello {owner.display_name or owner.username},"
    footer = [
        "",
        f"Your tokens: {config.tokens_page_url}",
        "",
        "-- ",
        f"Tokensmith at {config.public_url}. You receive this mail because it is about your account",
        f"({owner.username}); it never contains a token.",
    ]
    return "\n".join(_wrapped([greeting, "", *lines, *footer])) + "\n"


WIDTH = 76
_LABELLED = " " * 14  # where the value of a "    Label:    value" line starts


def _wrapped(lines: list[str]) -> list[str]:
    """Plain lines become paragraphs filled to WIDTH; "- " items wrap under themselves, and
    indented "Label: value" lines under their value; "-- " (the signature's mark) stays. Lines
    break between words only: never inside an address or a name (a URL, a client's)."""
    out: list[str] = []
    paragraph: list[str] = []
    wrap = functools.partial(textwrap.wrap, width=WIDTH, break_on_hyphens=False, break_long_words=False)

    def end_paragraph() -> None:
        if paragraph:
            out.extend(wrap(" ".join(paragraph)))
            paragraph.clear()

    for line in lines:
        if line and not line.startswith(("    ", "- ", "-- ")):
            paragraph.append(line)
            continue
        end_paragraph()
        if line.startswith("- "):
            out.extend(wrap(line, subsequent_indent="  "))
        elif line.startswith("    "):
            out.extend(wrap(line, subsequent_indent=_LABELLED) if len(line) > WIDTH else [line])
        else:
            out.append(line)
    end_paragraph()
    return out


def _token(details: dict[str, Any]) -> str:
    return f"“{details.get('name', '?')}” ({details.get('hint', '?')})"


def _by(event: Event) -> str:
    where = f", from {event.ip}" if event.ip else ""
    return f"{event.actor}{where}"


def _created(event: Event, *, rotated: bool) -> tuple[str, list[str]]:
    details = event.details or {}
    expires = details.get("expires_at")
    limits = (
        describe_limits(details["scopes"], details.get("projects"), details.get("allowed_ips"))
        if "scopes" in details
        else ""
    )
    if rotated:
        subject = f"Tokensmith: your token “{details.get('name', '?')}” was rotated"
        opening = [
            "A new secret replaced the old one of your personal access token; the old secret",
            "no longer works.",
        ]
    else:
        subject = f"Tokensmith: a token “{details.get('name', '?')}” was created on your account"
        opening = ["A personal access token was created on your account."]
    return subject, [
        *opening,
        "",
        f"    Token:    {_token(details)}",
        f"    When:     {display(event.at)}",
        f"    By:       {_by(event)}",
        f"    Expires:  {display(datetime.fromisoformat(expires)) if expires else 'never'}",
        *([f"    Limits:   {limits}"] if limits else []),
        "",
        "If this was you, there is nothing to do. If it was not, someone can act as you: revoke",
        "the token now on My Tokens, change your password, and tell your administrator.",
    ]


def _revoked(events: list[Event]) -> tuple[str, list[str]]:
    first = events[0]
    details = first.details or {}
    reason = (
        RevokeReason.LEAK_REPORTED if first.action == AuditAction.TOKEN_LEAK_REPORTED else str(details.get("reason"))
    )
    what, why, advice = _REVOCATION_WORDS.get(reason, _generic_revocation)(first)
    names = [_token(event.details or {}) for event in events[:LISTED]]
    if len(events) > 1:  # found in several places: each where it was
        names = [
            f"{name}, found at {event.details['url']}" if (event.details or {}).get("url") else name
            for name, event in zip(names, events, strict=False)
        ]
    if len(events) == 1:
        subject = f"Tokensmith: your token “{details.get('name', '?')}” was revoked{what}"
        heading = "Your personal access token was revoked:"
    else:
        subject = f"Tokensmith: {len(events)} of your tokens were revoked{what}"
        heading = f"{len(events)} of your personal access tokens were revoked:"
    return subject, [
        heading,
        "",
        *(f"    {name}" for name in names),
        *_more(events),
        "",
        f"    When:     {display(first.at)}",
        f"    Why:      {why}",
        *_where_used(events[:LISTED]),
        "",
        "Whatever used it is now refused. What to do:",
        *advice,
    ]


def _more(events: list[Event]) -> list[str]:
    """The tokens past those a mail names: how many, and where they all are."""
    if len(events) <= LISTED:
        return []
    return [f"    … and {len(events) - LISTED} more: every one is on My Tokens."]


def _unused_warning(events: list[Event]) -> tuple[str, list[str]]:
    first = events[0].details or {}
    if len(events) == 1:
        subject = (
            f"Tokensmith: your token “{first.get('name', '?')}” will be revoked on {first.get('revoke_on', '?')} "
            "unless it is used"
        )
        heading = "Your personal access token has not been used for a long time:"
    else:
        subject = f"Tokensmith: {len(events)} of your tokens will be revoked unless they are used"
        heading = f"{len(events)} of your personal access tokens have not been used for a long time:"
    return subject, [
        heading,
        "",
        *(
            f"    {_token(details)}: unused since {details.get('unused_since', '?')}, revoked on "
            f"{details.get('revoke_on', '?')}"
            for details in (event.details or {} for event in events[:LISTED])
        ),
        *_more(events),
        "",
        (
            f"This server revokes tokens that nobody has used for {first.get('after_days', '?')} days: a "
            "token forgotten somewhere still opens everything it opened. What to do:"
        ),
        "- If you still need it, use it before then: any request made with it counts, and it stays;",
        "- if you do not, there is nothing to do (or revoke it now on My Tokens).",
    ]


def _where_used(events: list[Event]) -> list[str]:
    """Where the owner last used a reported token: where to go and replace it."""
    lines = []
    for event in events:
        details = event.details or {}
        if "last_used_at" not in details:
            continue
        if details.get("last_used_at"):
            when = display(datetime.fromisoformat(details["last_used_at"]))
            agent = f" by {details['last_used_agent']}" if details.get("last_used_agent") else ""
            used = f"{when} from {details.get('last_used_ip') or 'an unknown address'}{agent}"
        else:
            used = "never"
        prefix = f"{details.get('name', '?')}: " if len(events) > 1 else ""
        lines.append(f"    Last used: {prefix}{used}")
    return lines


_NEW_TOKEN = "create a new token on My Tokens and put it where the old one was used"


def _leak(event: Event) -> tuple[str, str, list[str]]:
    return (
        " after it was reported leaked",
        (
            "it was reported leaked: someone found it where it should not be (a public repository, "
            "a log, a paste) and reported it, and it was revoked at once"
        ),
        [
            f"- If you still need it, {_NEW_TOKEN};",
            "- remove the old one from wherever it was exposed, and keep the new one out of code and logs.",
        ],
    )


def _secret_scanning(event: Event) -> tuple[str, str, list[str]]:
    details = event.details or {}
    where = details.get("url") or "a public place it does not say"
    source = f" ({str(details['source']).replace('_', ' ')})" if details.get("source") else ""
    return (
        " after GitHub found it in public",
        (
            f"GitHub's secret scanning found it in public, at {where}{source}, where anyone could "
            "copy it; it was revoked as soon as GitHub reported it"
        ),
        [
            (
                "- Remove it from there: edit the file and rewrite the history that holds it (a public "
                "repository keeps it in every earlier commit), or unpublish the package;"
            ),
            f"- if you still need it, {_NEW_TOKEN}, and keep it out of code (a CI secret, a credential helper).",
        ],
    )


def _push_protection(event: Event) -> tuple[str, str, list[str]]:
    details = event.details or {}
    where = ", ".join(
        f"{label} {details[key]}"
        for label, key in (("project", "project"), ("commit", "commit"), ("file", "path"))
        if details.get(key)
    )
    return (
        " after it was found in a git push",
        (
            f"it was found in a git push by {event.actor}{f' ({where})' if where else ''}, which was "
            "refused; anyone who can read the repository would have had it"
        ),
        [
            "- Remove the token from those commits (amend or rebase them), then push again;",
            f"- if you still need it, {_NEW_TOKEN}.",
        ],
    )


def _admin(event: Event) -> tuple[str, str, list[str]]:
    return (
        " by an administrator",
        f"an administrator ({event.actor}) revoked it",
        [f"- If you still need it, {_NEW_TOKEN};", "- if you do not know why it was revoked, ask your administrator."],
    )


def _account_disabled(event: Event) -> tuple[str, str, list[str]]:
    by = "your identity provider" if event.actor in _IDENTITY_PROVIDER_ACTORS else event.actor
    return (
        " when your account was disabled",
        f"your account was disabled (by {by}), and with it every token",
        [
            "- If this is a mistake, ask your administrator to enable your account again;",
            "- revoked tokens stay revoked: you will then create new ones.",
        ],
    )


def _rotation_reuse(event: Event) -> tuple[str, str, list[str]]:
    return (
        " after a rotated token was used again",
        (
            "a token that a rotation had replaced was presented again, so someone kept a copy of "
            "the old secret; the token that replaced it was revoked too, to shut them out"
        ),
        [
            "- Find where the old token was copied (a CI variable, a config file, a laptop) and remove it;",
            f"- {_NEW_TOKEN}.",
        ],
    )


def _unused(event: Event) -> tuple[str, str, list[str]]:
    details = event.details or {}
    return (
        " because it was not used",
        (
            f"it had not been used since {details.get('unused_since', '?')}, and this server revokes tokens "
            f"that nobody has used for {details.get('after_days', '?')} days"
        ),
        [f"- If you still need it, {_NEW_TOKEN}."],
    )


def _generic_revocation(event: Event) -> tuple[str, str, list[str]]:
    reason = str((event.details or {}).get("reason") or "no reason given").replace("_", " ")
    by = "your identity provider" if event.actor in _IDENTITY_PROVIDER_ACTORS else event.actor
    return (
        "",
        f"{by} revoked it ({reason})",
        [f"- If you still need it, {_NEW_TOKEN};", "- if you do not know why it was revoked, ask your administrator."],
    )


# Keyed by the enum, looked up by the event's stored reason (a plain str).
_REVOCATION_WORDS: dict[str, Callable[[Event], tuple[str, str, list[str]]]] = {
    RevokeReason.LEAK_REPORTED: _leak,
    RevokeReason.SECRET_SCANNING: _secret_scanning,
    RevokeReason.UNUSED: _unused,
    RevokeReason.PUSH_PROTECTION: _push_protection,
    RevokeReason.ADMIN: _admin,
    RevokeReason.ACCOUNT_DISABLED: _account_disabled,
    RevokeReason.ROTATION_REUSE: _rotation_reuse,
}


# --- second factors (accounts/second_factors.py) -------------------------------------------------

_SECOND_FACTOR_CHANGES = {
    AuditAction.SECOND_FACTOR_ADDED: "Tokensmith: a second factor was added to your account",
    AuditAction.SECOND_FACTOR_REMOVED: "Tokensmith: a second factor was removed from your account",
    AuditAction.RECOVERY_CODES_GENERATED: "Tokensmith: new recovery codes were made for your account",
    AuditAction.RECOVERY_CODE_USED: "Tokensmith: a recovery code was used to sign in to your account",
    AuditAction.SECOND_FACTORS_RESET: "Tokensmith: every second factor of your account was removed",
}


def _second_factor_changed(event: Event) -> tuple[str, list[str]]:
    return _SECOND_FACTOR_CHANGES[AuditAction(event.action)], [
        f"{trail.describe(event)}.",
        "",
        f"    When:     {display(event.at)}",
        f"    By:       {_by(event)}",
        "",
        "If this was you, there is nothing to do. If it was not, someone can act as you: sign in, look",
        "at the Security page (Security in the navigation), change your password, and tell your",
        "administrator. Your tokens are unchanged.",
    ]


# --- expiry reminders -----------------------------------------------------------------------------


def _expiring(owner: User, token: PersonalToken, now: datetime, config: mail.MailConfig) -> tuple[str, str]:
    expires_at = token.expires_at
    assert expires_at is not None  # _due finds tokens by their expiry
    days = max(1, round((expires_at - now) / timedelta(days=1)))
    subject = f"Tokensmith: your token “{token.name}” expires on {expires_at:%Y-%m-%d}"
    return subject, _letter(
        owner,
        [
            f"Your personal access token {_token({'name': token.name, 'hint': token.hint})} expires on",
            (
                f"{display(expires_at)}, in {days} day{'s' if days != 1 else ''}. After that, whatever uses it "
                "(git, Maven, a CI job) is refused."
            ),
            "",
            f"    Last used: {display(token.last_used_at, never='never')}",
            "",
            "To keep things working, create a new token on My Tokens, with a later expiry, and put it",
            "where this one is used. If you no longer need it, let it expire, or revoke it now.",
        ],
        config,
    )


def _expired(owner: User, token: PersonalToken, config: mail.MailConfig) -> tuple[str, str]:
    subject = f"Tokensmith: your token “{token.name}” has expired"
    return subject, _letter(
        owner,
        [
            f"Your personal access token {_token({'name': token.name, 'hint': token.hint})} expired on",
            f"{display(token.expires_at)}: whatever still uses it is refused.",
            "",
            f"    Last used: {display(token.last_used_at, never='never')}",
            "",
            "If you still need one, create a new token on My Tokens and put it where this one was",
            "used; then revoke the expired one, which frees its name.",
        ],
        config,
    )


def queue_reminders(session: Session, now: datetime | None = None) -> int:
    """Queue the reminders now due: a token expires within 30, 7 or 1 days (the nearest of those
    it is within; for tokens that lived longer than that) or has expired. Each is noted in
    token_reminders, queued or not (an owner without an address), so that none comes twice.
    Returns how many mails were queued."""
    config = mail.current()
    if config is None:
        return 0
    now = now or utcnow()
    queued, nearer = 0, timedelta(0)
    windows = []
    for before, kind in REMINDER_STAGES:
        windows.append((kind, before, (now + nearer, now + before)))
        nearer = before
    windows.append(("expired", timedelta(0), (now - EXPIRED_NOTICE_WINDOW, now)))
    for kind, before, window in windows:
        for token in _due(session, kind, *window):
            assert token.expires_at is not None  # _due finds tokens by their expiry
            owner = token.owner
            session.add(TokenReminder(token_id=token.id, kind=kind, at=now))
            if not owner.is_active or not mail.plausible_address(owner.email):
                continue
            if before and token.expires_at - token.created_at <= before:
                continue
            if token.parent_id is not None:  # an application token: its parent's reminder tells
                continue
            subject, body = (
                _expired(owner, token, config) if kind == "expired" else _expiring(owner, token, now, config)
            )
            mail.queue(
                session,
                kind="token.expired" if kind == "expired" else "token.expiring",
                recipient=owner.email,
                subject=subject,
                body=body,
                user_id=owner.id,
            )
            queued += 1
    return queued


def _due(session: Session, kind: str, after: datetime, until: datetime) -> list[PersonalToken]:
    reminded = exists().where(and_(TokenReminder.token_id == PersonalToken.id, TokenReminder.kind == kind))
    return list(
        session.scalars(
            select(PersonalToken)
            .where(
                PersonalToken.revoked_at.is_(None),
                PersonalToken.expires_at > after,
                PersonalToken.expires_at <= until,
                ~reminded,
            )
            .order_by(PersonalToken.expires_at)
            .limit(REMINDERS_PER_ROUND)
        )
    )
