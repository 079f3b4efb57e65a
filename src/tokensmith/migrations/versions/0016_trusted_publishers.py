"""Workload identity: trusted publishers, the CI tokens each gave, and the ID tokens exchanged.

A project's trusted publishers name an OpenID Connect issuer, the claims its ID tokens must
carry and the scopes they get; ``publisher_tokens`` ties each token minted to its publisher (its
removal revokes them); ``id_token_uses`` holds each exchanged ID token's issuer and ``jti``,
digested, until it expires: an ID token is exchanged once, across every instance.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trusted_publishers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("claims", sa.JSON(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_trusted_publishers_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["users.id"], name=op.f("fk_trusted_publishers_account_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trusted_publishers")),
    )
    op.create_index(op.f("ix_trusted_publishers_project_id"), "trusted_publishers", ["project_id"])
    op.create_index(op.f("ix_trusted_publishers_issuer"), "trusted_publishers", ["issuer"])
    op.create_index("uq_trusted_publishers_project_name", "trusted_publishers", ["project_id", "name"], unique=True)
    op.create_table(
        "publisher_tokens",
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["personal_tokens.id"],
            name=op.f("fk_publisher_tokens_token_id_personal_tokens"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["publisher_id"],
            ["trusted_publishers.id"],
            name=op.f("fk_publisher_tokens_publisher_id_trusted_publishers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_publisher_tokens")),
    )
    op.create_index(op.f("ix_publisher_tokens_publisher_id"), "publisher_tokens", ["publisher_id"])
    op.create_table(
        "id_token_uses",
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_id_token_uses")),
    )
    op.create_index(op.f("ix_id_token_uses_expires_at"), "id_token_uses", ["expires_at"])


def downgrade() -> None:
    op.drop_table("id_token_uses")
    op.drop_table("publisher_tokens")
    op.drop_table("trusted_publishers")
