"""Where each token was used: its last five distinct addresses, each with when it was first and
last seen there and the client last seen (usage.py writes them behind the requests).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_addresses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["personal_tokens.id"],
            name=op.f("fk_token_addresses_token_id_personal_tokens"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_addresses")),
    )
    op.create_index("uq_token_addresses_token_id_ip", "token_addresses", ["token_id", "ip"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_token_addresses_token_id_ip", table_name="token_addresses")
    op.drop_table("token_addresses")
