"""Users from an identity provider: OpenID Connect issuer + subject, SCIM provisioning.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("origin", sa.String(length=10), nullable=False, server_default="local"))
        batch.add_column(sa.Column("display_name", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("oidc_issuer", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("oidc_subject", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("external_id", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("uq_users_oidc_identity", "users", ["oidc_issuer", "oidc_subject"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_users_oidc_identity", table_name="users")
    with op.batch_alter_table("users") as batch:
        for column in ("removed_at", "updated_at", "external_id", "oidc_subject", "oidc_issuer",
                       "display_name", "origin"):
            batch.drop_column(column)
