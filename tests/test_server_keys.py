"""The server's keys: from the environment, or generated once into the data dir."""

from __future__ import annotations

import stat

import pytest

from tokensmith.config import Settings
from tokensmith.errors import ConfigurationError
from tokensmith.server_keys import load_server_keys, parse_keys


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
