"""Where the client keeps a person's token: the system keyring, or where there is none (a
server, CI) a file only they can read. The environment overrides both, for CI.

The server URL and username are not secret and live in ``config.json`` beside the file; the
token lives in the keyring under the service ``tokensmith:SERVER``, or in ``credentials``
(mode 0600).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import keyring
import keyring.errors
from keyring.backends import fail

from tokensmith.errors import AuthenticationRequired

DEFAULT_SERVER = "http://127.0.0.1:8000"
ENV_SERVER, ENV_USERNAME, ENV_TOKEN = "TOKENSMITH_SERVER", "TOKENSMITH_USERNAME", "TOKENSMITH_TOKEN"


@dataclass(frozen=True)
class Credential:
    server: str
    username: str
    token: str = ""
    source: str = ""  # "environment", "keyring (NAME)", or the file's path


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tokensmith"


def _config_path() -> Path:
    return config_dir() / "config.json"


def _file_path() -> Path:
    return config_dir() / "credentials"


def normalise_server(server: str) -> str:
    return server.strip().rstrip("/")


def _service(server: str) -> str:
    return f"tokensmith:{normalise_server(server)}"


def keyring_available() -> bool:
    backend = keyring.get_keyring()
    return not isinstance(backend, fail.Keyring) and getattr(backend, "priority", 1) > 0


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_private(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def save(server: str, username: str, token: str) -> str:
    """Store a credential; say where (one line for the person)."""
    server = normalise_server(server)
    where = None
    if keyring_available():
        try:
            keyring.set_password(_service(server), username, token)
            where = f"the system keyring ({keyring.get_keyring().name})"
        except keyring.errors.KeyringError:
            where = None
    if where is None:
        stored = _read_json(_file_path())
        stored[server] = {"username": username, "token": token}
        _write_private(_file_path(), json.dumps(stored, indent=2) + "\n")
        where = f"{_file_path()} (mode 0600; no system keyring here)"
    _write_private(_config_path(), json.dumps({"server": server, "username": username}, indent=2) + "\n")
    return where


def load(server: str | None = None) -> Credential | None:
    """The credential to use: the environment's, else the one stored for ``server`` (or the
    last server logged in to). None when there is none."""
    env = os.environ
    if env.get(ENV_TOKEN):
        missing = [name for name in (ENV_SERVER, ENV_USERNAME) if not env.get(name)]
        if missing and not server:
            raise AuthenticationRequired(
                f"{ENV_TOKEN} is set but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: "
                "set all three for CI."
            )
        return Credential(normalise_server(server or env[ENV_SERVER]), env.get(ENV_USERNAME, ""), env[ENV_TOKEN],
                          "environment")
    config = _read_json(_config_path())
    server = normalise_server(server or env.get(ENV_SERVER) or config.get("server") or DEFAULT_SERVER)
    username = config.get("username", "") if config.get("server") == server else ""
    if keyring_available() and username:
        try:
            token = keyring.get_password(_service(server), username)
        except keyring.errors.KeyringError:
            token = None
        if token:
            return Credential(server, username, token, f"the system keyring ({keyring.get_keyring().name})")
    entry = _read_json(_file_path()).get(server)
    if entry and entry.get("token"):
        return Credential(server, entry["username"], entry["token"], str(_file_path()))
    return None


def forget(server: str | None = None) -> bool:
    """Remove the stored credential for ``server`` (default: the last one). True if one was."""
    config = _read_json(_config_path())
    server = normalise_server(server or config.get("server") or DEFAULT_SERVER)
    removed = False
    if keyring_available() and config.get("server") == server and config.get("username"):
        try:
            keyring.delete_password(_service(server), config["username"])
            removed = True
        except keyring.errors.KeyringError:
            pass
    stored = _read_json(_file_path())
    if server in stored:
        del stored[server]
        _write_private(_file_path(), json.dumps(stored, indent=2) + "\n")
        removed = True
    if config.get("server") == server:
        _config_path().unlink(missing_ok=True)
    return removed
