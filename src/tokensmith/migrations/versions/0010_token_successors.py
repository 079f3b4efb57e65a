"""Rotation reuse: each rotated token names the token that replaced it.

Presenting a rotated token means it was copied before it was rotated: its successor (and theirs,
if rotated again) is revoked too, which needs the link from old to new. Tokens rotated before
this migration get theirs from the audit trail's "token.rotated" events.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# SQLite copies the table (a new foreign key, a column made NOT NULL): its own columns and
# indexes are reflected, not the tables its foreign keys name. Reflecting users would skip the
# expression index on lower(username), with a SAWarning on the first start's console.
LEAVE_USERS = {"resolve_fks": False}

TOKENS = sa.table("personal_tokens", sa.column("id", sa.Integer), sa.column("replaced_by_id", sa.Integer))
EVENTS = sa.table("audit_events", sa.column("action", sa.String), sa.column("details", sa.JSON))


def upgrade() -> None:
    with op.batch_alter_table("personal_tokens", reflect_kwargs=LEAVE_USERS) as batch:
        batch.add_column(sa.Column("replaced_by_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_personal_tokens_replaced_by_id_personal_tokens"),
            "personal_tokens",
            ["replaced_by_id"],
            ["id"],
            ondelete="SET NULL",
        )
    connection = op.get_bind()
    rotations = connection.execute(sa.select(EVENTS.c.details).where(EVENTS.c.action == "token.rotated"))
    for (details,) in rotations:
        if isinstance(details, str):  # a driver that hands JSON back as text
            details = json.loads(details)
        old, new = (details or {}).get("replaced_token_id"), (details or {}).get("token_id")
        if isinstance(old, int) and isinstance(new, int):
            connection.execute(TOKENS.update().where(TOKENS.c.id == old).values(replaced_by_id=new))


def downgrade() -> None:
    with op.batch_alter_table("personal_tokens", reflect_kwargs=LEAVE_USERS) as batch:
        batch.drop_constraint(op.f("fk_personal_tokens_replaced_by_id_personal_tokens"), type_="foreignkey")
        batch.drop_column("replaced_by_id")
