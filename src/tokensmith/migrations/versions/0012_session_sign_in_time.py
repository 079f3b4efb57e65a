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

# SQLite copies the table (a new foreign key, a column made NOT NULL): its own columns and
# indexes are reflected, not the tables its foreign keys name. Reflecting users would skip the
# expression index on lower(username), with a SAWarning on the first start's console.
LEAVE_USERS = {"resolve_fks": False}


def upgrade() -> None:
    # Sessions from before this column count as signed in when they started.
    with op.batch_alter_table("browser_sessions", reflect_kwargs=LEAVE_USERS) as batch:
        batch.add_column(sa.Column("authenticated_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE browser_sessions SET authenticated_at = created_at")
    with op.batch_alter_table("browser_sessions", reflect_kwargs=LEAVE_USERS) as batch:
        batch.alter_column("authenticated_at", existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("browser_sessions", reflect_kwargs=LEAVE_USERS) as batch:
        batch.drop_column("authenticated_at")
