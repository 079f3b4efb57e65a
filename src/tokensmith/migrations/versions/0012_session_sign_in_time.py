"""When a browser session's person last proved who they are: creating or changing a token
asks for a sign-in within the last 15 minutes (sessions.REAUTHENTICATION_WINDOW).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Sessions from before this column count as signed in when they started.
    with op.batch_alter_table("browser_sessions") as batch:
        batch.add_column(sa.Column("authenticated_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE browser_sessions SET authenticated_at = created_at")
    with op.batch_alter_table("browser_sessions") as batch:
        batch.alter_column("authenticated_at", existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("browser_sessions") as batch:
        batch.drop_column("authenticated_at")
