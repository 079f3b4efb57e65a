"""INSERTs of many rows in one statement, compiled once per store and number of rows.

For a hot path that writes a few rows to each of a few tables in one unit of work (the CI
exchanges' batches, tokens/exchange_batches.py): a ``BulkInsert`` renders ``INSERT … VALUES
(…), (…) …`` with its clauses (``ON CONFLICT DO NOTHING``, ``RETURNING``) through the store's own
dialect, the first time a number of rows is written, and keeps it; each later write converts the
rows' values with the columns' own bind processors — what SQLAlchemy itself applies — and runs
the statement with ``Connection.exec_driver_sql``. SQLAlchemy's work on every execution of a
Core statement — the compiled cache's lookup, each row's parameters built, ``insertmanyvalues``
splitting and rejoining — was about a third of such a batch's CPU (docs/benchmarks.md); the
execution itself is SQLAlchemy's as for any statement: its events (SQLite's writers take turns
there, store/sqlite.py), its errors (an outage is an outage), its transaction.

The rows give every column of ``columns``; a column left out gets its store default, so a column
with a default of SQLAlchemy's own (which a Core INSERT would send) must be among them: checked
when the statement is made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Insert, Table, bindparam
from sqlalchemy.engine import Dialect

Build = Callable[[Dialect, list[dict[str, Any]]], Insert]
Processor = Callable[[Any], Any] | None


class BulkInsert:
    """``build(dialect, rows)``: the Core INSERT of ``table`` for these rows of bound
    parameters (``insert(table).values(rows)``, with whatever clauses); ``columns``: the
    columns each row gives."""

    def __init__(self, table: Table, columns: Sequence[str], build: Build) -> None:
        missing = [column.name for column in table.columns if column.default is not None and column.name not in columns]
        if missing:
            raise ValueError(f"{table.name}: columns with a default of SQLAlchemy's must be given: {missing}")
        self.table = table
        self.columns = tuple(columns)
        self.build = build
        # By dialect and driver (one of each per store), and number of rows.
        self._statements: dict[tuple[str, str, int], tuple[str, list[tuple[str, int, int]]]] = {}
        self._processors: dict[tuple[str, str], tuple[tuple[str, Processor], ...]] = {}

    def execute(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> Sequence[Any]:
        """Insert ``rows`` (at least one) by one statement: the rows it returns, if it returns any."""
        dialect = connection.dialect
        sql, order = self._statement(dialect, len(rows))
        processors = self._processors.get((dialect.name, dialect.driver)) or self._processors_of(dialect)
        converted = [
            [row[column] if process is None else process(row[column]) for column, process in processors] for row in rows
        ]
        parameters: tuple[Any, ...] | dict[str, Any]
        if dialect.positional:
            parameters = tuple(converted[number][place] for _name, number, place in order)
        else:
            parameters = {name: converted[number][place] for name, number, place in order}
        result = connection.exec_driver_sql(sql, parameters)
        return result.all() if result.returns_rows else ()

    def _statement(self, dialect: Dialect, count: int) -> tuple[str, list[tuple[str, int, int]]]:
        """The statement's text for ``count`` rows, and its parameters in their order: each
        one's name, row and column (of ``columns``)."""
        key = (dialect.name, dialect.driver, count)
        found = self._statements.get(key)
        if found is None:
            where = {
                f"{column}_{number}": (number, place)
                for number in range(count)
                for place, column in enumerate(self.columns)
            }
            rows = [
                {column: bindparam(f"{column}_{number}", type_=self.table.c[column].type) for column in self.columns}
                for number in range(count)
            ]
            compiled = self.build(dialect, rows).compile(dialect=dialect)
            names = compiled.positiontup if dialect.positional else list(compiled.binds)
            assert names is not None and set(names) == set(where), "the statement's parameters are the rows' values"
            found = self._statements[key] = (compiled.string, [(name, *where[name]) for name in names])
        return found

    def _processors_of(self, dialect: Dialect) -> tuple[tuple[str, Processor], ...]:
        processors = tuple(
            (column, self.table.c[column].type.dialect_impl(dialect).bind_processor(dialect)) for column in self.columns
        )
        self._processors[dialect.name, dialect.driver] = processors
        return processors
