"""The token check on PostgreSQL, whose lookup the server reads on the event loop
(store/postgresql.AsyncReads) and checks on that answer: the same answers as on a connection,
under one key and under two (a key rotation in progress)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import new_postgres_database
from tests.support.ledger import remember
from tests.support.servers import LiveServer
from tokensmith.tokens import format as token_format

pytestmark = pytest.mark.postgres

OLD, NEW = "1:" + "o" * 40, "2:" + "n" * 40


def me(live: LiveServer, token: str) -> httpx.Response:
    return httpx.get(f"{live.base_url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_tokens_are_checked_alike_under_one_key_and_under_two(postgres, tmp_path):
    env = {"TOKENSMITH_DATABASE_URL": new_postgres_database(postgres), "TOKENSMITH_SECRET_KEY": OLD}
    live = LiveServer(tmp_path / "data", env=env, name="one-key").start()
    try:
        live.create_user("kim")
        old = live.create_token("kim", "made under the old key")
        revoked = live.create_token("kim", "revoked")
        answer = me(live, old)
        assert answer.status_code == 200 and answer.json()["token"]["name"] == "made under the old key"
        revoked_id = me(live, revoked).json()["token"]["id"]
        assert (
            httpx.delete(
                f"{live.base_url}/api/v1/tokens/{revoked_id}", headers={"Authorization": f"Bearer {revoked}"}
            ).status_code
            == 204
        )
        assert me(live, revoked).json()["error"] == "token_revoked"
    finally:
        live.stop()

    rotating = LiveServer(tmp_path / "data", env={**env, "TOKENSMITH_SECRET_KEY": f"{NEW},{OLD}"}, name="two-keys")
    rotating.start()
    try:
        new = rotating.create_token("kim", "made under the new key")
        for token, name in ((old, "made under the old key"), (new, "made under the new key")):
            answer = me(rotating, token)
            assert answer.status_code == 200 and answer.json()["token"]["name"] == name
        assert me(rotating, revoked).json()["error"] == "token_revoked"
        unknown = me(rotating, remember(token_format.generate("tks_")))  # well formed: the store is asked
        assert unknown.status_code == 401 and unknown.json()["error"] == "token_unknown"
        mistyped = me(rotating, new[:-1] + ("A" if new[-1] != "A" else "B"))  # refused on its checksum
        assert mistyped.status_code == 401 and mistyped.json()["error"] == "credential_malformed"
    finally:
        rotating.stop()
    assert "Traceback" not in live.console() + rotating.console()
