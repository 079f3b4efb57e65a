"""A second factor for local accounts: who has one, adding and removing them, the second step
of a sign-in, the policy that requires one, and the reset from the server's shell.

It concerns people who sign in with a Tokensmith password; people of the identity provider are
untouched (their provider does this). Tokens are untouched too: they are the credential of
tools, which have no second factor. Every change is recorded in the audit trail, which mails
the person (audit/notices.py).

A sign-in half done (the password right, the second step not done) is a PendingSignIn row found
by the digest of a cookie's secret: short-lived, single-use, opening nothing by itself; a
passkey sign-in begins as one too, without a person yet. The WebAuthn challenges of a signed-in
session (adding a passkey, confirming it is them) are PasskeyChallenge rows. Both live in the
store, so any instance can finish what another began.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tokensmith.accounts import passkeys, recovery_codes, totp
from tokensmith.audit import trail
from tokensmith.audit.trail import AuditAction
from tokensmith.clock import utcnow
from tokensmith.errors import InvalidInput, PasskeyRefused, SecondStepIncorrect, SignInExpired
from tokensmith.store.models import AuthenticatorApp, Passkey, PasskeyChallenge, PendingSignIn, User
from tokensmith.store.server_keys import ServerKeys

PENDING_PURPOSE = "pending-sign-in"
PENDING_LIFETIME = timedelta(minutes=5)
CHALLENGE_LIFETIME = timedelta(minutes=5)
APP = "authenticator app"
PASSKEY = "passkey"
RECOVERY_CODE = "recovery code"


@dataclass(frozen=True)
class Factors:
    """What a person has: a confirmed authenticator app (or one waiting for its first code),
    their passkeys, how many recovery codes are left."""

    app: AuthenticatorApp | None = None
    passkeys: list[Passkey] = field(default_factory=list)
    codes_left: int = 0

    @property
    def has_app(self) -> bool:
        return self.app is not None and self.app.confirmed_at is not None

    @property
    def app_pending(self) -> bool:
        return self.app is not None and self.app.confirmed_at is None

    @property
    def any(self) -> bool:
        return self.has_app or bool(self.passkeys)


def applies_to(user: User) -> bool:
    """Whether the person signs in with a Tokensmith password (and so may, or must, have a
    second factor)."""
    return user.password_hash is not None


def factors_of(session: Session, user_id: int) -> Factors:
    return Factors(
        app=session.get(AuthenticatorApp, user_id),
        passkeys=passkeys.passkeys_of(session, user_id),
        codes_left=recovery_codes.remaining(session, user_id),
    )


def has_second_factor(session: Session, user_id: int) -> bool:
    confirmed = session.scalar(
        select(AuthenticatorApp.user_id).where(
            AuthenticatorApp.user_id == user_id, AuthenticatorApp.confirmed_at.is_not(None)
        )
    )
    return (
        confirmed is not None
        or session.scalar(select(Passkey.id).where(Passkey.user_id == user_id).limit(1)) is not None
    )


# --- adding and removing ------------------------------------------------------------------------


def _added(session: Session, keys: ServerKeys, user: User, kind: str, name: str, ip: str | None) -> list[str]:
    """Record a factor added; the first one comes with ten recovery codes (returned, to be shown
    once), unless the person has codes left from before."""
    trail.record(
        session, AuditAction.SECOND_FACTOR_ADDED, actor=user.username, user_id=user.id, ip=ip, kind=kind, name=name
    )
    if recovery_codes.remaining(session, user.id):
        return []
    return regenerate_codes(session, keys, user, ip=ip)


def confirm_app(session: Session, keys: ServerKeys, user: User, code: str, *, ip: str | None) -> list[str]:
    """The first code of the authenticator app being added: right, the app is the person's (and
    the recovery codes of a first factor are returned); wrong, InvalidInput."""
    if totp.pending_secret(session, keys, user.id) is None:
        raise InvalidInput("No authenticator app is being added: choose “Add an authenticator app” first.")
    if not totp.confirm(session, keys, user.id, code):
        raise InvalidInput(
            "That code is not the one your app shows: check that its clock is right, and type the six digits "
            "it shows now."
        )
    return _added(session, keys, user, APP, "", ip)


def add_passkey(
    session: Session,
    keys: ServerKeys,
    party: passkeys.RelyingParty,
    user: User,
    name: str,
    answer: str,
    challenge: PasskeyChallenge,
    *,
    ip: str | None,
) -> tuple[Passkey, list[str]]:
    row = passkeys.add_passkey(session, party, user, name, answer, challenge.challenge, challenge.user_handle or b"")
    return row, _added(session, keys, user, PASSKEY, row.name, ip)


def _removed(session: Session, user: User, kind: str, name: str, ip: str | None) -> None:
    trail.record(
        session, AuditAction.SECOND_FACTOR_REMOVED, actor=user.username, user_id=user.id, ip=ip, kind=kind, name=name
    )
    if not has_second_factor(session, user.id):
        recovery_codes.remove_all(session, user.id)  # a way through a second step there no longer is


def remove_app(session: Session, user: User, *, ip: str | None) -> None:
    if totp.remove(session, user.id):
        _removed(session, user, APP, "", ip)


def remove_passkey(session: Session, user: User, passkey_id: int, *, ip: str | None) -> None:
    row = passkeys.remove_passkey(session, user.id, passkey_id)
    _removed(session, user, PASSKEY, row.name, ip)


def regenerate_codes(session: Session, keys: ServerKeys, user: User, *, ip: str | None) -> list[str]:
    if not has_second_factor(session, user.id):
        raise InvalidInput("Recovery codes come with a second factor: add an authenticator app or a passkey first.")
    codes = recovery_codes.generate(session, keys, user.id)
    trail.record(session, AuditAction.RECOVERY_CODES_GENERATED, actor=user.username, user_id=user.id, ip=ip)
    return codes


def reset(session: Session, user: User, *, actor: str) -> int:
    """Remove every second factor of the person (the server's shell: a lost phone and lost
    codes); how many there were. Their sessions and tokens are untouched."""
    factors = factors_of(session, user.id)
    count = int(factors.has_app) + len(factors.passkeys)
    totp.remove(session, user.id)
    session.execute(delete(Passkey).where(Passkey.user_id == user.id))
    recovery_codes.remove_all(session, user.id)
    session.execute(delete(PendingSignIn).where(PendingSignIn.user_id == user.id))
    trail.record(session, AuditAction.SECOND_FACTORS_RESET, actor=actor, user_id=user.id, removed=count)
    return count


# --- the second step ------------------------------------------------------------------------------


def check_code(session: Session, keys: ServerKeys, user: User, code: str, *, ip: str | None) -> str:
    """An authenticator app's code or a recovery code, typed at the second step or to confirm it
    is them: what it was (APP or RECOVERY_CODE), spent; SecondStepIncorrect otherwise."""
    if totp.normalise(code) is not None:
        if totp.use_code(session, keys, user.id, code):
            return APP
        raise SecondStepIncorrect(
            "That code is not right, or was used already: type the six digits your authenticator app shows "
            "now (each code works once), or a recovery code."
        )
    left = recovery_codes.use(session, keys, user.id, code)
    if left is None:
        raise SecondStepIncorrect(
            "That is neither your authenticator app's code nor one of your unused recovery codes. "
            "Type the six digits your app shows now, or a recovery code (like abcde-fghjk)."
        )
    trail.record(session, AuditAction.RECOVERY_CODE_USED, actor=user.username, user_id=user.id, ip=ip, remaining=left)
    return RECOVERY_CODE


def second_step_failed(session: Session, user_id: int, *, ip: str | None, username: str) -> None:
    """A wrong code after a right password: the person reads it in their log (someone may know
    their password)."""
    trail.record(session, AuditAction.SECOND_STEP_FAILED, actor=username, user_id=user_id, ip=ip)


# --- half-done sign-ins -----------------------------------------------------------------------------


def begin_sign_in(session: Session, keys: ServerKeys, user_id: int | None, next_path: str) -> tuple[str, PendingSignIn]:
    """A sign-in waiting for its second step (``user_id``: whose password was right) or for a
    passkey (None): ``(cookie secret, row)``."""
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    row = PendingSignIn(
        digest=keys.digest(PENDING_PURPOSE, secret),
        user_id=user_id,
        next_path=next_path[:2000],
        created_at=now,
        expires_at=now + PENDING_LIFETIME,
        challenge=None,
    )
    session.add(row)
    session.execute(delete(PendingSignIn).where(PendingSignIn.expires_at <= now))  # sign-ins are rare: tidy up
    session.flush()
    return secret, row


def find_sign_in(session: Session, keys: ServerKeys, secret: str, *, passkey_alone: bool = False) -> PendingSignIn:
    """The live half-done sign-in behind a cookie; SignInExpired otherwise."""
    row = None
    if secret and len(secret) <= 128:
        row = session.scalar(
            select(PendingSignIn).where(PendingSignIn.digest.in_(keys.all_digests(PENDING_PURPOSE, secret)))
        )
    if row is None or row.expires_at <= utcnow() or (row.user_id is None) != passkey_alone:
        raise SignInExpired(
            f"This sign-in has ended (it lasts {int(PENDING_LIFETIME.total_seconds() // 60)} minutes) "
            "or was never begun: sign in again."
        )
    return row


def end_sign_in(session: Session, row: PendingSignIn) -> None:
    session.delete(row)
    session.flush()


def give_challenge(row: PendingSignIn) -> bytes:
    """A new WebAuthn challenge for this sign-in; it replaces any earlier one."""
    row.challenge = passkeys.new_challenge()
    return row.challenge


def take_challenge(row: PendingSignIn) -> bytes:
    """The sign-in's challenge, taken: it answers one assertion, right or wrong."""
    challenge = row.challenge
    row.challenge = None
    if challenge is None:
        raise SignInExpired("No passkey was asked for in this sign-in, or its answer came already: try again.")
    return challenge


def session_challenge(session: Session, session_id: int, purpose: str, *, user_handle: bytes | None = None) -> bytes:
    """A challenge for a signed-in session (``purpose``: "register" or "confirm"), replacing
    any earlier one of the same purpose."""
    now = utcnow()
    session.execute(
        delete(PasskeyChallenge).where(
            PasskeyChallenge.session_id == session_id,
            (PasskeyChallenge.purpose == purpose) | (PasskeyChallenge.expires_at <= now),
        )
    )
    row = PasskeyChallenge(
        session_id=session_id,
        purpose=purpose,
        challenge=passkeys.new_challenge(),
        user_handle=user_handle,
        expires_at=now + CHALLENGE_LIFETIME,
    )
    session.add(row)
    session.flush()
    return row.challenge


def take_session_challenge(session: Session, session_id: int, purpose: str) -> PasskeyChallenge:
    """The session's live challenge of ``purpose``, deleted: used once, right or wrong."""
    row = session.scalar(
        select(PasskeyChallenge).where(PasskeyChallenge.session_id == session_id, PasskeyChallenge.purpose == purpose)
    )
    if row is not None:
        session.delete(row)
        session.flush()
    if row is None or row.expires_at <= utcnow():
        raise PasskeyRefused(
            "The passkey's answer is not for this request (used already, or from an earlier page): try again."
        )
    return row


def expires_in_minutes(row: PendingSignIn, now: datetime | None = None) -> int:
    return max(1, int(((row.expires_at - (now or utcnow())).total_seconds() + 59) // 60))
