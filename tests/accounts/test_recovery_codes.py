"""Recovery codes: ten, shown once, kept as keyed digests, each used once."""

from __future__ import annotations

from tokensmith.accounts import recovery_codes
from tokensmith.store.models import RecoveryCode


def test_ten_codes_kept_only_as_digests_each_used_once(db, keys, make_user) -> None:
    user = make_user()
    codes = recovery_codes.generate(db, keys, user.id)
    assert len(codes) == len(set(codes)) == 10 and all(len(code) == 11 and code[5] == "-" for code in codes)
    stored = db.query(RecoveryCode).filter_by(user_id=user.id).all()
    assert all(code.replace("-", "").encode() not in row.digest for row in stored for code in codes)
    assert recovery_codes.use(db, keys, user.id, codes[3].upper().replace("-", " ")) == 9
    assert recovery_codes.use(db, keys, user.id, codes[3]) is None
    assert recovery_codes.use(db, keys, user.id, "not a code") is None


def test_new_codes_replace_the_old_and_belong_to_their_person(db, keys, make_user) -> None:
    alice, bob = make_user(), make_user()
    old = recovery_codes.generate(db, keys, alice.id)
    new = recovery_codes.generate(db, keys, alice.id)
    assert recovery_codes.use(db, keys, alice.id, old[0]) is None
    assert recovery_codes.use(db, keys, bob.id, new[0]) is None
    assert recovery_codes.use(db, keys, alice.id, new[0]) == 9
