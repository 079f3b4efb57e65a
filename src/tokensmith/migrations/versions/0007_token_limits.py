"""Least privilege: each token's projects and allowed addresses; the five scopes.

Tokens made before keep everything they could do: their old scopes ("api", "git", "maven")
become the five that cover the same ground, and they reach every project from anywhere.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import json
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Frozen here: a migration must mean the same thing whatever the code becomes.
NEW_NAMES = {"api": ("api:read", "api:write"), "git": ("git:read", "git:write"), "maven": ("maven:read",)}
ORDER = ("api:read", "api:write", "git:read", "git:write", "maven:read")
OLD_NAMES = {"api:read": "api", "api:write": "api", "git:read": "git", "git:write": "git", "maven:read": "maven"}

TOKENS = sa.table("personal_tokens", sa.column("id", sa.Integer), sa.column("scopes", sa.JSON))


def upgrade() -> None:
    # Plain ALTER TABLE: a batch on SQLite would reflect users too (see 0005).
    op.add_column("personal_tokens", sa.Column("projects", sa.JSON(), nullable=True))
    op.add_column("personal_tokens", sa.Column("allowed_ips", sa.JSON(), nullable=True))
    _rename_scopes(lambda scopes: [s for s in ORDER if any(s in NEW_NAMES.get(old, (old,)) for old in scopes)])


def downgrade() -> None:
    _rename_scopes(lambda scopes: sorted({OLD_NAMES.get(scope, scope) for scope in scopes}))
    op.drop_column("personal_tokens", "allowed_ips")
    op.drop_column("personal_tokens", "projects")


def _rename_scopes(rename: Callable[[list[str]], list[str]]) -> None:
    """Every token's scopes through ``rename``, in one UPDATE per distinct result."""
    connection = op.get_bind()
    groups: dict[str, list[int]] = {}
    for token_id, scopes in connection.execute(sa.select(TOKENS.c.id, TOKENS.c.scopes)):
        if isinstance(scopes, str):  # a driver that hands JSON back as text
            scopes = json.loads(scopes)
        groups.setdefault(json.dumps(rename(scopes or [])), []).append(token_id)
    for renamed, ids in groups.items():
        for start in range(0, len(ids), 500):
            connection.execute(
                TOKENS.update().where(TOKENS.c.id.in_(ids[start : start + 500])).values(scopes=json.loads(renamed))
            )
