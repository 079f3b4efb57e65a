"""The authenticator app: its secret encrypted (never plain, bound to its person, under a key
of its own purpose), codes within ±1 step, each code once, on SQLite and PostgreSQL."""

from __future__ import annotations

import pyotp
import pytest

from tokensmith.accounts import totp
from tokensmith.errors import InvalidInput
from tokensmith.store.models import AuthenticatorApp
from tokensmith.store.server_keys import parse_keys

NOW = 1_800_000_015.0  # 15 s into a step
STEP = int(NOW // 30)


def code(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).generate_otp(step)


def test_the_secret_is_stored_encrypted_and_bound_to_its_person(db, keys, make_user) -> None:
    alice, bob = make_user(), make_user()
    secret = totp.start_enrolment(db, keys, alice.id)
    row = db.get(AuthenticatorApp, alice.id)
    assert len(secret) == 32 and secret.encode() not in row.secret
    assert totp.decrypt_secret(keys, row) == secret
    # Copied onto another account, or read under another server's keys: it does not decrypt.
    copied = AuthenticatorApp(user_id=bob.id, secret=row.secret, key_version=row.key_version)
    with pytest.raises(InvalidInput, match="does not decrypt"):
        totp.decrypt_secret(keys, copied)
    with pytest.raises(InvalidInput, match="does not decrypt"):
        totp.decrypt_secret(parse_keys("1:" + "z" * 40), row)
    with pytest.raises(InvalidInput, match="no longer has"):
        totp.decrypt_secret(parse_keys("2:" + "z" * 40), row)


def test_the_first_code_confirms_then_each_code_works_once(db, keys, make_user) -> None:
    user = make_user()
    secret = totp.start_enrolment(db, keys, user.id)
    assert not totp.use_code(db, keys, user.id, code(secret, STEP), clock=lambda: NOW)  # not confirmed yet
    assert not totp.confirm(db, keys, user.id, "12345", clock=lambda: NOW)
    assert totp.confirm(db, keys, user.id, code(secret, STEP - 1), clock=lambda: NOW)  # the previous window
    assert not totp.use_code(db, keys, user.id, code(secret, STEP - 1), clock=lambda: NOW)  # used
    assert not totp.use_code(db, keys, user.id, code(secret, STEP + 2), clock=lambda: NOW)  # out of the window
    assert totp.use_code(db, keys, user.id, code(secret, STEP + 1), clock=lambda: NOW)  # the next window
    assert not totp.use_code(db, keys, user.id, code(secret, STEP), clock=lambda: NOW)  # earlier than the last
    spaced = code(secret, STEP + 2)
    assert totp.use_code(db, keys, user.id, f"{spaced[:3]} {spaced[3:]}", clock=lambda: NOW + 30)


def test_codes_that_cannot_be_codes_are_refused_without_a_look(db, keys, make_user) -> None:
    user = make_user()
    totp.start_enrolment(db, keys, user.id)
    for typed in ("", "abcdef", "1234567", "１２３４５６", "12345"):
        assert totp.normalise(typed) is None
        assert not totp.use_code(db, keys, user.id, typed)


def test_the_enrolment_shows_a_qr_code_drawn_here_and_the_secret_in_groups(db, keys, make_user) -> None:
    user = make_user("qr-person")
    secret = totp.start_enrolment(db, keys, user.id)
    shown = totp.enrolment(secret, user.username, "http://localhost:8000")
    assert shown.secret_words.replace(" ", "") == secret and len(shown.secret_words.split()) == 8
    assert shown.uri.startswith("otpauth://totp/Tokensmith:qr-person%40localhost?secret=" + secret)
    assert shown.qr_svg.startswith("<svg") and "http" not in shown.qr_svg.replace("http://www.w3.org/2000/svg", "")
