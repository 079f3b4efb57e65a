"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import warnings

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tokensmith.models import Base


def test_the_migrated_store_matches_the_models(store_engine):
    with store_engine.connect() as connection, warnings.catch_warnings():
        # SQLite cannot reflect the expression index on lower(username); PostgreSQL compares it.
        warnings.simplefilter("ignore")
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
