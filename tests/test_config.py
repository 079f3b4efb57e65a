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
    assert settings.secret_scanning_keys_url == "https://api.github.com/meta/public_keys/secret_scanning"
    assert settings.revoke_unused_after_days is None and settings.sweep_seconds == 900
    assert not settings.require_second_factor


def test_environment_overrides():
    settings = load_settings(
        {
            "TOKENSMITH_DATABASE_URL": "postgresql+psycopg://u:p@127.0.0.1/db",
            "TOKENSMITH_PASSWORD_POLICY": "WARN",
            "TOKENSMITH_TOKEN_PREFIX": "acme_",
            "TOKENSMITH_PUBLIC_URL": "https://tokens.example.test/",
            "TOKENSMITH_PUSH_PROTECTION": "false",
            "TOKENSMITH_SECRET_SCANNING_KEYS_URL": "http://127.0.0.1:9/keys",
            "TOKENSMITH_REVOKE_UNUSED_AFTER_DAYS": "365",
            "TOKENSMITH_MAIL_REMINDER_SECONDS": "60",
            "TOKENSMITH_REQUIRE_2FA": "true",
        }
    )
    assert settings.store_url == "postgresql+psycopg://u:p@127.0.0.1/db"
    assert settings.password_policy is PasswordPolicy.WARN
    assert settings.token_prefix == "acme_"
    assert settings.tokens_page_url == "https://tokens.example.test/tokens"
    assert settings.secure_cookies
    assert not settings.push_protection
    assert settings.secret_scanning_keys_url == "http://127.0.0.1:9/keys"
    assert settings.revoke_unused_after_days == 365 and settings.sweep_seconds == 60
    assert settings.require_second_factor


@pytest.mark.parametrize(
    "variable, value",
    [
        ("TOKENSMITH_PASSWORD_POLICY", "allow"),
        ("TOKENSMITH_TOKEN_PREFIX", "TKS_"),
        ("TOKENSMITH_TOKEN_PREFIX", "tks"),
        ("TOKENSMITH_TOKEN_PREFIX", "a_"),
        ("TOKENSMITH_PUSH_PROTECTION", "sometimes"),
        ("TOKENSMITH_OIDC_TOKEN_MINUTES", "0"),
        ("TOKENSMITH_OIDC_TOKEN_MINUTES", "61"),
        ("TOKENSMITH_OIDC_TOKEN_MINUTES", "a quarter of an hour"),
        ("TOKENSMITH_OIDC_AUDIENCE", "two words"),
        ("TOKENSMITH_OIDC_AUDIENCE", "https://x.example/" + "a" * 300),
        ("TOKENSMITH_SECRET_SCANNING_KEYS_URL", "http://keys.example.com/secret_scanning"),
        ("TOKENSMITH_SECRET_SCANNING_KEYS_URL", "file:///etc/passwd"),
        ("TOKENSMITH_SECRET_SCANNING_KEYS_URL", "https://[::1/keys"),
        ("TOKENSMITH_REVOKE_UNUSED_AFTER_DAYS", "7"),
        ("TOKENSMITH_REVOKE_UNUSED_AFTER_DAYS", "a year"),
        ("TOKENSMITH_REVOKE_UNUSED_AFTER_DAYS", "4000"),
        ("TOKENSMITH_REQUIRE_2FA", "maybe"),
    ],
)
def test_bad_settings_are_refused_with_the_variable_named(variable, value):
    with pytest.raises(ConfigurationError, match=variable):
        load_settings({variable: value})


def test_a_replica_is_named_only_beside_its_postgresql_primary():
    replica = "postgresql+psycopg://u:p@replica.internal/db"
    settings = load_settings(
        {
            "TOKENSMITH_DATABASE_URL": "postgresql+psycopg://u:p@primary.internal/db",
            "TOKENSMITH_REPLICA_DATABASE_URL": replica,
        }
    )
    assert settings.replica_database_url == replica
    assert load_settings({}).replica_database_url is None
    with pytest.raises(ConfigurationError, match="TOKENSMITH_REPLICA_DATABASE_URL") as refused:
        load_settings({"TOKENSMITH_REPLICA_DATABASE_URL": replica})  # on SQLite: a replica of nothing
    assert "p@replica" not in str(refused.value)


def test_mail_is_off_unless_an_smtp_server_is_named():
    assert load_settings({}).mail is None
    with pytest.raises(ConfigurationError, match="TOKENSMITH_SMTP_URL"):
        load_settings({"TOKENSMITH_MAIL_FROM": "tokens@example.test"})  # whom from, but through what?


def test_the_smtp_url_gives_scheme_host_port_and_login_and_its_password_stays_out_of_sight():
    mail = load_settings(
        {
            "TOKENSMITH_SMTP_URL": "smtp+starttls://relay%40acme:s3cr%2Fet-mail-pass@mx.acme.test",
            "TOKENSMITH_MAIL_FROM": "Tokensmith <tokens@acme.test>",
        }
    ).mail
    assert (mail.scheme, mail.host, mail.port, mail.username, mail.password) == (
        "smtp+starttls",
        "mx.acme.test",
        587,
        "relay@acme",
        "s3cr/et-mail-pass",
    )
    assert mail.sender_domain == "acme.test"
    assert "s3cr" not in repr(mail) and "s3cr" not in repr(
        load_settings({"TOKENSMITH_SMTP_URL": "smtps://u:s3cr@mx.acme.test", "TOKENSMITH_MAIL_FROM": "t@acme.test"})
    )
    assert (
        load_settings({"TOKENSMITH_SMTP_URL": "smtps://mx.acme.test", "TOKENSMITH_MAIL_FROM": "t@acme.test"}).mail.port
        == 465
    )
    assert (
        load_settings(
            {
                "TOKENSMITH_SMTP_URL": "smtp://127.0.0.1:2525",
                "TOKENSMITH_MAIL_FROM": "t@acme.test",
                "TOKENSMITH_MAIL_POLL_SECONDS": "0.5",
            }
        ).mail.poll_seconds
        == 0.5
    )


@pytest.mark.parametrize(
    "url, sender",
    [
        ("http://u:s3cr-et@mx.acme.test", "t@acme.test"),
        ("smtp://u:s3cr-et@mx.acme.test:99999", "t@acme.test"),
        ("smtp://u:s3cr-et@mx.acme.test/path?x=1", "t@acme.test"),
        ("smtp://u:s3cr-et@mx.acme.test", ""),
        ("smtp://u:s3cr-et@mx.acme.test", "no address"),
        ("smtp://u:s3cr-et@mx.acme.test", "t@acme.test\r\nBcc: x@evil.test"),
    ],
)
def test_bad_mail_settings_are_refused_without_quoting_the_password(url, sender):
    with pytest.raises(ConfigurationError, match=r"TOKENSMITH_SMTP_URL|TOKENSMITH_MAIL_FROM") as refused:
        load_settings({"TOKENSMITH_SMTP_URL": url, "TOKENSMITH_MAIL_FROM": sender})
    assert "s3cr-et" not in str(refused.value)


def test_the_audience_and_the_minutes_of_ci_tokens():
    """Workload identity: the audience CI jobs ask for is the public URL unless named; their
    tokens live 15 minutes unless told, an hour at most."""
    defaults = load_settings({"TOKENSMITH_PUBLIC_URL": "https://tokens.example.test/"})
    assert defaults.workload_audience == "https://tokens.example.test" and defaults.oidc_token_minutes == 15
    named = load_settings({"TOKENSMITH_OIDC_AUDIENCE": "tokensmith", "TOKENSMITH_OIDC_TOKEN_MINUTES": "60"})
    assert named.workload_audience == "tokensmith" and named.oidc_token_minutes == 60
