"""Which system keyring, if any, keeps a person's tokens.

A keyring that writes secrets to a file (keyrings.alt's PlaintextKeyring, which only
base64-encodes them; its EncryptedKeyring; keyrings.cryptfile), the null and fail backends, and
a chain of nothing but those, are no keyring: the client then uses its own 0600 file and says
so, rather than claim "the system keyring" for a file anybody with a backup can read.

The ``keyring`` package costs about 0.1 s to import, so it is imported only here, and only when
a command needs the keyring.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

# Backends that are not a keyring, by the module they live in.
NOT_KEYRINGS = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt", "keyrings.cryptfile")


def name_of(backend: KeyringBackend) -> str:
    """The backend's import path, which ``load`` takes back (keyring's own naming)."""
    return f"{type(backend).__module__}.{type(backend).__qualname__}"


def is_keyring(backend: KeyringBackend) -> bool:
    """A keyring of the system's (Secret Service, KWallet, macOS Keychain, Windows Credential
    Locker), not a file by another name."""
    if name_of(backend).startswith(NOT_KEYRINGS) or hasattr(backend, "file_path"):
        return False
    try:
        return backend.priority > 0
    except Exception:  # noqa: BLE001 a backend that cannot run here says so through its priority
        return False


def system_keyring() -> tuple[KeyringBackend | None, str]:
    """The keyring to keep tokens in, or None and, in words, why there is none."""
    import keyring
    from keyring.backends.chainer import ChainerBackend

    try:
        configured = keyring.get_keyring()
    except Exception as error:  # noqa: BLE001 a broken keyring configuration: fall back to the file
        return None, f"there is no system keyring here (the configured one failed: {type(error).__name__})"
    candidates = list(configured.backends) if isinstance(configured, ChainerBackend) else [configured]
    for backend in candidates:
        if is_keyring(backend):
            return backend, ""
    files = [
        name_of(backend)
        for backend in candidates
        if name_of(backend).startswith(NOT_KEYRINGS[2:]) or hasattr(backend, "file_path")
    ]
    if files:
        return None, f"there is no system keyring here: {', '.join(files)} is a file, not a keyring"
    return None, "there is no system keyring here"


SECRET_SERVICE = "keyring.backends.SecretService.Keyring"


def read(name: str, service: str, username: str) -> str | None:
    """The secret that backend ``name`` keeps for ``service`` and ``username``, or None."""
    if name == SECRET_SERVICE:
        found = _read_secret_service(service, username)
        if found is not _ASK_KEYRING:
            return found
    return load(name).get_password(service, username)


class _Ask(Enum):
    """What the Secret Service read answers when it cannot tell: ask keyring itself."""

    KEYRING = "keyring"


_ASK_KEYRING = _Ask.KEYRING


def _read_secret_service(service: str, username: str) -> str | _Ask | None:
    """What keyring's Secret Service backend stored, read straight through ``secretstorage``,
    the library that backend itself uses, with the attributes it searches by: keyring's import
    costs about 0.1 s, paid on every git fetch and push. A locked keyring, or anything unusual,
    is left to keyring itself (which asks the desktop to unlock it)."""
    try:
        import secretstorage

        connection = secretstorage.dbus_init()
    except Exception:  # noqa: BLE001 no D-Bus, no Secret Service: let keyring find its way
        return _ASK_KEYRING
    try:
        collection = secretstorage.get_default_collection(connection)
        if collection.is_locked():
            return _ASK_KEYRING
        for item in collection.search_items({"username": username, "service": service}):
            return _ASK_KEYRING if item.is_locked() else item.get_secret().decode("utf-8")
        return None
    except Exception:  # noqa: BLE001 anything odd on the bus: let keyring itself answer
        return _ASK_KEYRING
    finally:
        connection.close()


def load(name: str) -> KeyringBackend:
    """The backend ``name`` (from ``name_of``), without asking every installed backend first."""
    from keyring.core import load_keyring

    return load_keyring(name)
