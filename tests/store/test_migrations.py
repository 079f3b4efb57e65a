"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import warnings

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tokensmith.scopes import ALL_SCOPES
from tokensmith.store.models import Base, compared_on
from tokensmith.tokens import check as token_check


def test_the_migrated_store_matches_the_models(store_engine):
    with store_engine.connect() as connection, warnings.catch_warnings():
        # SQLite cannot reflect the expression index on lower(username); PostgreSQL compares it.
        warnings.simplefilter("ignore")
        context = MigrationContext.configure(connection, opts={"include_object": compared_on(connection.dialect.name)})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def _upgrade(engine, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from tokensmith.store.database import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_tokens_made_before_the_five_scopes_keep_everything_they_could_do(tmp_path, keys):
    """Migration 0007: the old scopes become the five that cover the same ground, every
    project, from anywhere; and such a token still opens what it did (GET /api/v1/me aside,
    tested over HTTP in tests/web/test_token_limits.py)."""
    import json

    from sqlalchemy import create_engine, text

    from tokensmith.tokens import format as token_format

    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    _upgrade(engine, "0006")
    secret = token_format.generate("tks_")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, username, email, is_admin, is_active, created_at, origin) "
                "VALUES (1, 'old', 'old@example.test', 0, 1, '2026-01-01 00:00:00', 'local')"
            )
        )
        for token_id, scopes in ((1, ["api", "git", "maven"]), (2, ["maven"])):
            connection.execute(
                text(
                    "INSERT INTO personal_tokens (id, user_id, name, digest, key_version, hint, scopes, created_at) "
                    "VALUES (:id, 1, :name, :digest, 1, 'tks_…old', :scopes, '2026-01-01 00:00:00')"
                ),
                {
                    "id": token_id,
                    "name": f"old {token_id}",
                    "scopes": json.dumps(scopes),
                    "digest": keys.digest("token", secret if token_id == 1 else secret + "x"),
                },
            )
    _upgrade(engine, "head")
    with engine.connect() as connection:
        rows = dict(connection.execute(text("SELECT id, scopes FROM personal_tokens")).all())
        limits = connection.execute(text("SELECT projects, allowed_ips FROM personal_tokens")).all()
        token = token_check.verify_token(connection, keys, secret, prefix="tks_")
    assert json.loads(rows[1]) == list(ALL_SCOPES)
    assert json.loads(rows[2]) == ["maven:read"]
    assert limits == [(None, None), (None, None)]
    assert token.scopes == list(ALL_SCOPES) and token.projects is None and token.allowed_ips is None
    engine.dispose()


def test_tokens_rotated_before_successors_were_kept_get_theirs_from_the_audit_trail(tmp_path):
    """Migration 0010: a rotation audited before it names the old token's successor, so that its
    reuse revokes that one too."""
    import json

    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{tmp_path / 'rotated.db'}")
    _upgrade(engine, "0009")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, username, email, is_admin, is_active, created_at, origin) "
                "VALUES (1, 'old', 'old@example.test', 0, 1, '2026-01-01 00:00:00', 'local')"
            )
        )
        for token_id in (1, 2, 3):
            connection.execute(
                text(
                    "INSERT INTO personal_tokens (id, user_id, name, digest, key_version, hint, scopes, created_at) "
                    "VALUES (:id, 1, :name, :digest, 1, 'tks_…old', '[]', '2026-01-01 00:00:00')"
                ),
                {"id": token_id, "name": f"t{token_id}", "digest": bytes([token_id]) * 32},
            )
        connection.execute(
            text(
                "INSERT INTO audit_events (at, user_id, actor, action, details) "
                "VALUES ('2026-01-02 00:00:00', 1, 'old', 'token.rotated', :details)"
            ),
            {"details": json.dumps({"token_id": 2, "replaced_token_id": 1, "name": "t1"})},
        )
    _upgrade(engine, "head")
    with engine.connect() as connection:
        links = dict(connection.execute(text("SELECT id, replaced_by_id FROM personal_tokens")).all())
    assert links == {1: 2, 2: None, 3: None}
    engine.dispose()


def test_the_head_is_the_highest_numbered_migration():
    """db.head_revision reads the head from the file names, without Alembic: every migration
    file is named after its revision, and the highest number is Alembic's head."""
    from pathlib import Path

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from tokensmith.store.database import MIGRATIONS_DIR, head_revision

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    scripts = ScriptDirectory.from_config(config)
    assert head_revision() == scripts.get_current_head()
    for script in scripts.walk_revisions():
        assert Path(script.path).name.startswith(f"{script.revision}_")


def test_a_store_behind_is_migrated_and_one_at_the_head_costs_one_read(tmp_path):
    """The administration commands open the store through db.migrate on every run: an empty
    store and one behind are brought to the head by Alembic, one at the head is read once."""
    from sqlalchemy import event

    from tokensmith.config import Settings
    from tokensmith.store.database import create_store_engine, head_revision, migrate, schema_revision

    engine = create_store_engine(Settings(data_dir=tmp_path))
    with engine.connect() as connection:
        assert schema_revision(connection) is None and not connection.in_transaction()
    _upgrade(engine, "0012")
    migrate(engine)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    migrate(engine)
    with engine.connect() as connection:
        assert schema_revision(connection) == head_revision()
    assert statements == ["SELECT version_num FROM alembic_version"] * 2
    engine.dispose()


def _downgrade(engine, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from tokensmith.store.database import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_sqlite_migrates_up_and_down_without_a_warning_and_keeps_the_username_index(tmp_path):
    """The first start's console had a SAWarning: Alembic's batch mode reflected ``users``, whose
    expression index on lower(username) SQLite's reflection cannot read (and a copied table
    would have lost). Every step now leaves that table unreflected, up and down."""
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{tmp_path / 'quiet.db'}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _upgrade(engine, "head")
        _downgrade(engine, "0004")
        _upgrade(engine, "head")
    with engine.connect() as connection:
        indexes = dict(
            connection.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'users'")
            ).all()
        )
        foreign_keys = connection.execute(text("PRAGMA foreign_key_list(browser_sessions)")).all()
    assert (
        indexes["uq_users_username_lower"] == "CREATE UNIQUE INDEX uq_users_username_lower ON users (lower(username))"
    )
    assert [(row[2], row[3], row[6]) for row in foreign_keys] == [("users", "user_id", "CASCADE")]
    engine.dispose()


def test_the_trusted_publishers_migration_goes_down_and_up_again(store_engine, tmp_path):
    """Migration 0016 (workload identity) on each store, on a copy of its own: down to 0015 takes
    its three tables away, up again brings them back as the models say."""
    from sqlalchemy import create_engine, inspect

    if store_engine.dialect.name == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'publishers.db'}")
    else:
        url = store_engine.url.set(database=f"publishers_{tmp_path.name[-8:].lower()}".replace("-", "_"))
        with store_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{url.database}"')
        engine = create_engine(url)
    tables = {"trusted_publishers", "publisher_tokens", "id_token_uses"}
    _upgrade(engine, "head")
    _downgrade(engine, "0015")
    assert not tables & set(inspect(engine).get_table_names())
    _upgrade(engine, "head")
    assert tables <= set(inspect(engine).get_table_names())
    engine.dispose()
