"""An authenticator app: time-based one-time codes (TOTP, RFC 6238), six digits every 30 seconds.

The secret must be usable (the server computes the codes too), so it cannot be a digest: it is
encrypted with AES-GCM under a key of its own purpose derived from the server keys
(store/server_keys.py), bound to its person (the user id is the associated data: a row copied
onto another account does not decrypt), and kept with the key version it was made under.

A code is accepted in its own 30-second step and one step either side (clocks drift, people
type slowly): ±30 seconds, as most services do. Each code works once: the step of the last
code accepted is kept, and a code whose step is not later is refused. The update is a
conditional UPDATE, so two instances given the same code at the same moment accept it once.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import CursorResult, or_, update
from sqlalchemy.orm import Session

from tokensmith.clock import utcnow
from tokensmith.errors import InvalidInput
from tokensmith.store.models import AuthenticatorApp
from tokensmith.store.server_keys import ServerKeys

PURPOSE = "totp-secret"
STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1  # a code of the step before or after the current one is accepted too
SECRET_BYTES = 20  # 160 bits, RFC 4226's recommendation; 32 base32 characters
NONCE_BYTES = 12
ISSUER = "Tokensmith"


@dataclass(frozen=True)
class Enrolment:
    """What the Security page shows while an authenticator app is being added: the secret in
    words (groups of four), the otpauth:// address, and that address as a QR code (SVG)."""

    secret_words: str
    uri: str
    qr_svg: str


def _aead(keys: ServerKeys, version: int | None = None) -> AESGCM:
    return AESGCM(keys.subkey(PURPOSE, version))


def _associated(user_id: int) -> bytes:
    return f"authenticator-app\0{user_id}".encode()


def encrypt_secret(keys: ServerKeys, user_id: int, secret: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + _aead(keys).encrypt(nonce, secret.encode(), _associated(user_id))


def decrypt_secret(keys: ServerKeys, app: AuthenticatorApp) -> str:
    if app.key_version not in keys.versions:
        raise InvalidInput(
            "The authenticator app was added under a server key this server no longer has: "
            "an administrator resets it (tokensmith users reset-2fa), then add it again."
        )
    nonce, sealed = app.secret[:NONCE_BYTES], app.secret[NONCE_BYTES:]
    try:
        return _aead(keys, app.key_version).decrypt(nonce, sealed, _associated(app.user_id)).decode()
    except InvalidTag:
        raise InvalidInput("The authenticator app's secret does not decrypt: add the app again.") from None


def start_enrolment(session: Session, keys: ServerKeys, user_id: int) -> str:
    """A new secret for the person's app, waiting for its first code; replaces one not confirmed
    yet (an app already confirmed is removed first, on the page)."""
    secret = pyotp.random_base32(length=SECRET_BYTES * 8 // 5)
    app = session.get(AuthenticatorApp, user_id)
    if app is None:
        app = AuthenticatorApp(user_id=user_id)
        session.add(app)
    app.secret = encrypt_secret(keys, user_id, secret)
    app.key_version = keys.current
    app.created_at = utcnow()
    app.confirmed_at = None
    app.last_step = None
    app.last_used_at = None
    session.flush()
    return secret


def enrolment(secret: str, username: str, public_url: str) -> Enrolment:
    import segno  # only here: the page that shows a QR code, not every worker's start

    host = urlsplit(public_url).hostname or "tokensmith"
    uri = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=f"{username}@{host}", issuer_name=ISSUER
    )
    svg = segno.make(uri, error="m").svg_inline(scale=4, dark="#111", light="#fff")
    words = " ".join(secret[index : index + 4] for index in range(0, len(secret), 4))
    return Enrolment(secret_words=words, uri=uri, qr_svg=svg)


def pending_secret(session: Session, keys: ServerKeys, user_id: int) -> str | None:
    """The secret of an enrolment waiting for its first code, if one is."""
    app = session.get(AuthenticatorApp, user_id)
    if app is None or app.confirmed_at is not None:
        return None
    return decrypt_secret(keys, app)


def normalise(code: str) -> str | None:
    """Six digits, as people type them ("123 456" too); None when it cannot be a code."""
    digits = "".join(code.split()).replace("-", "")
    return digits if len(digits) == DIGITS and digits.isascii() and digits.isdigit() else None


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step ``code`` belongs to, within the drift allowed, or None; every candidate is
    compared in constant time."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = int(now // STEP_SECONDS)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step).encode(), code.encode()):
            found = step
    return found


def use_code(
    session: Session, keys: ServerKeys, user_id: int, code: str, *, clock: Callable[[], float] = time.time
) -> bool:
    """Whether ``code`` is a right code of the person's confirmed app not used before; if so it
    is spent (in the caller's unit of work)."""
    app = session.get(AuthenticatorApp, user_id)
    typed = normalise(code)
    if app is None or app.confirmed_at is None or typed is None:
        return False
    return _spend(session, app, decrypt_secret(keys, app), typed, clock())


def confirm(
    session: Session, keys: ServerKeys, user_id: int, code: str, *, clock: Callable[[], float] = time.time
) -> bool:
    """The first code of an enrolment: right, the app is the person's from now on."""
    app = session.get(AuthenticatorApp, user_id)
    typed = normalise(code)
    if app is None or app.confirmed_at is not None or typed is None:
        return False
    if not _spend(session, app, decrypt_secret(keys, app), typed, clock()):
        return False
    app.confirmed_at = utcnow()
    return True


def _spend(session: Session, app: AuthenticatorApp, secret: str, code: str, now: float) -> bool:
    step = matching_step(secret, code, now)
    if step is None:
        return False
    spent = session.execute(
        update(AuthenticatorApp)
        .where(
            AuthenticatorApp.user_id == app.user_id,
            or_(AuthenticatorApp.last_step.is_(None), AuthenticatorApp.last_step < step),
        )
        .values(last_step=step, last_used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.refresh(app)
    return cast(CursorResult[Any], spent).rowcount == 1


def remove(session: Session, user_id: int) -> bool:
    """Remove the person's app (confirmed or not); whether there was a confirmed one."""
    app = session.get(AuthenticatorApp, user_id)
    if app is None:
        return False
    confirmed = app.confirmed_at is not None
    session.delete(app)
    session.flush()
    return confirmed
