"""Application tokens: a token derived from a personal token names it as its parent.

The reference's ``/authentication/token`` gives an application (its command-line tool, say) a
token of its own, derived from the personal token presented: never wider than it, and revoked
with it. A revocation finds a token's children through the index on ``parent_id``; the token
check reads the column too (whether a token is an application token decides what it may do),
so on SQLite it joins the index the check reads alone (migration 0013).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# As they stand in models.CHECK_COLUMNS today (0013's, and the parent); a migration keeps its own copy.
BEFORE = [
    "digest",
    "user_id",
    "name",
    "hint",
    "scopes",
    "projects",
    "allowed_ips",
    "created_at",
    "expires_at",
    "last_used_at",
    "last_used_ip",
    "last_used_agent",
    "revoked_at",
    "revoked_reason",
]
AFTER = [*BEFORE, "parent_id"]
# SQLite copies the table (a new foreign key): its own columns and indexes are reflected, not the
# tables its foreign keys name (reflecting users would skip its expression index, with a warning).
LEAVE_USERS = {"resolve_fks": False}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.drop_index("ix_personal_tokens_check", table_name="personal_tokens")
    with op.batch_alter_table("personal_tokens", reflect_kwargs=LEAVE_USERS) as batch:
        batch.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_personal_tokens_parent_id_personal_tokens"),
            "personal_tokens",
            ["parent_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index(op.f("ix_personal_tokens_parent_id"), ["parent_id"])
    if sqlite:
        op.create_index("ix_personal_tokens_check", "personal_tokens", AFTER)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.drop_index("ix_personal_tokens_check", table_name="personal_tokens")
    with op.batch_alter_table("personal_tokens", reflect_kwargs=LEAVE_USERS) as batch:
        batch.drop_index(op.f("ix_personal_tokens_parent_id"))
        batch.drop_constraint(op.f("fk_personal_tokens_parent_id_personal_tokens"), type_="foreignkey")
        batch.drop_column("parent_id")
    if sqlite:
        op.create_index("ix_personal_tokens_check", "personal_tokens", BEFORE)
