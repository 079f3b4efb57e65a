"""Password hashes at the configured cost (accounts/passwords.py): RFC 9106's low-memory profile
unless TOKENSMITH_PASSWORD_HASHING says OWASP's minimum; a hash made at one cost is made again at
the other's at the next sign-in. (The suite itself runs at OWASP's minimum: tests/conftest.py.)"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import SUITE_HASHING
from tests.support.ledger import remember
from tests.support.pages import sign_in
from tests.support.servers import LiveServer
from tokensmith.accounts import passwords, users
from tokensmith.config import PasswordHashing, load_settings
from tokensmith.errors import ConfigurationError, PasswordIncorrect
from tokensmith.store.models import User

PASSWORD = "correct horse battery"
RFC_9106 = "$argon2id$v=19$m=65536,t=3,p=4$"
OWASP = "$argon2id$v=19$m=19456,t=2,p=1$"


@pytest.fixture
def at_cost() -> Iterator[object]:
    """``passwords.use`` for one test; the suite's cost again after it."""
    yield passwords.use
    passwords.use(SUITE_HASHING)


def test_the_default_cost_is_rfc_9106s_low_memory_profile(at_cost):
    settings = load_settings({})
    assert settings.password_hashing is PasswordHashing.RFC_9106_LOW_MEMORY
    at_cost(settings.password_hashing)
    assert passwords.hashed(PASSWORD).startswith(RFC_9106)
    assert passwords.unknown_account_hash().startswith(RFC_9106)  # a wrong username costs as much


def test_owasp_minimum_is_chosen_by_the_environment(at_cost):
    settings = load_settings({"TOKENSMITH_PASSWORD_HASHING": " OWASP-Minimum "})
    assert settings.password_hashing is PasswordHashing.OWASP_MINIMUM
    at_cost(settings.password_hashing)
    assert passwords.hashed(PASSWORD).startswith(OWASP)
    assert passwords.unknown_account_hash().startswith(OWASP)


@pytest.mark.parametrize("value", ["bcrypt", "", "rfc9106-high-memory", "none"])
def test_another_cost_is_refused_naming_the_choices(value):
    with pytest.raises(ConfigurationError) as refused:
        load_settings({"TOKENSMITH_PASSWORD_HASHING": value})
    assert "'rfc9106-low-memory' or 'owasp-minimum'" in str(refused.value)


@pytest.mark.parametrize(
    ("made_at", "signed_in_at", "prefix"),
    [
        (PasswordHashing.OWASP_MINIMUM, PasswordHashing.RFC_9106_LOW_MEMORY, RFC_9106),
        (PasswordHashing.RFC_9106_LOW_MEMORY, PasswordHashing.OWASP_MINIMUM, OWASP),
    ],
)
def test_a_sign_in_remakes_a_hash_made_at_the_other_cost(db, make_user, at_cost, made_at, signed_in_at, prefix):
    at_cost(made_at)
    user = make_user("carol", password=PASSWORD)
    before = user.password_hash
    at_cost(signed_in_at)
    with pytest.raises(PasswordIncorrect):
        users.check_password(db, "carol", "not the password at all")
    assert user.password_hash == before  # a wrong password changes nothing
    assert users.check_password(db, "carol", PASSWORD).id == user.id
    db.flush()
    stored = db.scalars(select(User.password_hash).where(User.id == user.id)).one()
    assert stored.startswith(prefix) and stored != before
    assert users.check_password(db, "carol", PASSWORD).password_hash == stored  # made once, kept


@pytest.mark.slow
def test_a_server_at_the_default_cost_hashes_and_moves_accounts_over(tmp_path):
    """As people run it: the cost the default names. The first start's admin password is hashed
    at RFC 9106's cost; an account whose hash was made at the suite's (by this process, OWASP's)
    signs in and leaves with RFC 9106's."""
    live = LiveServer(tmp_path / "data", env={"TOKENSMITH_PASSWORD_HASHING": "rfc9106-low-memory"}).start()
    try:
        live.create_user("dana", password=remember("dana's long passphrase"))

        def stored(username: str) -> str:
            with sqlite3.connect(tmp_path / "data" / "tokensmith.db") as connection:
                row = connection.execute("SELECT password_hash FROM users WHERE username = ?", (username,)).fetchone()
            return str(row[0])

        assert stored("admin").startswith(RFC_9106)
        assert stored("dana").startswith(OWASP if SUITE_HASHING is PasswordHashing.OWASP_MINIMUM else RFC_9106)
        with httpx.Client(base_url=live.base_url) as browser:
            assert sign_in(browser, "dana", "dana's long passphrase").status_code == 303
        assert stored("dana").startswith(RFC_9106)
        with httpx.Client(base_url=live.base_url) as browser:
            assert sign_in(browser, "admin", live.admin_password or "").status_code == 303
    finally:
        live.stop()
