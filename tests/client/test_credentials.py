"""Where the client keeps a token: a real system keyring (GNOME Keyring's Secret Service on a
D-Bus session of the test's own) when there is one, else a file only the person can read, and
never a file that merely calls itself a keyring."""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import unavailable
from tests.support.client import client_env, loaded_by, login_at_terminal, tokensmith
from tests.support.ledger import remember
from tests.support.secret_service import SecretService, SecretServiceUnavailable, secret_service_missing

pytestmark = pytest.mark.slow  # runs the installed command, with a real system keyring


@pytest.fixture
def desktop(tmp_path) -> Iterator[SecretService]:
    """A desktop session with its keyring unlocked, as after signing in to it."""
    reason = secret_service_missing()
    if reason:
        unavailable(reason)
    service = SecretService(tmp_path / "home")
    try:
        service.start()
    except SecretServiceUnavailable as error:
        unavailable(str(error))
    yield service
    service.stop()


@pytest.fixture
def person(server):
    name = f"keeper-{uuid.uuid4().hex[:8]}"
    server.create_user(name)
    return name


def files_holding(home: Path, secret: str) -> list[Path]:
    return [path for path in home.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]


def test_the_token_goes_to_the_system_keyring_and_nowhere_on_disk_in_the_clear(server, person, desktop):
    home = desktop.home
    env = {**client_env(home, keyring_backend=None), **desktop.env}
    token = server.create_token(person, "desktop")
    status, screen = login_at_terminal(server, person, token, env)
    assert status == 0, screen
    assert "Credentials stored in the system keyring (SecretService Keyring)." in screen
    assert not (home / "config" / "tokensmith" / "credentials").exists()
    assert files_holding(home, token) == []  # GNOME Keyring encrypts what it keeps
    config = json.loads((home / "config" / "tokensmith" / "config.json").read_text())
    assert config["servers"][server.base_url] == {
        "username": person,
        "kept": "keyring",
        "keyring": "keyring.backends.SecretService.Keyring",
    }

    whoami = tokensmith("whoami", env=env)
    assert whoami.returncode == 0 and "credentials from the system keyring (SecretService Keyring)" in whoami.stdout
    host = server.base_url.removeprefix("http://")
    helper = tokensmith("git-credential", "get", env=env, input=f"protocol=http\nhost={host}\n\n")
    assert helper.stdout == f"username={person}\npassword={token}\n"
    # git's helper reads the Secret Service directly: the keyring package costs 0.1 s to load.
    modules, result = loaded_by(["git-credential", "get"], env, home, input=f"protocol=http\nhost={host}\n\n")
    assert result.stdout == helper.stdout and "secretstorage" in modules and "keyring" not in modules

    rotated = tokensmith("tokens", "rotate", env=env)
    assert rotated.returncode == 0 and "kept in the system keyring (SecretService Keyring)" in rotated.stdout
    new = tokensmith("git-credential", "get", env=env, input=f"protocol=http\nhost={host}\n\n").stdout
    new_token = remember(new.split("password=")[1].strip())
    assert new_token != token and files_holding(home, new_token) == []
    assert tokensmith("whoami", env=env).returncode == 0

    assert tokensmith("logout", env=env).returncode == 0
    gone = tokensmith("git-credential", "get", env=env, input=f"protocol=http\nhost={host}\n\n")
    assert gone.returncode == 0 and gone.stdout == ""
    # Logged in again, then the keyring is gone (the desktop session ended): the error says so.
    assert login_at_terminal(server, person, server.create_token(person, "desktop again"), env)[0] == 0
    desktop.stop()
    locked = tokensmith("whoami", env=env)
    assert (
        locked.returncode == 5
        and "The system keyring (keyring.backends.SecretService.Keyring) would not give" in locked.stderr
    )


@pytest.mark.parametrize("backend", ["keyrings.alt.file.PlaintextKeyring", "keyrings.alt.file.EncryptedKeyring"])
def test_a_keyring_that_is_a_file_is_no_keyring(server, person, tmp_path, backend):
    env = client_env(tmp_path, keyring_backend=backend)
    token = server.create_token(person, backend.rsplit(".", 1)[1])
    status, screen = login_at_terminal(server, person, token, env)
    assert status == 0, screen
    kept = tmp_path / "config" / "tokensmith" / "credentials"
    # PlaintextKeyring runs here (and is a file); EncryptedKeyring cannot even start without its extras.
    assert f"Credentials stored in {kept} (mode 0600; there is no system keyring here" in screen
    if backend.endswith("PlaintextKeyring"):
        assert f"there is no system keyring here: {backend} is a file, not a keyring)." in screen
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert files_holding(tmp_path, token) == [kept]
    assert not (tmp_path / "data" / "python_keyring").exists()  # keyrings.alt wrote nothing


def test_with_no_keyring_at_all_a_chain_of_files_is_no_keyring_either(server, person, tmp_path):
    # No D-Bus session, keyring's own choice among what is installed (keyrings.alt's files here).
    env = client_env(tmp_path, keyring_backend=None)
    token = server.create_token(person, "chain")
    status, screen = login_at_terminal(server, person, token, env)
    assert status == 0, screen
    assert "(mode 0600; there is no system keyring here" in screen
    assert files_holding(tmp_path, token) == [tmp_path / "config" / "tokensmith" / "credentials"]


def test_logins_to_several_servers_are_kept_apart(server, warn_server, person, tmp_path):
    other = f"keeper-{uuid.uuid4().hex[:8]}"
    warn_server.create_user(other)
    env = client_env(tmp_path)
    first, second = server.create_token(person, "first"), warn_server.create_token(other, "second")
    assert login_at_terminal(server, person, first, env)[0] == 0
    assert login_at_terminal(warn_server, other, second, env)[0] == 0
    # The last login is the default; --server picks the other.
    assert f"{other} with token “second”" in tokensmith("whoami", env=env).stdout
    assert f"{person} with token “first”" in tokensmith("whoami", "--server", server.base_url, env=env).stdout
    assert tokensmith("logout", env=env).returncode == 0
    # Its default gone, the remaining login becomes the default.
    assert f"{person} with token “first”" in tokensmith("whoami", env=env).stdout


def test_the_first_clients_layout_is_still_read(server, person, tmp_path):
    token = server.create_token(person, "old layout")
    folder = tmp_path / "config" / "tokensmith"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"server": server.base_url, "username": person}))
    fd = os.open(folder / "credentials", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, json.dumps({server.base_url: {"username": person, "token": token}}).encode())
    os.close(fd)
    whoami = tokensmith("whoami", env=client_env(tmp_path))
    assert whoami.returncode == 0 and "with token “old layout”" in whoami.stdout


def test_a_damaged_config_file_is_named(tmp_path):
    folder = tmp_path / "config" / "tokensmith"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{not json")
    result = tokensmith("whoami", env=client_env(tmp_path))
    assert result.returncode == 2 and f"{folder / 'config.json'} is not readable JSON" in result.stderr
