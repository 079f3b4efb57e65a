"""The OAuth 2.0 device authorization grant (RFC 8628): how ``tokensmith login --web`` gets a
personal access token without anyone typing one.

1. The client asks for codes (``request_codes``): a *device code*, its secret, and a short
   *user code* for its person to type.
2. The person, signed in to the web site, enters the user code on ``/device``, checks who asks
   (the client, its host and address, the scopes) and approves or denies it (``decide``).
3. The client, polling meanwhile, exchanges its device code (``exchange``) and gets a new token
   from the one ``token_lifecycle.create_token``, named "tokensmith CLI on HOST".

Both codes are stored only as keyed digests, like tokens: the device code is a bearer secret
until used, and the user code (RFC 8628 §6.1: 8 characters of 20 consonants, about 34.5 bits)
is guessable only at the rate the site lets a signed-in person try codes (``MAX_WRONG_CODES``
an hour). Codes live ``LIFETIME``, and a device code yields one token, once.
"""

from __future__ import annotations

import math
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tokensmith.audit import trail
from tokensmith.audit.trail import AuditAction
from tokensmith.clock import utcnow
from tokensmith.errors import Conflict, InvalidInput, TokensmithError, TooManyAttempts
from tokensmith.identity import Account
from tokensmith.scopes import ALL_SCOPES
from tokensmith.store.database import rows_changed
from tokensmith.store.models import AuditEvent, DeviceAuthorization, PersonalToken, User
from tokensmith.store.server_keys import ServerKeys
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import limits as token_limits

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
# The clients that may ask (public clients: no secret), and how the approval page names them.
CLIENTS = {"tokensmith-cli": "Tokensmith command-line client"}
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels (no words), nothing that looks like another
USER_CODE_LENGTH = 8
LIFETIME = timedelta(minutes=10)
INTERVAL = 5  # seconds between polls, RFC 8628's default
SLOW_DOWN_STEP = 5  # RFC 8628 §3.5: each slow_down adds 5 seconds
MAX_PENDING_PER_ADDRESS = 10  # codes waiting at once from one address
MAX_WRONG_CODES = 10  # wrong user codes one person may enter ...
WRONG_CODE_WINDOW = timedelta(hours=1)  # ... in this long
KEPT_AFTER_EXPIRY = timedelta(hours=1)  # so that a late poll still reads "expired", not "unknown"
DEVICE_PURPOSE, USER_PURPOSE = "device_code", "user_code"


class DeviceGrantError(TokensmithError):
    """An answer of the grant's endpoints in RFC 6749 §5.2's terms: ``error`` is the RFC's code
    (authorization_pending, slow_down, access_denied, expired_token, invalid_grant, ...)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.code, self.status = error, status


@dataclass(frozen=True)
class DeviceCodes:
    """What the client is told once: the codes themselves exist nowhere else."""

    device_code: str
    user_code: str  # as shown: BDWP-HQPK
    expires_in: int
    interval: int


def shown(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def normalised(typed: str) -> str | None:
    """A typed user code as stored (case, spaces and dashes do not matter), or None when it
    cannot be one."""
    code = "".join(char for char in typed.upper() if char not in " -\t")
    if len(code) != USER_CODE_LENGTH or any(char not in USER_CODE_ALPHABET for char in code):
        return None
    return code


def parse_scopes(scope: str) -> list[str]:
    """The scopes a client asks for (space-separated, RFC 6749 §3.3), checked as every token's
    are (token_limits); all five when none."""
    if not scope.split():
        return list(ALL_SCOPES)
    try:
        return list(token_limits.validate_scopes(scope.split()))
    except InvalidInput as error:
        raise DeviceGrantError("invalid_scope", error.message) from None


def clean_device_name(name: str) -> str | None:
    """The client's host name as the page and the token's name show it: printable, short."""
    name = "".join(char for char in name if unicodedata.category(char)[0] not in "CZ" or char == " ")
    return name.strip()[:64] or None


def request_codes(
    session: Session, keys: ServerKeys, *, client_id: str, scope: str, device_name: str, ip: str | None
) -> tuple[DeviceCodes, DeviceAuthorization]:
    """Step 1: new codes for a client (RFC 8628 §3.1, §3.2)."""
    if client_id not in CLIENTS:
        raise DeviceGrantError("invalid_client", "Unknown client_id.")
    scopes = parse_scopes(scope)
    now = utcnow()
    session.execute(delete(DeviceAuthorization).where(DeviceAuthorization.expires_at < now - KEPT_AFTER_EXPIRY))
    waiting = session.scalars(
        select(func.count())
        .select_from(DeviceAuthorization)
        .where(
            DeviceAuthorization.requested_ip == ip,
            DeviceAuthorization.status == "pending",
            DeviceAuthorization.expires_at > now,
        )
    ).one()
    if waiting >= MAX_PENDING_PER_ADDRESS:
        raise DeviceGrantError(
            "slow_down",
            f"{waiting} logins from this address are waiting for approval: approve them, or wait until they expire.",
            status=429,
        )
    for _attempt in range(5):  # a user code already in use: draw another
        device_code = secrets.token_urlsafe(32)
        user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
        row = DeviceAuthorization(
            device_code_digest=keys.digest(DEVICE_PURPOSE, device_code),
            user_code_digest=keys.digest(USER_PURPOSE, user_code),
            key_version=keys.current,
            client_id=client_id,
            device_name=clean_device_name(device_name),
            scopes=scopes,
            requested_ip=ip,
            created_at=now,
            expires_at=now + LIFETIME,
            interval=INTERVAL,
            status="pending",
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            continue
        return DeviceCodes(device_code, shown(user_code), int(LIFETIME.total_seconds()), INTERVAL), row
    raise DeviceGrantError("temporarily_unavailable", "No free code right now: try again.", status=503)


def token_name(row: DeviceAuthorization) -> str:
    return f"tokensmith CLI on {row.device_name or row.requested_ip or 'an unknown host'}"


# --- step 2: the person, signed in ------------------------------------------------------------------


def _check_attempts(session: Session, user: Account, now: datetime) -> None:
    since = now - WRONG_CODE_WINDOW
    wrong = session.scalars(
        select(AuditEvent.at)
        .where(
            AuditEvent.user_id == user.id, AuditEvent.action == AuditAction.DEVICE_CODE_REJECTED, AuditEvent.at > since
        )
        .order_by(AuditEvent.at)
    ).all()
    if len(wrong) >= MAX_WRONG_CODES:
        wait = math.ceil((wrong[-MAX_WRONG_CODES] + WRONG_CODE_WINDOW - now).total_seconds())
        raise TooManyAttempts(
            f"Too many wrong codes lately. Wait {max(1, math.ceil(wait / 60))} minute(s), "
            "then enter the code your terminal shows.",
            retry_after=max(1, wait),
        )


def pending(session: Session, keys: ServerKeys, typed: str, user: Account, *, ip: str | None) -> DeviceAuthorization:
    """The login waiting under a user code, for ``user`` to approve or deny. A wrong, expired or
    used code counts against ``user``: at most ``MAX_WRONG_CODES`` an hour."""
    now = utcnow()
    _check_attempts(session, user, now)
    code = normalised(typed)
    row = None
    if code is not None:
        row = session.scalars(
            select(DeviceAuthorization).where(
                DeviceAuthorization.user_code_digest.in_(keys.all_digests(USER_PURPOSE, code)),
                DeviceAuthorization.status == "pending",
                DeviceAuthorization.expires_at > now,
            )
        ).one_or_none()
    if row is None:
        trail.record(session, AuditAction.DEVICE_CODE_REJECTED, actor=user.username, user_id=user.id, ip=ip)
        raise InvalidInput(
            "That code is not one waiting for approval: it is mistyped, expired or used. Enter "
            "the code your terminal shows, or run `tokensmith login --web` again."
        )
    return row


def decide(
    session: Session, keys: ServerKeys, typed: str, user: Account, *, approve: bool, ip: str | None
) -> DeviceAuthorization:
    """The person's answer. An approval is for their own account: the token is theirs."""
    row = pending(session, keys, typed, user, ip=ip)
    row.status, row.user_id, row.decided_at = ("approved" if approve else "denied"), user.id, utcnow()
    trail.record(
        session,
        AuditAction.DEVICE_APPROVED if approve else AuditAction.DEVICE_DENIED,
        actor=user.username,
        user_id=user.id,
        ip=ip,
        client=CLIENTS[row.client_id],
        device=row.device_name or "?",
        requested_ip=row.requested_ip,
        scopes=" ".join(row.scopes),
    )
    return row


# --- step 3: the client's poll ------------------------------------------------------------------------


def exchange(
    session: Session,
    keys: ServerKeys,
    *,
    grant_type: str,
    device_code: str,
    client_id: str,
    prefix: str,
    ip: str | None,
    max_lifetime_days: int | None = None,
) -> tuple[str, PersonalToken]:
    """A poll (RFC 8628 §3.4, §3.5): the new token once approved, else the RFC's error. Under a
    deployment's maximum lifetime (``max_lifetime_days``) the token expires at that maximum."""
    if grant_type != GRANT_TYPE:
        raise DeviceGrantError("unsupported_grant_type", f"This endpoint takes grant_type={GRANT_TYPE}.")
    if client_id not in CLIENTS:
        raise DeviceGrantError("invalid_client", "Unknown client_id.")
    if not device_code or len(device_code) > 128:
        raise DeviceGrantError("invalid_request", "device_code is missing.")
    row = session.scalars(
        select(DeviceAuthorization).where(
            DeviceAuthorization.device_code_digest.in_(keys.all_digests(DEVICE_PURPOSE, device_code))
        )
    ).one_or_none()
    if row is None or row.client_id != client_id:
        raise DeviceGrantError("invalid_grant", "Unknown device code.")
    now = utcnow()
    if row.status == "issued":
        raise DeviceGrantError("invalid_grant", "This device code was used already.")
    if row.expires_at <= now:
        raise DeviceGrantError("expired_token", "The code expired before it was approved.")
    if row.status == "denied":
        raise DeviceGrantError("access_denied", "The login was denied.")
    if row.status == "pending":
        too_soon = row.last_polled_at is not None and now - row.last_polled_at < timedelta(seconds=row.interval)
        row.last_polled_at = now
        if too_soon:
            row.interval += SLOW_DOWN_STEP
            raise DeviceGrantError("slow_down", f"Poll at most every {row.interval} seconds.")
        raise DeviceGrantError("authorization_pending", "Waiting for the person to approve the code.")
    # Approved: exactly one poll may turn it into a token, whatever else polls at the same moment.
    claimed = rows_changed(
        session,
        update(DeviceAuthorization)
        .where(DeviceAuthorization.id == row.id, DeviceAuthorization.status == "approved")
        .values(status="issued"),
    )
    if claimed != 1:
        raise DeviceGrantError("invalid_grant", "This device code was used already.")
    owner = session.get(User, row.user_id)
    if owner is None or not owner.is_active:
        raise DeviceGrantError("access_denied", "The account that approved the login is disabled.")
    expires_at = now + timedelta(days=max_lifetime_days) if max_lifetime_days else None
    return _create_token(
        session, keys, row, owner, prefix=prefix, ip=ip, expires_at=expires_at, max_lifetime_days=max_lifetime_days
    )


def _create_token(
    session: Session,
    keys: ServerKeys,
    row: DeviceAuthorization,
    owner: User,
    *,
    prefix: str,
    ip: str | None,
    expires_at: datetime | None,
    max_lifetime_days: int | None,
) -> tuple[str, PersonalToken]:
    """The token, by the one maker of tokens, under a name the person recognises (with a number
    when that name is taken)."""
    try:
        return token_lifecycle.under_a_free_name(
            token_name(row),
            lambda name: token_lifecycle.create_token(
                session,
                keys,
                owner.id,
                name,
                prefix=prefix,
                actor=owner.username,
                scopes=row.scopes,
                expires_at=expires_at,
                max_lifetime_days=max_lifetime_days,
                ip=ip,
            ),
        )
    except Conflict as error:
        raise DeviceGrantError("invalid_grant", error.message) from None
