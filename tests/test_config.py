from __future__ import annotations

import pytest

from tokensmith.config import PasswordPolicy, load_settings
from tokensmith.errors import ConfigurationError


def test_defaults_are_the_embedded_deployment():
    settings = load_settings({})
    assert settings.store_url.startswith("sqlite:///") and settings.store_url.endswith("/var/tokensmith.db")
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.password_policy is PasswordPolicy.DENY
    assert settings.token_prefix == "tks_"
    assert not settings.secure_cookies
    assert settings.push_protection


def test_environment_overrides():
    settings = load_settings({
        "TOKENSMITH_DATABASE_URL": "postgresql+psycopg://u:p@127.0.0.1/db",
        "TOKENSMITH_PASSWORD_POLICY": "WARN",
        "TOKENSMITH_TOKEN_PREFIX": "acme_",
        "TOKENSMITH_PUBLIC_URL": "https://tokens.example.test/",
        "TOKENSMITH_PUSH_PROTECTION": "false",
    })
    assert settings.store_url == "postgresql+psycopg://u:p@127.0.0.1/db"
    assert settings.password_policy is PasswordPolicy.WARN
    assert settings.token_prefix == "acme_"
    assert settings.tokens_page_url == "https://tokens.example.test/tokens"
    assert settings.secure_cookies
    assert not settings.push_protection


@pytest.mark.parametrize("variable, value", [
    ("TOKENSMITH_PASSWORD_POLICY", "allow"),
    ("TOKENSMITH_TOKEN_PREFIX", "TKS_"),
    ("TOKENSMITH_TOKEN_PREFIX", "tks"),
    ("TOKENSMITH_TOKEN_PREFIX", "a_"),
    ("TOKENSMITH_PUSH_PROTECTION", "sometimes"),
])
def test_bad_settings_are_refused_with_the_variable_named(variable, value):
    with pytest.raises(ConfigurationError, match=variable):
        load_settings({variable: value})


def test_a_replica_is_named_only_beside_its_postgresql_primary():
    replica = "postgresql+psycopg://u:p@replica.internal/db"
    settings = load_settings({"TOKENSMITH_DATABASE_URL": "postgresql+psycopg://u:p@primary.internal/db",
                              "TOKENSMITH_REPLICA_DATABASE_URL": replica})
    assert settings.replica_database_url == replica
    assert load_settings({}).replica_database_url is None
    with pytest.raises(ConfigurationError, match="TOKENSMITH_REPLICA_DATABASE_URL") as refused:
        load_settings({"TOKENSMITH_REPLICA_DATABASE_URL": replica})  # on SQLite: a replica of nothing
    assert "p@replica" not in str(refused.value)
