"""The server's secret keys (the pepper): what token and session digests are keyed with.

A key comes from ``TOKENSMITH_SECRET_KEY`` or, failing that, is generated once into
``DATA_DIR/secret-keys`` with mode 0600. Keys are versioned so they can be rotated: the
first key listed is current and signs new digests; the others still verify old ones.
Format, in the variable or the file: ``2:NEWKEY,1:OLDKEY`` (a bare ``KEY`` is version 1).

Each purpose (tokens, sessions, CSRF, instance keys) gets its own subkey, so a digest made
for one purpose can never be replayed as another.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from tokensmith.config import Settings
from tokensmith.errors import ConfigurationError
from tokensmith.store import data_dir

KEY_FILE_NAME = "secret-keys"
MIN_KEY_LENGTH = 32


def _subkey(key: bytes, purpose: str) -> bytes:
    return hmac.digest(key, b"tokensmith/" + purpose.encode(), hashlib.sha256)


@dataclass(frozen=True)
class ServerKeys:
    """Versioned HMAC-SHA256 keys. ``versions`` maps version to key, current first."""

    versions: dict[int, bytes] = field(repr=False)
    # Per purpose and version, an HMAC already keyed: a digest copies it and hashes the value,
    # instead of keying a new one (what every token check does, on every request).
    _keyed: dict[tuple[str, int], hmac.HMAC] = field(default_factory=dict, repr=False, compare=False)

    @property
    def current(self) -> int:
        return next(iter(self.versions))

    def _keyed_for(self, purpose: str, version: int) -> hmac.HMAC:
        keyed = self._keyed.get((purpose, version))
        if keyed is None:
            keyed = hmac.new(_subkey(self.versions[version], purpose), digestmod=hashlib.sha256)
            self._keyed[(purpose, version)] = keyed
        return keyed

    def subkey(self, purpose: str, version: int | None = None) -> bytes:
        """The 32-byte key of one purpose under one version (the current one by default): for
        what must be encrypted rather than digested (an authenticator app's secret)."""
        return _subkey(self.versions[self.current if version is None else version], purpose)

    def digest(self, purpose: str, value: str, version: int | None = None) -> bytes:
        mac = self._keyed_for(purpose, self.current if version is None else version).copy()
        mac.update(value.encode())
        return mac.digest()

    def all_digests(self, purpose: str, value: str) -> list[bytes]:
        """The digest under every known version: one indexed lookup finds any of them."""
        return [self.digest(purpose, value, version) for version in self.versions]


def parse_keys(text: str) -> ServerKeys:
    versions: dict[int, bytes] = {}
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        version_text, sep, key = item.partition(":")
        if not sep:
            version_text, key = "1", item
        if not version_text.isdigit():
            raise ConfigurationError("Secret keys are listed as VERSION:KEY, separated by commas.")
        if len(key) < MIN_KEY_LENGTH:
            raise ConfigurationError(f"Each secret key must be at least {MIN_KEY_LENGTH} characters long.")
        version = int(version_text)
        if version in versions:
            raise ConfigurationError(f"Secret key version {version} is listed twice.")
        versions[version] = key.encode()
    if not versions:
        raise ConfigurationError("No secret key was given.")
    return ServerKeys(versions)


def load_server_keys(settings: Settings) -> ServerKeys:
    if settings.secret_key:
        return parse_keys(settings.secret_key)
    path = settings.data_dir / KEY_FILE_NAME
    if not path.exists():
        _write_new_key_file(path)
    return parse_keys(path.read_text())


def _write_new_key_file(path: Path) -> None:
    """Write a new key file unless another process (an instance sharing the data dir, on this
    host or another) did first; then theirs is the one. The key is written whole into a file of
    this process's own and linked into place: link() fails when the name exists, and nobody can
    read the file half-written (as they could one created, then written)."""
    data_dir.ensure(path.parent)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(f"1:{secrets.token_urlsafe(48)}\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process's key is in place: use it
            os.link(draft, path)
    finally:
        draft.unlink()
