"""Where the client keeps a person's logins: one per server, the token in the system keyring
or, where there is none (a server, CI, a container), in a file only they can read. The
environment overrides both, for CI.

``config.json`` holds what is not secret: the default server and, for each server, the
username, where its token is kept (``keyring`` with the backend's name, or ``file``) and the
settings.xml files that ``maven-settings`` wrote the token into (a rotation rewrites them).
The file ``credentials`` (mode 0600) holds the tokens that are not in a keyring. Both live in
``$XDG_CONFIG_HOME/tokensmith`` (``~/.config/tokensmith``).

Reading a login imports nothing but the standard library when its token is in the file: git
runs ``tokensmith git-credential get`` on every fetch and push.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokensmith.client import keyrings, server_url
from tokensmith.client.errors import InvalidInput, NotLoggedIn

ENV_SERVER, ENV_USERNAME, ENV_TOKEN = "TOKENSMITH_SERVER", "TOKENSMITH_USERNAME", "TOKENSMITH_TOKEN"
# A CI job's identity (workload_identity.py): GitLab's (or any CI's) ID token, or GitHub's way to ask for one.
CI_IDENTITY = ("TOKENSMITH_ID_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL")
# How the common backends call themselves (their ``name``), without loading them to ask.
KEYRING_NAMES = {
    keyrings.SECRET_SERVICE: "SecretService Keyring",
    "keyring.backends.macOS.Keyring": "macOS Keyring",
    "keyring.backends.Windows.WinVaultKeyring": "Windows WinVaultKeyring",
    "keyring.backends.kwallet.DBusKeyring": "kwallet DBusKeyring",
}


@dataclass(frozen=True)
class Credential:
    server: str
    username: str
    token: str = field(default="", repr=False)
    kept: str = ""  # "environment", "ci" (a CI job's ID token, exchanged), "keyring", "file" or "prompt"
    where: str = ""  # the same, in words for a person


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tokensmith"


def config_path() -> Path:
    return config_dir() / "config.json"


def file_path() -> Path:
    return config_dir() / "credentials"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        raise InvalidInput(f"{path} is not readable JSON: fix it, or move it aside and log in again.") from None
    return content if isinstance(content, dict) else {}


def write_private(path: Path, content: str) -> None:
    """Replace ``path`` with ``content``, readable by its owner only, all at once."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def read_config() -> dict[str, Any]:
    config = _read_json(config_path())
    if "server" in config and "servers" not in config:  # the first client's layout: one server
        config = {"default": config["server"], "servers": {config["server"]: {"username": config.get("username", "")}}}
    config.setdefault("servers", {})
    return config


def _write_config(config: dict[str, Any]) -> None:
    write_private(config_path(), json.dumps(config, indent=2) + "\n")


def _service(server: str) -> str:
    return f"tokensmith:{server}"


def default_server() -> str:
    """The server a command talks to when not told: TOKENSMITH_SERVER, else the last one logged
    in to, else the embedded default."""
    chosen = os.environ.get(ENV_SERVER) or read_config().get("default") or server_url.DEFAULT
    return server_url.parse(chosen)


def from_environment(server: str | None = None) -> Credential | None:
    """CI's credential: TOKENSMITH_SERVER, TOKENSMITH_USERNAME and TOKENSMITH_TOKEN; else the
    token this CI job's OpenID Connect ID token is exchanged for (workload_identity.py)."""
    env = os.environ
    if not env.get(ENV_TOKEN):
        return _from_ci_identity(server) if any(env.get(name) for name in CI_IDENTITY) else None
    missing = [name for name in (ENV_SERVER, ENV_USERNAME) if not env.get(name)]
    if missing and not (server and env.get(ENV_USERNAME)):
        verb = "is" if len(missing) == 1 else "are"
        raise NotLoggedIn(f"{ENV_TOKEN} is set but {' and '.join(missing)} {verb} not: set all three for CI.")
    return Credential(
        server_url.parse(server or env[ENV_SERVER]),
        env[ENV_USERNAME],
        env[ENV_TOKEN],
        "environment",
        f"the environment ({ENV_TOKEN})",
    )


def _from_ci_identity(server: str | None) -> Credential:
    from tokensmith.client import workload_identity

    chosen = server or os.environ.get(ENV_SERVER)
    if not chosen:
        raise NotLoggedIn(
            f"This CI job has an OpenID Connect ID token ({workload_identity.source()}) but no server to "
            f"exchange it at: set {ENV_SERVER} to the server's URL."
        )
    return workload_identity.credential(server_url.parse(chosen))


def load(server: str | None = None) -> Credential | None:
    """The credential to use for ``server`` (default: ``default_server()``): the environment's,
    else the one kept for it. None when there is none."""
    return from_environment(server) or stored(server_url.parse(server) if server else default_server())


def stored(server: str) -> Credential | None:
    """The login kept for ``server`` (a parsed URL), wherever its token is."""
    entry = read_config()["servers"].get(server)
    if not entry or not entry.get("username"):
        return None
    username = entry["username"]
    if entry.get("kept") == "keyring":
        try:
            token = keyrings.read(entry["keyring"], _service(server), username)
        except Exception as error:  # noqa: BLE001 a keyring that went away or is locked: say which
            raise NotLoggedIn(
                f"The system keyring ({entry['keyring']}) would not give the token for {server} "
                f"({type(error).__name__}): unlock it, or run `tokensmith login` again."
            ) from None
        where = f"the system keyring ({KEYRING_NAMES.get(entry['keyring'], entry['keyring'])})"
        return Credential(server, username, token, "keyring", where) if token else None
    token = (_read_json(file_path()).get(server) or {}).get("token")
    return Credential(server, username, token, "file", f"{file_path()} (mode 0600)") if token else None


def known() -> tuple[str | None, list[str]]:
    """The default server and every server a login is kept for."""
    config = read_config()
    return config.get("default"), sorted(config["servers"])


def save(server: str, username: str, token: str) -> Credential:
    """Keep a login for ``server``, its token in the system keyring when there is one, and make
    ``server`` the default. Returns where it went."""
    config = read_config()
    previous = config["servers"].get(server, {})
    backend, why = keyrings.system_keyring()
    kept = None
    if backend is not None:
        try:
            backend.set_password(_service(server), username, token)
            kept = Credential(server, username, token, "keyring", f"the system keyring ({backend.name})")
        except Exception as error:  # noqa: BLE001 locked, refused, gone: the file, and say why
            why = f"the system keyring ({backend.name}) refused it: {type(error).__name__}"
    if kept is None:
        _set_file_token(server, username, token)
        kept = Credential(server, username, token, "file", f"{file_path()} (mode 0600; {why})")
    else:
        _set_file_token(server, None, None)
    keyring = keyrings.name_of(backend) if backend is not None and kept.kept == "keyring" else None
    if previous.get("keyring") and (previous.get("username") != username or previous["keyring"] != keyring):
        _delete_from_keyring(server, previous)
    entry = {**previous, "username": username, "kept": kept.kept}
    entry.pop("keyring", None)
    if keyring is not None:
        entry["keyring"] = keyring
    config["servers"][server] = entry
    config["default"] = server
    _write_config(config)
    return kept


def replace_token(credential: Credential, token: str) -> Credential:
    """Keep a new token (a rotation's) where the old one was."""
    if credential.kept == "keyring":
        entry = read_config()["servers"][credential.server]
        keyrings.load(entry["keyring"]).set_password(_service(credential.server), credential.username, token)
        return Credential(credential.server, credential.username, token, "keyring", credential.where)
    _set_file_token(credential.server, credential.username, token)
    return Credential(credential.server, credential.username, token, "file", f"{file_path()} (mode 0600)")


def forget(server: str) -> bool:
    """Remove the login kept for ``server``. True if there was one."""
    config = read_config()
    entry = config["servers"].pop(server, None)
    in_file = server in _read_json(file_path())
    if entry is None and not in_file:
        return False
    if entry and entry.get("keyring"):
        _delete_from_keyring(server, entry)
    if in_file:
        _set_file_token(server, None, None)
    if config.get("default") == server and config["servers"]:  # else it stays: `login` goes back there
        config["default"] = sorted(config["servers"])[0]
    _write_config(config)
    return True


def remember_maven_settings(server: str, path: Path) -> None:
    """Note that ``path``'s Studio entry holds this server's token, for the next rotation."""
    config = read_config()
    entry = config["servers"].get(server)
    if entry is None:
        return
    files = [name for name in entry.get("maven_settings", []) if name != str(path)]
    entry["maven_settings"] = [*files, str(path)]
    _write_config(config)


def maven_settings_files(server: str) -> list[Path]:
    return [Path(name) for name in read_config()["servers"].get(server, {}).get("maven_settings", [])]


def _set_file_token(server: str, username: str | None, token: str | None) -> None:
    """Put a token in the 0600 file, or (``token`` None) take the server's out of it."""
    tokens = _read_json(file_path())
    if token is None:
        if server not in tokens:
            return
        del tokens[server]
    else:
        tokens[server] = {"username": username, "token": token}
    write_private(file_path(), json.dumps(tokens, indent=2) + "\n")


def _delete_from_keyring(server: str, entry: dict[str, Any]) -> None:
    # Nothing there any more, or the keyring is gone: nothing to forget. (Any backend may raise anything.)
    with contextlib.suppress(Exception):
        keyrings.load(entry["keyring"]).delete_password(_service(server), entry.get("username", ""))
