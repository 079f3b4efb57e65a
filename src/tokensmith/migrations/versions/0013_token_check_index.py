"""On SQLite, one index that answers the token check alone: the digest, then every column the
check reads (models.CHECK_COLUMNS), so the lookup reads one B-tree instead of two. Among a
million tokens that halves the pages a check touches, and SQLite re-reads them after every
commit elsewhere (docs/benchmarks.md, issue 14). PostgreSQL keeps its unique index: an index
entry there is limited to about 2.7 kB, which a token naming many projects can exceed.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# As they stand in models.CHECK_COLUMNS today; a migration keeps its own copy.
COLUMNS = [
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


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("ix_personal_tokens_check", "personal_tokens", COLUMNS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_personal_tokens_check", table_name="personal_tokens")
