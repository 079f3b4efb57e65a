"""Passkeys: WebAuthn credentials, through duo-labs' py_webauthn (``webauthn``).

The relying party is the public URL's host. Browsers refuse an IP address as one, so when that
host is a loopback address (the embedded default, http://127.0.0.1:8000) the relying party is
``localhost`` and the origin ``http://localhost:PORT``: a secure context on the person's own
machine, served by the same server. Any other IP address: no passkeys, and the pages say why.

What holds, and is refused with its own words otherwise: every challenge is random, given to one
half-done sign-in or one session, and used once (the caller deletes it before verifying); the
origin and the relying party's id hash are this server's; the signature verifies under the
public key stored at registration; the authenticator's counter only moves forward (a counter that
goes back means a cloned authenticator); what a browser posts is limited in size before it is
parsed. Credentials are discoverable (resident keys), so a passkey signs in without a username;
user verification (PIN, fingerprint) is preferred, and required when a passkey signs in alone.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from tokensmith.clock import utcnow
from tokensmith.errors import InvalidInput, NotFound, PasskeyRefused
from tokensmith.store.models import Passkey, User

# py_webauthn (with pyOpenSSL and cbor2) is imported by the functions that run a ceremony, not
# with this module: it would add about 0.6 s to every worker's start, and uvicorn gives a new
# worker 5 s to be ready (`tokensmith serve --workers N`).
CHALLENGE_BYTES = 32
USER_HANDLE_BYTES = 32
TIMEOUT_MS = 120_000
# What a browser posts for one ceremony, as JSON text. A passkey's registration with attestation
# "none" is a few hundred bytes, an assertion less; 16 KiB leaves room for any real one.
MAX_ANSWER_CHARACTERS = 16 * 1024
MAX_NAME = 100
RP_NAME = "Tokensmith"


@dataclass(frozen=True)
class RelyingParty:
    id: str
    origin: str
    name: str = RP_NAME


def relying_party(public_url: str) -> RelyingParty | None:
    """The relying party of a server whose public URL this is; None where browsers allow none
    (an IP address that is not loopback)."""
    parts = urlsplit(public_url)
    host = parts.hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return RelyingParty(id=host, origin=f"{parts.scheme}://{parts.netloc}")
    if not address.is_loopback:
        return None
    port = f":{parts.port}" if parts.port else ""
    return RelyingParty(id="localhost", origin=f"{parts.scheme}://localhost{port}")


def unavailable_reason(public_url: str) -> str:
    return (
        f"Passkeys need a host name: browsers refuse them on an address like {urlsplit(public_url).hostname}. "
        "Set TOKENSMITH_PUBLIC_URL to the server's https:// name to offer them."
    )


def new_challenge() -> bytes:
    return secrets.token_bytes(CHALLENGE_BYTES)


def passkeys_of(session: Session, user_id: int) -> list[Passkey]:
    return list(session.scalars(select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.created_at)))


def user_handle(session: Session, user_id: int) -> bytes:
    """The person's WebAuthn user handle: random (never their name or id), the same for all their
    passkeys, so that an authenticator keeps one passkey per account of this server. The caller
    keeps a new one with the challenge, for add_passkey."""
    existing = session.scalar(select(Passkey.user_handle).where(Passkey.user_id == user_id).limit(1))
    return existing or secrets.token_bytes(USER_HANDLE_BYTES)


def registration_options(
    party: RelyingParty, user: User, handle: bytes, challenge: bytes, existing: list[Passkey]
) -> str:
    """The options for navigator.credentials.create(), as JSON: a discoverable credential, user
    verification preferred, none of the person's passkeys (``existing``) made again on the same
    authenticator."""
    from webauthn import generate_registration_options, options_to_json
    from webauthn.helpers.structs import (
        AttestationConveyancePreference,
        AuthenticatorSelectionCriteria,
        PublicKeyCredentialDescriptor,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    options = generate_registration_options(
        rp_id=party.id,
        rp_name=party.name,
        user_id=handle,
        user_name=user.username,
        user_display_name=user.display_name or user.username,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=key.credential_id) for key in existing],
    )
    return options_to_json(options)


def authentication_options(
    party: RelyingParty, challenge: bytes, allowed: list[Passkey] | None = None, *, alone: bool = False
) -> str:
    """The options for navigator.credentials.get(), as JSON. ``allowed``: the person's passkeys
    (a second step); None: any passkey of this site (a sign-in with a passkey alone, which then
    requires user verification)."""
    from webauthn import generate_authentication_options, options_to_json
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor, UserVerificationRequirement

    options = generate_authentication_options(
        rp_id=party.id,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        allow_credentials=[PublicKeyCredentialDescriptor(id=key.credential_id) for key in allowed or []],
        user_verification=UserVerificationRequirement.REQUIRED if alone else UserVerificationRequirement.PREFERRED,
    )
    return options_to_json(options)


def valid_name(name: str, session: Session, user_id: int) -> str:
    name = " ".join(name.split())
    if len(name) > MAX_NAME:
        raise InvalidInput(f"A passkey's name has at most {MAX_NAME} characters.")
    if not name:
        name = f"Passkey {len(passkeys_of(session, user_id)) + 1}"
    return name


def _within_limit(answer: str) -> str:
    if len(answer) > MAX_ANSWER_CHARACTERS:
        raise PasskeyRefused(
            f"The passkey's answer is {len(answer):,} characters long; at most {MAX_ANSWER_CHARACTERS:,} are "
            "accepted (a real one is a few hundred). Nothing was saved: try again, or use another authenticator."
        )
    if not answer.strip():
        raise PasskeyRefused("No answer came from the passkey: your browser may have been interrupted. Try again.")
    return answer


def add_passkey(
    session: Session, party: RelyingParty, user: User, name: str, answer: str, challenge: bytes, handle: bytes
) -> Passkey:
    """Verify the browser's answer to registration_options and keep the passkey, made for
    ``handle`` (the user handle those options carried)."""
    from webauthn import verify_registration_response
    from webauthn.helpers.exceptions import WebAuthnException

    name = valid_name(name, session, user.id)
    try:
        verified = verify_registration_response(
            credential=_within_limit(answer),
            expected_challenge=challenge,
            expected_rp_id=party.id,
            expected_origin=party.origin,
            require_user_verification=False,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as error:
        raise PasskeyRefused(_refusal(error, party)) from None
    if session.scalar(select(Passkey.id).where(Passkey.credential_id == verified.credential_id)) is not None:
        raise PasskeyRefused("This passkey is already registered on this server.")
    row = Passkey(
        user_id=user.id,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        user_handle=handle,
        name=name,
        created_at=utcnow(),
        last_used_at=None,
    )
    session.add(row)
    session.flush()
    return row


def verify_assertion(
    session: Session,
    party: RelyingParty,
    answer: str,
    challenge: bytes,
    *,
    user_id: int | None = None,
    alone: bool = False,
) -> Passkey:
    """The passkey that answered ``challenge``, its counter moved on and its use noted; refused
    (PasskeyRefused, in words) otherwise. ``user_id``: whose passkey it must be (the second step,
    confirming it is them); None for a sign-in with a passkey alone, where the passkey says whose
    it is (and its user handle must agree)."""
    from webauthn import verify_authentication_response
    from webauthn.helpers import parse_authentication_credential_json
    from webauthn.helpers.exceptions import WebAuthnException

    try:
        credential = parse_authentication_credential_json(_within_limit(answer))
    except (WebAuthnException, ValueError, TypeError, KeyError) as error:
        raise PasskeyRefused(_refusal(error, party)) from None
    row = session.scalar(select(Passkey).where(Passkey.credential_id == credential.raw_id))
    if row is None or (user_id is not None and row.user_id != user_id):
        raise PasskeyRefused(
            "This passkey is not registered here"
            + (" for this account" if user_id is not None else "")
            + ": it may have been removed. Use another way to sign in."
        )
    handle = credential.response.user_handle
    if alone and handle is not None and handle != row.user_handle:
        raise PasskeyRefused("The passkey's answer names another account than the passkey's own.")
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=party.id,
            expected_origin=party.origin,
            credential_public_key=row.public_key,
            credential_current_sign_count=row.sign_count,
            require_user_verification=alone,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as error:
        raise PasskeyRefused(_refusal(error, party)) from None
    row.sign_count = verified.new_sign_count
    row.last_used_at = utcnow()
    session.flush()
    return row


def remove_passkey(session: Session, user_id: int, passkey_id: int) -> Passkey:
    row = session.get(Passkey, passkey_id)
    if row is None or row.user_id != user_id:
        raise NotFound("You have no such passkey: it may have been removed already.")
    session.delete(row)
    session.flush()
    return row


def _refusal(error: Exception, party: RelyingParty) -> str:
    """The library's reason in this site's words (never echoing what the browser sent)."""
    text = str(error).lower()
    if "origin" in text:
        return (
            f"The passkey answered a page of another site (origin), not {party.origin}: "
            f"nothing was signed in. Open {party.origin} and try again."
        )
    if "rp id" in text:
        return f"The passkey answered for another site (relying party), not {party.id}: nothing was signed in."
    if "sign count" in text:
        return (
            "The passkey's counter went backwards: the authenticator may have been copied. Nothing was signed "
            "in; use another way to sign in, and remove this passkey on your Security page."
        )
    if "challenge" in text:
        return (
            "The passkey's answer is not for this request (used already, or from an earlier page): "
            "nothing was signed in. Try again."
        )
    if "signature" in text:
        return "The passkey's signature does not verify: nothing was signed in."
    if "user verification" in text or "not verified" in text:
        return (
            "Signing in with a passkey alone needs the authenticator to check it is you (a PIN or a "
            "fingerprint). Sign in with your password instead, or use an authenticator that can."
        )
    return "The passkey's answer could not be read or verified: nothing was signed in. Try again."
