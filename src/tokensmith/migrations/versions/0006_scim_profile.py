"""SCIM: what the identity provider sent for a person's names and email addresses.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


# A plain ALTER TABLE, not a batch: see 0005 (the expression index on lower(username)).


def upgrade() -> None:
    op.add_column("users", sa.Column("scim_profile", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "scim_profile")
