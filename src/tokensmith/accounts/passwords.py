"""Password hashes: argon2id (argon2-cffi), at the cost TOKENSMITH_PASSWORD_HASHING names.

- ``rfc9106-low-memory`` (the default): 3 passes over 64 MiB in 4 lanes, RFC 9106's choice for
  a host that cannot give every sign-in 2 GiB; about 0.2 s of CPU on these machines.
- ``owasp-minimum``: 2 passes over 19 MiB in 1 lane, the floor OWASP's Password Storage Cheat
  Sheet sets for argon2id; about a tenth of that. For small hosts, and for the test suite, which
  makes and checks hundreds of passwords.

One choice per process, made when the server or a shell command starts (``use``). A hash carries
its own parameters, so a sign-in verifies any hash whatever the setting, then makes it again with
the configured parameters when they differ: changing the setting moves each account over at its
next sign-in, in either direction.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets

from argon2 import Parameters, PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

from tokensmith.config import PasswordHashing

PARAMETERS: dict[PasswordHashing, Parameters] = {
    PasswordHashing.RFC_9106_LOW_MEMORY: profiles.RFC_9106_LOW_MEMORY,
    PasswordHashing.OWASP_MINIMUM: dataclasses.replace(
        profiles.RFC_9106_LOW_MEMORY, time_cost=2, memory_cost=19 * 1024, parallelism=1
    ),
}

_hasher = PasswordHasher.from_parameters(PARAMETERS[PasswordHashing.RFC_9106_LOW_MEMORY])


def use(hashing: PasswordHashing) -> None:
    """Make new hashes at this cost in this process from now on."""
    global _hasher
    _hasher = PasswordHasher.from_parameters(PARAMETERS[hashing])


def hashed(password: str) -> str:
    return _hasher.hash(password)


def matches(stored: str, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (argon2's constant-time verify)."""
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def outdated(stored: str) -> bool:
    """Whether ``stored`` was made with other parameters than this process makes hashes with."""
    return _hasher.check_needs_rehash(stored)


def unknown_account_hash() -> str:
    """A hash verified when the username is unknown, so that a wrong username takes as long as a
    wrong password and the timing does not tell which usernames exist: made at the current cost."""
    return _dummy_hash(_hasher.time_cost, _hasher.memory_cost, _hasher.parallelism)


@functools.cache
def _dummy_hash(time_cost: int, memory_cost: int, parallelism: int) -> str:
    return _hasher.hash(secrets.token_urlsafe(16))
