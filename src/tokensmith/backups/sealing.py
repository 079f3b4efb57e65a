"""How each frame of a backup file is protected: sealed with a passphrase, or checksummed.

With a passphrase, the file key is derived with argon2id (RFC 9106's low-memory profile, a
fresh random salt per file: every file has a key of its own) and each frame is encrypted with
AES-256-GCM. The nonce is the frame's index, unique under that key; the associated data binds
the frame to the file's header (the KDF's parameters among it), to its index and to its kind,
so a frame cannot be altered, moved, dropped or taken from another file without its tag
failing. A short check value derived from the key tells a wrong passphrase from a damaged file.

Without a passphrase each frame carries a SHA-256 of the same binding instead: corruption,
truncation and reordering are caught, but anybody can write a valid plain file, so a plain
backup is exactly as trustworthy as the place it was kept.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from typing import Any

from argon2.exceptions import HashingError
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tokensmith.errors import BackupUnusable, InvalidInput

TAG_LENGTH = 16
MIN_PASSPHRASE_LENGTH = 12
# argon2id, RFC 9106's second recommended option (the low-memory one): 64 MiB, 3 passes.
KDF_TIME_COST = 3
KDF_MEMORY_KIB = 64 * 1024
KDF_PARALLELISM = 4
# What a file's header may ask of the reader: a hostile header must not make `verify` spend
# gigabytes or minutes before it can say the file is not one of ours.
_KDF_LIMITS = {"time_cost": (1, 10), "memory_cost": (8 * 1024, 1024 * 1024), "parallelism": (1, 16)}


class Seal:
    """Protects the frames of one file: ``close`` a payload into a body, ``open`` it back."""

    header_fields: dict[str, Any]

    def close(self, binding: bytes, index: int, payload: bytes) -> bytes:
        raise NotImplementedError

    def open(self, binding: bytes, index: int, body: bytes) -> bytes:
        raise NotImplementedError


def _associated(binding: bytes, index: int) -> bytes:
    return binding + struct.pack(">Q", index)


class Checksummed(Seal):
    """No passphrase: SHA-256 of the frame and where it belongs, truncated to 16 bytes."""

    def __init__(self) -> None:
        self.header_fields = {"sealing": "none"}

    def close(self, binding: bytes, index: int, payload: bytes) -> bytes:
        return payload + hashlib.sha256(_associated(binding, index) + payload).digest()[:TAG_LENGTH]

    def open(self, binding: bytes, index: int, body: bytes) -> bytes:
        payload, tag = body[:-TAG_LENGTH], body[-TAG_LENGTH:]
        expected = hashlib.sha256(_associated(binding, index) + payload).digest()[:TAG_LENGTH]
        if not hmac.compare_digest(tag, expected):
            raise BackupUnusable(
                f"The backup is damaged: part {index + 1} does not match its checksum (the file was altered or "
                "corrupted). Nothing was restored; use another copy."
            )
        return payload


@dataclass(frozen=True)
class _Kdf:
    salt: bytes
    time_cost: int
    memory_cost: int
    parallelism: int

    def derive(self, passphrase: str) -> bytes:
        return _derived(passphrase, self.salt, self.time_cost, self.memory_cost, self.parallelism)

    def fields(self) -> dict[str, Any]:
        return {
            "name": "argon2id",
            "salt": base64.b64encode(self.salt).decode(),
            "time_cost": self.time_cost,
            "memory_cost": self.memory_cost,
            "parallelism": self.parallelism,
        }


class Encrypted(Seal):
    """A passphrase: AES-256-GCM under a key argon2id derives from it (see the module's doc)."""

    def __init__(self, master: bytes, kdf: _Kdf) -> None:
        self._aead = AESGCM(hmac.digest(master, b"tokensmith backup/encryption", hashlib.sha256))
        self._check = hmac.digest(master, b"tokensmith backup/key check", hashlib.sha256)[:TAG_LENGTH]
        self.header_fields = {
            "sealing": "aes-256-gcm",
            "kdf": kdf.fields(),
            "key_check": base64.b64encode(self._check).decode(),
        }

    @classmethod
    def new(cls, passphrase: str) -> Encrypted:
        kdf = _Kdf(secrets.token_bytes(16), KDF_TIME_COST, KDF_MEMORY_KIB, KDF_PARALLELISM)
        return cls(kdf.derive(passphrase), kdf)

    @classmethod
    def for_header(cls, fields: dict[str, Any], passphrase: str) -> Encrypted:
        kdf = _kdf_of(fields.get("kdf"))
        sealed = cls(kdf.derive(passphrase), kdf)
        if not hmac.compare_digest(sealed.header_fields["key_check"], str(fields.get("key_check", ""))):
            raise BackupUnusable("The passphrase does not open this backup: it is not the one it was made with.")
        return sealed

    @staticmethod
    def _nonce(index: int) -> bytes:
        return struct.pack(">IQ", 0, index)

    def close(self, binding: bytes, index: int, payload: bytes) -> bytes:
        return self._aead.encrypt(self._nonce(index), payload, _associated(binding, index))

    def open(self, binding: bytes, index: int, body: bytes) -> bytes:
        try:
            return self._aead.decrypt(self._nonce(index), body, _associated(binding, index))
        except InvalidTag:
            raise BackupUnusable(
                f"The backup is damaged: part {index + 1} fails its authentication (the file was altered or "
                "corrupted). Nothing was restored; use another copy."
            ) from None


@functools.lru_cache(maxsize=4)
def _derived(passphrase: str, salt: bytes, time_cost: int, memory_cost: int, parallelism: int) -> bytes:
    """argon2id's key, costly on purpose (a second or so): a restore reads its file twice (checked
    whole first, then restored), and derives it once."""
    try:
        return hash_secret_raw(
            passphrase.encode(),
            salt,
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            hash_len=32,
            type=Type.ID,
        )
    except HashingError:
        raise BackupUnusable("The backup's key parameters cannot be used: this is not a Tokensmith backup.") from None


def _kdf_of(fields: object) -> _Kdf:
    if not isinstance(fields, dict) or fields.get("name") != "argon2id":
        raise BackupUnusable("The backup names a key derivation this Tokensmith does not know.")
    try:
        salt = base64.b64decode(str(fields["salt"]), validate=True)
        values = {name: fields[name] for name in _KDF_LIMITS}
    except (KeyError, ValueError):
        raise BackupUnusable("The backup's key parameters are incomplete: this is not a Tokensmith backup.") from None
    for name, (low, high) in _KDF_LIMITS.items():
        if type(values[name]) is not int or not low <= values[name] <= high:
            raise BackupUnusable(f"The backup's key parameter {name} is out of bounds: it is not a Tokensmith backup.")
    if not 8 <= len(salt) <= 64:
        raise BackupUnusable("The backup's key parameters are malformed: it is not a Tokensmith backup.")
    return _Kdf(salt, values["time_cost"], values["memory_cost"], values["parallelism"])


def seal_for_writing(passphrase: str | None) -> Seal:
    if passphrase is None:
        return Checksummed()
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise InvalidInput(
            f"A backup's passphrase has at least {MIN_PASSPHRASE_LENGTH} characters (this one has {len(passphrase)}): "
            "a stolen file can be tried offline. Generate one with "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(24))'`."
        )
    return Encrypted.new(passphrase)


def seal_for_reading(fields: dict[str, Any], passphrase: str | None) -> Seal:
    sealing = fields.get("sealing")
    if sealing == "none":
        return Checksummed()
    if sealing != "aes-256-gcm":
        raise BackupUnusable(f"The backup is sealed with {str(sealing)[:40]!r}, which this Tokensmith does not know.")
    if passphrase is None:
        raise BackupUnusable(
            "This backup is encrypted: give its passphrase with --passphrase-file FILE or --passphrase-stdin."
        )
    return Encrypted.for_header(fields, passphrase)
