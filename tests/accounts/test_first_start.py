"""The first start on an empty store, and every start after it."""

from __future__ import annotations

import pytest

from tests.support.pages import sign_in
from tests.support.servers import LiveServer


@pytest.mark.slow  # starts `tokensmith serve`
def test_first_start_prints_the_admin_password_once_and_later_starts_reuse_the_store(tmp_path):
    live = LiveServer(tmp_path / "var", name="first-start").start()
    try:
        first_console = live.console()
        password = live.admin_password
        assert password and first_console.count(password) == 1
        # Nothing but the banner and uvicorn's lines: no warning, no stray source line.
        assert "Warning" not in first_console and "contextlib" not in first_console, first_console
        assert (tmp_path / "var" / "tokensmith.db").exists()
        assert oct((tmp_path / "var" / "secret-keys").stat().st_mode & 0o777) == "0o600"
        with live.client() as client:
            assert sign_in(client, "admin", password).status_code == 303
            applications = client.get("/applications").text
        # The sample project, with its repository ready to clone.
        assert f"{live.base_url}/git/demo.git" in applications and "com.example.studio:demo" in applications
        assert (tmp_path / "var" / "git" / "demo.git" / "HEAD").exists()

        offset = len(live.console().encode())
        live.restart()
        assert live.admin_password == password
        later = live.console(since=offset)
        assert "First start" not in later and password not in later
        with live.client() as client:
            assert sign_in(client, "admin", password).status_code == 303
    finally:
        live.stop()
