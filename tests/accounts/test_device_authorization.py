"""The device authorization grant's rules (RFC 8628), on SQLite and PostgreSQL: codes, the
person's decision, the client's poll and every answer it can get."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.support.ledger import remember
from tokensmith.accounts import device_authorization, users
from tokensmith.accounts.device_authorization import DeviceGrantError
from tokensmith.clock import utcnow
from tokensmith.errors import InvalidInput, TooManyAttempts
from tokensmith.identity import Account
from tokensmith.scopes import ALL_SCOPES
from tokensmith.store.models import DeviceAuthorization

CLIENT = "tokensmith-cli"


def request(db, keys, *, scope: str = "", device_name: str = "laptop-7", ip: str = "192.0.2.7"):
    codes, row = device_authorization.request_codes(
        db, keys, client_id=CLIENT, scope=scope, device_name=device_name, ip=ip
    )
    remember(codes.device_code)
    return codes, row


def poll(db, keys, codes, **changes):
    arguments = {
        "grant_type": device_authorization.GRANT_TYPE,
        "device_code": codes.device_code,
        "client_id": CLIENT,
        "prefix": "tks_",
        "ip": "192.0.2.7",
        **changes,
    }
    return device_authorization.exchange(db, keys, **arguments)


def refused(db, keys, codes, **changes) -> DeviceGrantError:
    with pytest.raises(DeviceGrantError) as caught:
        poll(db, keys, codes, **changes)
    return caught.value


def owner(make_user) -> Account:
    return Account.of(make_user())


def test_codes_are_shown_once_and_kept_as_digests_only(db, keys):
    codes, row = request(db, keys)
    assert len(codes.device_code) >= 43 and codes.expires_in == 600 and codes.interval == 5
    letters = codes.user_code.replace("-", "")
    assert (
        codes.user_code[4] == "-" and len(letters) == 8 and set(letters) <= set(device_authorization.USER_CODE_ALPHABET)
    )
    stored = db.execute(select(DeviceAuthorization.__table__).where(DeviceAuthorization.id == row.id)).one()
    text = repr(tuple(stored))
    assert codes.device_code not in text and letters not in text
    assert row.device_code_digest == keys.digest("device_code", codes.device_code)
    assert row.scopes == list(ALL_SCOPES) and row.status == "pending"


def test_an_unknown_client_or_scope_is_refused_in_the_rfcs_words(db, keys):
    with pytest.raises(DeviceGrantError) as unknown:
        device_authorization.request_codes(db, keys, client_id="someone", scope="", device_name="", ip=None)
    assert unknown.value.code == "invalid_client"
    with pytest.raises(DeviceGrantError) as scope:
        device_authorization.request_codes(db, keys, client_id=CLIENT, scope="git:read admin", device_name="", ip=None)
    assert scope.value.code == "invalid_scope" and "'admin'" in scope.value.message
    _codes, row = request(db, keys, scope="git:write maven:read")
    assert row.scopes == ["git:read", "git:write", "maven:read"]  # git:write brings git:read, as on My Tokens


def test_the_client_waits_then_gets_one_token_named_for_its_host(db, keys, make_user):
    person = owner(make_user)
    codes, _row = request(db, keys, device_name="laptop-7\x1b[31m")  # control characters are dropped
    assert refused(db, keys, codes).code == "authorization_pending"
    slow = refused(db, keys, codes)  # again at once: too soon
    assert slow.code == "slow_down" and "every 10 seconds" in slow.message
    row = device_authorization.pending(db, keys, codes.user_code.lower().replace("-", " "), person, ip="198.51.100.1")
    assert (
        row.device_name == "laptop-7[31m" and device_authorization.token_name(row) == "tokensmith CLI on laptop-7[31m"
    )
    device_authorization.decide(db, keys, codes.user_code, person, approve=True, ip="198.51.100.1")
    secret, token = poll(db, keys, codes)
    remember(secret)
    assert token.user_id == person.id and token.name == "tokensmith CLI on laptop-7[31m"
    assert token.scopes == list(ALL_SCOPES) and secret.startswith("tks_")
    assert refused(db, keys, codes).code == "invalid_grant"  # one token per device code, once
    with pytest.raises(InvalidInput):  # and its user code is spent too
        device_authorization.pending(db, keys, codes.user_code, person, ip=None)


def test_under_a_maximum_lifetime_the_token_expires_at_that_maximum(db, keys, make_user):
    person = owner(make_user)
    codes, _row = request(db, keys, scope="api:read")
    device_authorization.decide(db, keys, codes.user_code, person, approve=True, ip=None)
    secret, token = poll(db, keys, codes, max_lifetime_days=30)
    remember(secret)
    assert token.scopes == ["api:read"]
    assert timedelta(days=29, hours=23) < token.expires_at - utcnow() <= timedelta(days=30)


def test_a_taken_token_name_gets_a_number(db, keys, make_user, make_token):
    user = make_user()
    make_token(user, "tokensmith CLI on laptop-7")
    for expected in ("tokensmith CLI on laptop-7 (2)", "tokensmith CLI on laptop-7 (3)"):
        codes, _row = request(db, keys)
        device_authorization.decide(db, keys, codes.user_code, Account.of(user), approve=True, ip=None)
        secret, token = poll(db, keys, codes)
        remember(secret)
        assert token.name == expected


def test_a_denied_or_expired_code_says_so(db, keys, make_user):
    person = owner(make_user)
    denied, _row = request(db, keys)
    device_authorization.decide(db, keys, denied.user_code, person, approve=False, ip=None)
    assert refused(db, keys, denied).code == "access_denied"
    late, row = request(db, keys)
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    assert refused(db, keys, late).code == "expired_token"
    with pytest.raises(InvalidInput, match="mistyped, expired or used"):
        device_authorization.pending(db, keys, late.user_code, person, ip=None)


def test_an_approval_by_an_account_disabled_since_gives_nothing(db, keys, make_user):
    user = make_user()
    codes, _row = request(db, keys)
    device_authorization.decide(db, keys, codes.user_code, Account.of(user), approve=True, ip=None)
    users.disable_user(db, user, actor="tests")
    assert refused(db, keys, codes).code == "access_denied"


def test_malformed_polls_are_refused(db, keys):
    codes, _row = request(db, keys)
    assert refused(db, keys, codes, grant_type="password").code == "unsupported_grant_type"
    assert refused(db, keys, codes, client_id="other").code == "invalid_client"
    assert refused(db, keys, codes, device_code="").code == "invalid_request"
    assert refused(db, keys, codes, device_code="x" * 500).code == "invalid_request"
    other = codes.device_code[:-2] + ("AA" if codes.device_code[-2:] != "AA" else "BB")
    assert refused(db, keys, codes, device_code=other).code == "invalid_grant"


def test_wrong_codes_are_limited_per_person(db, keys, make_user):
    person, other = owner(make_user), owner(make_user)
    codes, _row = request(db, keys)
    for typed in ["BBBB-BBBB", "not a code", "A" * 8] + ["CCCC-CCCC"] * (device_authorization.MAX_WRONG_CODES - 3):
        with pytest.raises(InvalidInput):
            device_authorization.pending(db, keys, typed, person, ip="203.0.113.9")
    with pytest.raises(TooManyAttempts) as throttled:  # even the right code, now
        device_authorization.pending(db, keys, codes.user_code, person, ip="203.0.113.9")
    assert 0 < throttled.value.retry_after <= 3600
    assert (
        device_authorization.pending(db, keys, codes.user_code, other, ip=None).id == _row.id
    )  # others are not held up


def test_one_address_has_a_bounded_number_of_codes_waiting(db, keys):
    for _ in range(device_authorization.MAX_PENDING_PER_ADDRESS):
        request(db, keys, ip="203.0.113.50")
    with pytest.raises(DeviceGrantError) as full:
        request(db, keys, ip="203.0.113.50")
    assert full.value.code == "slow_down" and full.value.status == 429
    request(db, keys, ip="203.0.113.51")  # another address is not held up


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("BDWP-HQPK", "BDWPHQPK"),
        ("bdwp hqpk", "BDWPHQPK"),
        (" BDWPHQPK ", "BDWPHQPK"),
        ("BDWP-HQP", None),
        ("BDWA-HQPK", None),
        ("", None),
        ("B" * 400, None),
    ],
)
def test_a_typed_code_is_read_as_people_type_it(typed, stored):
    assert device_authorization.normalised(typed) == stored
