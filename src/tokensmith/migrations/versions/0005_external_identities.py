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


# Plain ALTER TABLE on both stores, never a batch: on SQLite a batch reflects ``users`` first,
# which cannot read the expression index on lower(username) (a SAWarning on the first start's
# console) and, were the table ever copied, would leave that index behind. Adding a column, or
# dropping one that no index covers, is a plain ALTER on SQLite 3.35 and later too.


def upgrade() -> None:
    op.add_column("users", sa.Column("origin", sa.String(length=10), nullable=False, server_default="local"))
    op.add_column("users", sa.Column("display_name", sa.String(length=200), nullable=True))
    op.add_column("users", sa.Column("oidc_issuer", sa.String(length=255), nullable=True))
    op.add_column("users", sa.Column("oidc_subject", sa.String(length=255), nullable=True))
    op.add_column("users", sa.Column("external_id", sa.String(length=255), nullable=True))
    op.add_column("users", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("users", sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("uq_users_oidc_identity", "users", ["oidc_issuer", "oidc_subject"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_users_oidc_identity", table_name="users")
    for column in ("removed_at", "updated_at", "external_id", "oidc_subject", "oidc_issuer", "display_name", "origin"):
        op.drop_column("users", column)
