"""Users and passwords, on both stores."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tokensmith.accounts import users
from tokensmith.errors import AccountDisabled, Conflict, InvalidInput, NotFound, PasswordIncorrect
from tokensmith.store.models import User

PASSWORD = "correct horse battery"


def test_passwords_are_stored_as_argon2id_only(db, make_user):
    user = make_user("carol", password=PASSWORD)
    stored = db.scalars(select(User.password_hash).where(User.id == user.id)).one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert users.check_password(db, "carol", PASSWORD).id == user.id


def test_usernames_are_unique_whatever_the_case(db, make_user):
    make_user("Dave")
    with pytest.raises(Conflict, match="already exists"):
        make_user("dave")
    assert users.find_user(db, "DAVE").username == "Dave"


def test_an_email_address_is_a_username(db, make_user):
    users.create_user(db, "jane.doe@example.test", "jane.doe@example.test", actor="tests")
    assert users.find_user(db, "Jane.Doe@example.test") is not None


@pytest.mark.parametrize("username", ["", "-x", "x-", "a b", "a/b", "a:b", "x" * 65, "<script>", "é", "a@"])
def test_bad_usernames_are_refused(db, username):
    with pytest.raises(InvalidInput, match="username"):
        users.create_user(db, username, "someone@example.test", actor="tests")


@pytest.mark.parametrize(
    "password, words",
    [
        ("short", "at least 12"),
        ("tks_" + "a" * 20, "token prefix"),
        ("bell\x07bell-bell", "control"),
        ("x" * 1025, "at most"),
    ],
)
def test_weak_or_confusing_passwords_are_refused(db, password, words):
    with pytest.raises(InvalidInput, match=words):
        users.create_user(db, "weak", "weak@example.test", password=password, actor="tests")


def test_bad_email_is_refused(db):
    with pytest.raises(InvalidInput, match="not an email"):
        users.create_user(db, "erin", "erin-at-example", actor="tests")


def test_wrong_password_and_unknown_user_read_the_same(db, make_user):
    make_user("frank", password=PASSWORD)
    with pytest.raises(PasswordIncorrect) as wrong_password:
        users.check_password(db, "frank", PASSWORD + "!")
    with pytest.raises(PasswordIncorrect) as unknown_user:
        users.check_password(db, "nobody-here", PASSWORD)
    assert wrong_password.value.message == unknown_user.value.message == "Incorrect username or password."


def test_a_user_without_password_cannot_use_one(db, make_user):
    make_user("grace")
    with pytest.raises(PasswordIncorrect):
        users.check_password(db, "grace", "")


def test_disabled_users_cannot_sign_in(db, make_user):
    user = make_user("heidi", password=PASSWORD)
    users.disable_user(db, user, actor="tests")
    with pytest.raises(AccountDisabled):
        users.check_password(db, "heidi", PASSWORD)


def test_get_user_names_the_missing_one(db):
    with pytest.raises(NotFound, match="'ghost'"):
        users.get_user(db, "ghost")
