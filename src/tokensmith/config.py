"""Settings, read once from the environment.

Every setting has a default that gives the embedded deployment: SQLite in ``./var``,
served at http://127.0.0.1:8000.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from enum import StrEnum
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tokensmith.errors import ConfigurationError


class PasswordPolicy(StrEnum):
    """Whether a password may stand in for a token on non-browser routes."""

    DENY = "deny"
    WARN = "warn"


class PasswordHashing(StrEnum):
    """argon2id's cost for new password hashes (accounts/passwords.py). A hash keeps the
    parameters it was made with; at a sign-in, one made with others is made again with these."""

    RFC_9106_LOW_MEMORY = "rfc9106-low-memory"  # t=3, 64 MiB, 4 lanes: RFC 9106's second choice
    OWASP_MINIMUM = "owasp-minimum"  # t=2, 19 MiB, 1 lane: OWASP's floor for argon2id


_TOKEN_PREFIX = re.compile(r"^[a-z][a-z0-9]{1,9}_$")
MIN_BEARER_SECRET_LENGTH = 24
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class IdentityProviderSettings:
    """An OpenID Connect provider that browsers sign in through."""

    issuer: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    name: str = "your identity provider"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"


SMTP_PORTS = {"smtp": 25, "smtps": 465, "smtp+starttls": 587}


@dataclass(frozen=True)
class MailSettings:
    """Where mail goes out (TOKENSMITH_SMTP_URL) and whom it comes from (TOKENSMITH_MAIL_FROM).

    ``poll_seconds``: how often the sender looks for mail that another process queued, and the
    first wait before a retry while the SMTP server is down (each one doubles, up to ten times).
    """

    scheme: str  # smtp, smtps (TLS from the start) or smtp+starttls
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    poll_seconds: float = 30.0

    @property
    def sender_domain(self) -> str:
        return parseaddr(self.sender)[1].rpartition("@")[2] or "tokensmith.invalid"


GITHUB_SCANNING_KEYS = "https://api.github.com/meta/public_keys/secret_scanning"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("var")
    database_url: str | None = None
    # A streaming replica of database_url that token checks read; see docs/deployment.md.
    replica_database_url: str | None = None
    public_url: str = "http://127.0.0.1:8000"
    public_url_configured: bool = False
    secret_key: str | None = field(default=None, repr=False)
    token_prefix: str = "tks_"
    password_policy: PasswordPolicy = PasswordPolicy.DENY
    session_days: int = 7
    identity_provider: IdentityProviderSettings | None = None
    local_login: bool = True
    scim_token: str | None = field(default=None, repr=False)
    # /metrics: with a secret, for whoever presents it as a Bearer token; without, loopback only.
    metrics_token: str | None = field(default=None, repr=False)
    # The proxies whose X-Forwarded-For and X-Forwarded-Proto are believed; none by default.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # Every new token expires within this many days; None (the default): tokens never expire
    # unless asked to, as in the reference.
    max_token_lifetime_days: int | None = None
    # Mail to token owners (mail.py, notices.py); None (the default): no mail at all.
    mail: MailSettings | None = None
    # A git push whose new objects carry a live token is refused (push_protection.py). On unless
    # TOKENSMITH_PUSH_PROTECTION=false (the benchmark's baseline).
    push_protection: bool = True
    # Workload identity (tokens/workload_identity.py): the ``aud`` CI jobs ask their platform for
    # (None: the public URL), and how long the token an ID token is exchanged for lives.
    oidc_audience: str | None = None
    oidc_token_minutes: int = 15

    # Where the keys that sign GitHub's secret-scanning reports are published (secret_scanning.py).
    secret_scanning_keys_url: str = GITHUB_SCANNING_KEYS
    # Tokens unused for this many days are revoked (tokens/sweep.py); None (the default): never.
    revoke_unused_after_days: int | None = None
    # How often one instance sweeps: unused tokens, and the notices of tokens about to expire.
    sweep_seconds: float = 900.0
    # TOKENSMITH_PASSWORD_HASHING: the cost of new password hashes (accounts/passwords.py).
    password_hashing: PasswordHashing = PasswordHashing.RFC_9106_LOW_MEMORY
    # TOKENSMITH_REQUIRE_2FA: people who sign in with a password enrol a second factor before
    # anything else (accounts/second_factors.py).
    require_second_factor: bool = False
    # Where every revocation is also written, apart from the store, for a restore to replay
    # (backups/revocation_journal.py); None: DATA_DIR/revocations.
    revocation_journal: Path | None = None

    @property
    def revocation_journal_dir(self) -> Path:
        return self.revocation_journal or self.data_dir / "revocations"

    @property
    def workload_audience(self) -> str:
        """The audience an ID token must name to be exchanged here (GET /api/v1/oidc/audience)."""
        return self.oidc_audience or self.public_url

    @property
    def sqlite_path(self) -> Path | None:
        """The embedded store's file, unless TOKENSMITH_DATABASE_URL names another store."""
        return None if self.database_url else self.data_dir.resolve() / "tokensmith.db"

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path}"

    @property
    def tokens_page_url(self) -> str:
        return f"{self.public_url.rstrip('/')}/tokens"

    @property
    def oidc_redirect_uri(self) -> str:
        """The address to register at the identity provider."""
        return f"{self.public_url.rstrip('/')}/login/oidc/callback"

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    prefix = env.get("TOKENSMITH_TOKEN_PREFIX", "tks_")
    if not _TOKEN_PREFIX.match(prefix):
        raise ConfigurationError(
            "TOKENSMITH_TOKEN_PREFIX must be 2 to 10 lowercase letters or digits, starting "
            f"with a letter, followed by '_' (like 'tks_'); got {prefix!r}"
        )
    policy = env.get("TOKENSMITH_PASSWORD_POLICY", "deny").strip().lower()
    try:
        password_policy = PasswordPolicy(policy)
    except ValueError:
        raise ConfigurationError(f"TOKENSMITH_PASSWORD_POLICY must be 'deny' or 'warn'; got {policy!r}") from None
    hashing = env.get("TOKENSMITH_PASSWORD_HASHING", PasswordHashing.RFC_9106_LOW_MEMORY).strip().lower()
    try:
        password_hashing = PasswordHashing(hashing)
    except ValueError:
        choices = " or ".join(f"'{choice}'" for choice in PasswordHashing)
        raise ConfigurationError(f"TOKENSMITH_PASSWORD_HASHING must be {choices}; got {hashing!r}") from None
    identity_provider = _identity_provider(env)
    local_login = _flag(env, "TOKENSMITH_LOCAL_LOGIN", default=True)
    if not local_login and identity_provider is None:
        raise ConfigurationError(
            "TOKENSMITH_LOCAL_LOGIN=false turns off passwords, so TOKENSMITH_OIDC_ISSUER must name "
            "the identity provider people sign in through instead."
        )
    return Settings(
        data_dir=Path(env.get("TOKENSMITH_DATA_DIR", "var")),
        database_url=env.get("TOKENSMITH_DATABASE_URL") or None,
        replica_database_url=_replica_url(env),
        public_url=env.get("TOKENSMITH_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/"),
        public_url_configured=bool(env.get("TOKENSMITH_PUBLIC_URL")),
        secret_key=env.get("TOKENSMITH_SECRET_KEY") or None,
        token_prefix=prefix,
        password_policy=password_policy,
        identity_provider=identity_provider,
        local_login=local_login,
        scim_token=_bearer_secret(env, "TOKENSMITH_SCIM_TOKEN"),
        metrics_token=_bearer_secret(env, "TOKENSMITH_METRICS_TOKEN"),
        trusted_proxies=_networks(env, "TOKENSMITH_TRUSTED_PROXIES"),
        max_token_lifetime_days=_days(env, "TOKENSMITH_MAX_TOKEN_LIFETIME_DAYS"),
        mail=_mail(env),
        push_protection=_flag(env, "TOKENSMITH_PUSH_PROTECTION", default=True),
        oidc_audience=_audience(env),
        oidc_token_minutes=_minutes(env, "TOKENSMITH_OIDC_TOKEN_MINUTES", default=15, most=60),
        secret_scanning_keys_url=_secure_url(env, "TOKENSMITH_SECRET_SCANNING_KEYS_URL", GITHUB_SCANNING_KEYS),
        revoke_unused_after_days=_days(env, "TOKENSMITH_REVOKE_UNUSED_AFTER_DAYS", minimum=MIN_UNUSED_DAYS),
        sweep_seconds=_seconds(env, "TOKENSMITH_MAIL_REMINDER_SECONDS", 900.0),
        require_second_factor=_flag(env, "TOKENSMITH_REQUIRE_2FA", default=False),
        password_hashing=password_hashing,
        revocation_journal=Path(journal) if (journal := env.get("TOKENSMITH_REVOCATION_JOURNAL")) else None,
    )


def _audience(env: Mapping[str, str]) -> str | None:
    audience = env.get("TOKENSMITH_OIDC_AUDIENCE", "").strip()
    if not audience:
        return None
    if len(audience) > 255 or not audience.isprintable() or " " in audience:
        raise ConfigurationError(
            "TOKENSMITH_OIDC_AUDIENCE is the audience CI jobs ask their platform's ID token for: one word or "
            f"URL of at most 255 printable characters, like https://tokens.example.com; got {audience[:60]!r}"
        )
    return audience


def _minutes(env: Mapping[str, str], name: str, *, default: int, most: int) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or not 1 <= int(value) <= most:
        raise ConfigurationError(f"{name} is a number of minutes from 1 to {most}; got {value[:20]!r}")
    return int(value)


def _mail(env: Mapping[str, str]) -> MailSettings | None:
    """TOKENSMITH_SMTP_URL and TOKENSMITH_MAIL_FROM, both or neither. The URL may carry a
    password: no message here quotes it."""
    url = env.get("TOKENSMITH_SMTP_URL", "").strip()
    sender = env.get("TOKENSMITH_MAIL_FROM", "").strip()
    if not url:
        if sender:
            raise ConfigurationError(
                "TOKENSMITH_MAIL_FROM is set but TOKENSMITH_SMTP_URL is not: name the SMTP server mail goes "
                "through (smtp://host:port, smtps://host or smtp+starttls://user:password@host:587)."
            )
        return None
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in SMTP_PORTS
        or not parts.hostname
        or port == -1
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ConfigurationError(
            "TOKENSMITH_SMTP_URL must look like smtp://host:port, smtps://host:port or "
            "smtp+starttls://user:password@host:port (the user and password optional); the one given "
            f"{'has the scheme ' + repr(parts.scheme[:20]) if parts.scheme else 'has no scheme'} and does not."
        )
    _name, address = parseaddr(sender)
    if not sender or "@" not in address or any(char in sender for char in "\r\n") or len(sender) > 254:
        raise ConfigurationError(
            "TOKENSMITH_SMTP_URL is set, so TOKENSMITH_MAIL_FROM must be the address mail comes from, like "
            f"'Tokensmith <tokens@example.com>'; got {sender[:80]!r}."
        )
    return MailSettings(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or SMTP_PORTS[parts.scheme],
        sender=sender,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        poll_seconds=_seconds(env, "TOKENSMITH_MAIL_POLL_SECONDS", 30.0),
    )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0.05 <= seconds <= 86400:
        raise ConfigurationError(f"{name} is a number of seconds from 0.05 to 86400; got {value[:20]!r}")
    return seconds


MAX_LIFETIME_DAYS = 3650


# Owners are told a week before a token is revoked unused: the limit is longer than that.
MIN_UNUSED_DAYS = 8


def _days(env: Mapping[str, str], name: str, *, minimum: int = 1) -> int | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or not minimum <= int(value) <= MAX_LIFETIME_DAYS:
        raise ConfigurationError(
            f"{name} is a number of days from {minimum} to {MAX_LIFETIME_DAYS}; got {value[:20]!r}"
        )
    return int(value)


def _replica_url(env: Mapping[str, str]) -> str | None:
    replica = env.get("TOKENSMITH_REPLICA_DATABASE_URL") or None
    if replica is not None and not (env.get("TOKENSMITH_DATABASE_URL") or "").startswith("postgresql"):
        raise ConfigurationError(
            "TOKENSMITH_REPLICA_DATABASE_URL names a streaming replica of a PostgreSQL store: "
            "TOKENSMITH_DATABASE_URL must name its primary (postgresql+psycopg://...)."
        )
    return replica


def _bearer_secret(env: Mapping[str, str], name: str) -> str | None:
    """A secret that a client presents as a Bearer token: long enough not to be guessed."""
    secret = env.get(name) or None
    if secret is not None and len(secret) < MIN_BEARER_SECRET_LENGTH:
        raise ConfigurationError(
            f"{name} must be at least {MIN_BEARER_SECRET_LENGTH} characters; generate "
            "one with `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`."
        )
    return secret


def _networks(env: Mapping[str, str], name: str) -> tuple[IPNetwork, ...]:
    """A comma-separated list of addresses or CIDR blocks, IPv4 or IPv6."""
    networks = []
    for item in (part.strip() for part in env.get(name, "").split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigurationError(
                f"{name} is a comma-separated list of addresses or CIDR blocks, like "
                f"'10.0.0.0/8, ::1'; {item[:60]!r} is neither."
            ) from None
    return tuple(networks)


def _on_loopback_or_https(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.netloc) and (
        parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost", "::1"})
    )


def _secure_url(env: Mapping[str, str], name: str, default: str) -> str:
    """An https:// URL (plain http only on loopback) to fetch something this server trusts."""
    url = env.get(name, "").strip() or default
    try:
        acceptable = _on_loopback_or_https(url) and not urlsplit(url).fragment
    except ValueError:  # a malformed address: an unclosed IPv6 bracket, say
        acceptable = False
    if not acceptable:
        raise ConfigurationError(f"{name} must be an https:// URL (plain http only on loopback); got {url[:200]!r}")
    return url


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{name} must be 'true' or 'false'; got {value!r}")


def _identity_provider(env: Mapping[str, str]) -> IdentityProviderSettings | None:
    # Kept exactly as given: the ID token's "iss" must equal it character for character (Auth0's
    # ends with a slash, Okta's does not).
    issuer = env.get("TOKENSMITH_OIDC_ISSUER", "").strip()
    if not issuer:
        return None
    parts = urlsplit(issuer)
    if not _on_loopback_or_https(issuer) or parts.query or parts.fragment:
        raise ConfigurationError(
            "TOKENSMITH_OIDC_ISSUER must be the provider's https:// issuer URL (plain http only "
            f"on loopback), as its discovery document names it; got {issuer!r}"
        )
    client_id = env.get("TOKENSMITH_OIDC_CLIENT_ID", "").strip()
    if not client_id:
        raise ConfigurationError(
            "TOKENSMITH_OIDC_ISSUER is set but TOKENSMITH_OIDC_CLIENT_ID is not: register "
            "Tokensmith as an application at the provider and give its client id."
        )
    name = env.get("TOKENSMITH_OIDC_PROVIDER_NAME", "").strip() or parts.hostname or issuer
    return IdentityProviderSettings(
        issuer=issuer,
        client_id=client_id,
        client_secret=env.get("TOKENSMITH_OIDC_CLIENT_SECRET") or None,
        name=name,
    )
