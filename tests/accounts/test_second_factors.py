"""Second factors as a whole: adding and removing them (and the recovery codes with the first
and the last), the code typed at the second step, half-done sign-ins, the reset, the trail."""

from __future__ import annotations

import time
from datetime import timedelta

import pyotp
import pytest

from tokensmith.accounts import recovery_codes, second_factors, totp
from tokensmith.accounts.throttle import SignInThrottle
from tokensmith.audit import trail
from tokensmith.clock import utcnow
from tokensmith.errors import InvalidInput, SecondStepIncorrect, SignInExpired, TooManyAttempts
from tokensmith.store.models import AuditEvent, PendingSignIn


def actions(db, user_id: int) -> list[str]:
    return [event.action for event in db.query(AuditEvent).filter_by(user_id=user_id).order_by(AuditEvent.id)]


def with_app(db, keys, user) -> tuple[str, list[str]]:
    secret = totp.start_enrolment(db, keys, user.id)
    codes = second_factors.confirm_app(db, keys, user, pyotp.TOTP(secret).now(), ip="192.0.2.1")
    return secret, codes


def test_the_first_factor_brings_recovery_codes_and_the_last_takes_them(db, keys, make_user) -> None:
    user = make_user(password="a long password here")
    assert second_factors.applies_to(user) and not second_factors.has_second_factor(db, user.id)
    with pytest.raises(InvalidInput, match="add an authenticator app or a passkey first"):
        second_factors.regenerate_codes(db, keys, user, ip=None)
    _secret, codes = with_app(db, keys, user)
    assert len(codes) == 10 and second_factors.has_second_factor(db, user.id)
    assert second_factors.factors_of(db, user.id).codes_left == 10
    second_factors.remove_app(db, user, ip=None)
    assert not second_factors.has_second_factor(db, user.id) and recovery_codes.remaining(db, user.id) == 0
    assert actions(db, user.id)[-3:] == ["2fa.added", "2fa.recovery_codes_generated", "2fa.removed"]


def test_a_wrong_first_code_adds_nothing(db, keys, make_user) -> None:
    user = make_user(password="a long password here")
    with pytest.raises(InvalidInput, match="No authenticator app is being added"):
        second_factors.confirm_app(db, keys, user, "123456", ip=None)
    totp.start_enrolment(db, keys, user.id)
    with pytest.raises(InvalidInput, match="not the one your app shows"):
        second_factors.confirm_app(db, keys, user, "abcdef", ip=None)
    assert not second_factors.has_second_factor(db, user.id)


def test_the_code_at_the_second_step_an_apps_or_a_recovery_code(db, keys, make_user) -> None:
    user = make_user(password="a long password here")
    secret, codes = with_app(db, keys, user)
    later = pyotp.TOTP(secret).generate_otp(int(time.time() // 30) + 1)
    assert second_factors.check_code(db, keys, user, later, ip=None) == second_factors.APP
    with pytest.raises(SecondStepIncorrect, match="used already"):
        second_factors.check_code(db, keys, user, later, ip=None)
    assert second_factors.check_code(db, keys, user, codes[0], ip=None) == second_factors.RECOVERY_CODE
    with pytest.raises(SecondStepIncorrect, match="unused recovery codes"):
        second_factors.check_code(db, keys, user, codes[0], ip=None)
    used = db.query(AuditEvent).filter_by(user_id=user.id, action="2fa.recovery_code_used").one()
    assert trail.describe(used) == "A recovery code was used to sign in (9 left)"


def test_a_half_done_sign_in_is_found_by_its_secret_until_it_ends(db, keys, make_user) -> None:
    user = make_user(password="a long password here")
    secret, row = second_factors.begin_sign_in(db, keys, user.id, "/tokens")
    assert secret.encode() not in row.digest and second_factors.find_sign_in(db, keys, secret) is row
    with pytest.raises(SignInExpired):
        second_factors.find_sign_in(db, keys, secret, passkey_alone=True)  # it is no passkey sign-in
    with pytest.raises(SignInExpired):
        second_factors.find_sign_in(db, keys, "another secret")
    with pytest.raises(SignInExpired, match="or its answer came already"):
        second_factors.take_challenge(row)
    challenge = second_factors.give_challenge(row)
    assert second_factors.take_challenge(row) == challenge and row.challenge is None
    row.expires_at = utcnow() - timedelta(seconds=1)
    with pytest.raises(SignInExpired, match="lasts 5 minutes"):
        second_factors.find_sign_in(db, keys, secret)
    second_factors.begin_sign_in(db, keys, None, "/tokens")  # and an ended one is tidied away
    assert db.get(PendingSignIn, row.id) is None


def test_the_reset_removes_every_factor_and_is_recorded(db, keys, make_user) -> None:
    user = make_user(password="a long password here")
    with_app(db, keys, user)
    second_factors.begin_sign_in(db, keys, user.id, "/tokens")
    assert second_factors.reset(db, user, actor="admin (shell)") == 1
    factors = second_factors.factors_of(db, user.id)
    assert not factors.any and factors.app is None and factors.codes_left == 0
    assert db.query(PendingSignIn).filter_by(user_id=user.id).count() == 0
    event = db.query(AuditEvent).filter_by(user_id=user.id, action="2fa.reset").one()
    assert event.actor == "admin (shell)" and trail.needs_attention(event)


def test_people_without_a_password_are_untouched(db, make_user) -> None:
    assert not second_factors.applies_to(make_user())


def test_the_second_steps_counts_are_apart_from_the_passwords(db, keys) -> None:
    passwords, codes = SignInThrottle(keys), SignInThrottle(keys, namespace="second-step")
    for _ in range(10):
        codes.failed(db, "mia", "192.0.2.7")
    with pytest.raises(TooManyAttempts):
        codes.check(db, "mia", "192.0.2.7")
    passwords.check(db, "mia", "192.0.2.7")  # her password is not locked by wrong codes
