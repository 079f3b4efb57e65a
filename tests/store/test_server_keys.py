"""The server's keys: from the environment, or generated once into the data dir."""

from __future__ import annotations

import stat
import subprocess
import sys
import time

import pytest

from tokensmith.config import Settings
from tokensmith.errors import ConfigurationError
from tokensmith.store.server_keys import load_server_keys, parse_keys


def test_a_key_is_generated_once_with_mode_0600(tmp_path):
    settings = Settings(data_dir=tmp_path / "var")
    first = load_server_keys(settings)
    path = tmp_path / "var" / "secret-keys"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_server_keys(settings).versions == first.versions


def test_the_environment_wins_over_the_file(tmp_path):
    settings = Settings(data_dir=tmp_path, secret_key="z" * 40)
    keys = load_server_keys(settings)
    assert keys.versions == {1: b"z" * 40}
    assert not (tmp_path / "secret-keys").exists()


def test_versions_current_first():
    keys = parse_keys("3:" + "c" * 40 + ", 2:" + "b" * 40)
    assert keys.current == 3 and list(keys.versions) == [3, 2]
    assert keys.digest("token", "x") == keys.digest("token", "x", 3) != keys.digest("token", "x", 2)
    assert keys.all_digests("token", "x") == [keys.digest("token", "x", 3), keys.digest("token", "x", 2)]


def test_purposes_do_not_share_digests():
    keys = parse_keys("a" * 40)
    assert keys.digest("token", "same") != keys.digest("session", "same")


@pytest.mark.parametrize("text", ["", "short", "x:" + "a" * 40, "1:" + "a" * 40 + ",1:" + "b" * 40])
def test_bad_keys_are_refused_clearly(text):
    with pytest.raises(ConfigurationError):
        parse_keys(text)


def test_bad_key_messages_do_not_contain_the_key():
    with pytest.raises(ConfigurationError) as refused:
        parse_keys("1:tooshortsecret")
    assert "tooshortsecret" not in str(refused.value)


@pytest.mark.slow  # starts processes
def test_processes_starting_together_on_one_data_dir_all_get_the_same_key(tmp_path):
    """Instances sharing a fresh data dir (a network filesystem in production) each try to make
    the key file: one key wins, and no process reads a file half-written."""
    program = (
        "import sys, time; from pathlib import Path; from tokensmith.config import Settings; "
        "from tokensmith.store.server_keys import load_server_keys; "
        "time.sleep(max(0.0, float(sys.argv[1]) - time.time())); "
        "print(load_server_keys(Settings(data_dir=Path(sys.argv[2]))).digest('probe', 'same').hex())"
    )
    start_at = str(time.time() + 1.5)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", program, start_at, str(tmp_path / "shared")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outputs = [child.communicate(timeout=60) for child in children]
    assert [child.returncode for child in children] == [0] * 8, [err for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == ["secret-keys"]  # no draft left
