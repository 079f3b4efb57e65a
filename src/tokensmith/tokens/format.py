"""The token format: generate, parse, checksum, hint. Pure: no I/O, no clock, no store.

A token is ``PREFIX`` + 32 base62 random characters + 6 base62 characters of the CRC32 of
the random part, e.g. ``tks_`` + 38 characters = 42. The random part carries ~190 bits;
the checksum lets a server refuse a mistyped or invented token without asking the store,
and lets secret scanners tell a real token from noise.
"""

from __future__ import annotations

import secrets
import zlib
from dataclasses import dataclass

from tokensmith.errors import CredentialMalformed

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6
BODY_LENGTH = RANDOM_LENGTH + CHECKSUM_LENGTH
_ALPHABET_SET = frozenset(ALPHABET)


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(ALPHABET[remainder])
    return "".join(reversed(digits)).rjust(width, ALPHABET[0])


def checksum(random_part: str) -> str:
    """The 6-character base62 CRC32 of the random part."""
    return _base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_LENGTH)


def generate(prefix: str) -> str:
    """A fresh token. The caller shows it once and keeps only its digest."""
    random_part = _random_base62(RANDOM_LENGTH)
    return prefix + random_part + checksum(random_part)


_UNBIASED = 4 * len(ALPHABET)  # 248: a random byte below it is a uniform character (b % 62)
_AS_CHARACTER = bytes(ord(ALPHABET[byte % len(ALPHABET)]) for byte in range(256))
_BIASED = bytes(range(_UNBIASED, 256))


def _random_base62(length: int) -> str:
    """``length`` characters drawn uniformly from ALPHABET, from one read of the system's random
    source (``secrets.choice`` read it once per character: 32 reads a token). Bytes of 248 and
    up are dropped, so that no character is likelier than another; the others become characters
    by one ``bytes.translate`` (a comprehension over the bytes cost several times as much)."""
    drawn = b""
    while len(drawn) < length:
        drawn += secrets.token_bytes(2 * length).translate(_AS_CHARACTER, _BIASED)
    return drawn[:length].decode("ascii")


def looks_like_token(secret: str, prefix: str) -> bool:
    """Whether a secret was meant as a token (as opposed to a password).

    Decided by the prefix alone, so that a mistyped token is reported as a mistyped token
    and never tried as a password.
    """
    return secret.startswith(prefix)


@dataclass(frozen=True)
class ParsedToken:
    value: str
    prefix: str

    @property
    def hint(self) -> str:
        return hint(self.value, self.prefix)


def parse(secret: str, prefix: str) -> ParsedToken:
    """Check a token's shape and checksum; raise CredentialMalformed when either is wrong."""
    if not secret.startswith(prefix):
        raise CredentialMalformed(f"This is not a Tokensmith token: tokens start with '{prefix}'.")
    body = secret[len(prefix) :]
    if len(body) != BODY_LENGTH or not _ALPHABET_SET.issuperset(body):
        raise CredentialMalformed(
            f"This token is mistyped or truncated: a token is '{prefix}' followed by {BODY_LENGTH} letters and digits."
        )
    random_part, check = body[:RANDOM_LENGTH], body[RANDOM_LENGTH:]
    if not secrets.compare_digest(checksum(random_part), check):
        raise CredentialMalformed("This token is mistyped: its checksum does not match.")
    return ParsedToken(secret, prefix)


def hint(token: str, prefix: str) -> str:
    """What a person sees to recognise a token: its prefix and last four characters."""
    return f"{prefix}…{token[-4:]}"
