"""The server on a real PostgreSQL, and what people see when that store goes away."""

from __future__ import annotations

import pytest

from tests.conftest import started_postgres
from tests.support.pages import sign_in
from tests.support.servers import LiveServer

pytestmark = pytest.mark.postgres


@pytest.fixture
def own_postgres():
    """A PostgreSQL of this test's own, since the test stops it."""
    server = started_postgres()
    yield server
    server.remove()


def test_a_store_outage_is_503_with_words_never_401(own_postgres, tmp_path):
    live = LiveServer(tmp_path / "data", env={"TOKENSMITH_DATABASE_URL": own_postgres.url}).start()
    try:
        assert live.admin_password, "the first start on PostgreSQL prints the admin password"
        live.create_user("olga", password="olga's long password")
        token = live.create_token("olga", "CI Chain")
        with live.client() as client, live.client() as browser:
            assert client.get("/api/v1/me", auth=("olga", token)).json()["token"]["name"] == "CI Chain"
            assert sign_in(browser, "olga", "olga's long password").status_code == 303

            own_postgres.stop()
            health = client.get("/healthz")
            assert health.status_code == 503 and health.json()["status"] == "unavailable"
            for _ in range(3):  # also once the pool has noticed the dead connections
                response = client.get("/api/v1/me", auth=("olga", token))
                assert response.status_code == 503, response.text
                assert response.json() == {
                    "error": "store_unavailable",
                    "message": "The token store is unreachable; try again in a moment.",
                }
                assert response.headers["retry-after"] == "5"
            # A mistyped token is refused on its checksum alone, before the store is asked.
            mistyped = token[:-1] + ("a" if token[-1] != "a" else "b")
            refused = client.get("/api/v1/me", auth=("olga", mistyped))
            assert refused.status_code == 401 and refused.json()["error"] == "credential_malformed"
            assert "checksum" in refused.json()["message"]
            page = browser.get("/tokens")
            assert page.status_code == 503 and "Temporarily unavailable" in page.text
            assert "Traceback" not in page.text

            own_postgres.start()
            recovered = [client.get("/api/v1/me", auth=("olga", token)).status_code for _ in range(3)]
            assert recovered[-1] == 200 and 401 not in recovered
            assert client.get("/healthz").status_code == 200
            assert browser.get("/tokens").status_code == 200
    finally:
        live.stop()
    assert "Traceback" not in live.console()
