"""Alembic environment: migrations run on the connection ``db.migrate`` hands over.

To write a new migration from a development checkout:
``alembic -c migrations.ini revision --autogenerate -m "what changed"``
(``migrations.ini`` at the repository root points here and at ``var/tokensmith.db``).
"""

from alembic import context
from sqlalchemy import Connection, create_engine

from tokensmith.store.models import Base, compared_on

config = context.config
connection = config.attributes.get("connection")


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=compared_on(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise SystemExit("migrations.ini names no sqlalchemy.url to migrate")
    engine = create_engine(url)
    with engine.begin() as own_connection:
        run(own_connection)
