"""The data dir is the server's alone: 0700, and its key and store files 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.support.servers import LiveServer
from tokensmith.store import data_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_created_private_whatever_the_umask(tmp_path):
    before = os.umask(0)
    try:
        folder = data_dir.ensure(tmp_path / "deep" / "var")
        assert data_dir.create_private_file(folder / "tokensmith.db") is True
        assert data_dir.create_private_file(folder / "tokensmith.db") is False  # never truncated
    finally:
        os.umask(before)
    assert mode(folder) == 0o700
    assert mode(folder / "tokensmith.db") == 0o600


def test_an_existing_folder_is_left_as_it_is(tmp_path):
    folder = tmp_path / "var"
    folder.mkdir(mode=0o750)
    folder.chmod(0o750)
    data_dir.ensure(folder)
    assert mode(folder) == 0o750


@pytest.mark.slow  # starts `tokensmith serve`
def test_a_first_start_makes_the_data_dir_and_the_store_private(tmp_path):
    live = LiveServer(tmp_path / "var").start()
    try:
        with live.client() as client:
            assert client.get("/healthz").status_code == 200
        files = {path.name: mode(path) for path in live.data_dir.iterdir() if path.is_file()}
    finally:
        live.stop()
    assert mode(live.data_dir) == 0o700
    assert {"tokensmith.db", "secret-keys"} <= set(files)
    # SQLite gives its -wal and -shm files the database's own mode.
    assert {name: m for name, m in files.items() if name.startswith(("tokensmith.db", "secret-keys"))} == {
        name: 0o600 for name in files if name.startswith(("tokensmith.db", "secret-keys"))
    }
