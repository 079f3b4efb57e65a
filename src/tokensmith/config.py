"""Settings, read once from the environment.

Every setting has a default that gives the embedded deployment: SQLite in ``./var``,
served at http://127.0.0.1:8000.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Mapping

from tokensmith.errors import ConfigurationError


class PasswordPolicy(str, Enum):
    """Whether a password may stand in for a token on non-browser routes."""

    DENY = "deny"
    WARN = "warn"


_TOKEN_PREFIX = re.compile(r"^[a-z][a-z0-9]{1,9}_$")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("var")
    database_url: str | None = None
    public_url: str = "http://127.0.0.1:8000"
    public_url_configured: bool = False
    secret_key: str | None = field(default=None, repr=False)
    token_prefix: str = "tks_"
    password_policy: PasswordPolicy = PasswordPolicy.DENY
    session_days: int = 7

    @property
    def store_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir.resolve() / 'tokensmith.db'}"

    @property
    def tokens_page_url(self) -> str:
        return f"{self.public_url.rstrip('/')}/tokens"

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)


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
        raise ConfigurationError(
            f"TOKENSMITH_PASSWORD_POLICY must be 'deny' or 'warn'; got {policy!r}"
        ) from None
    return Settings(
        data_dir=Path(env.get("TOKENSMITH_DATA_DIR", "var")),
        database_url=env.get("TOKENSMITH_DATABASE_URL") or None,
        public_url=env.get("TOKENSMITH_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/"),
        public_url_configured=bool(env.get("TOKENSMITH_PUBLIC_URL")),
        secret_key=env.get("TOKENSMITH_SECRET_KEY") or None,
        token_prefix=prefix,
        password_policy=password_policy,
    )
