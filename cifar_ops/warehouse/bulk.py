"""Idempotent writes: single-row upserts, and bulk upserts (COPY on PostgreSQL).

Every write names the table's natural key, so writing the same rows twice leaves one copy.
PostgreSQL bulk rows go through psycopg2's COPY into a temporary table and one
`INSERT ... SELECT ... ON CONFLICT DO UPDATE`, a few round trips for any number of rows (MLflow
#3010: row-by-row logging was 70x slower). SQLite takes one executemany.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError


def _insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def key_of(table: Table) -> list[str]:
    """The natural key: the primary key's columns."""
    return [column.name for column in table.primary_key.columns]


def upsert(
    conn: Connection,
    table: Table,
    rows: dict[str, Any] | list[dict[str, Any]],
    *,
    update: Sequence[str] | dict[str, Any] | None = None,
) -> None:
    """Insert rows, or on a key conflict update `update` (default: every non-key column given).

    `update` may be a mapping of column -> SQL expression (use `excluded(...)` for the new value);
    an empty sequence means do nothing on conflict.
    """
    batch = rows if isinstance(rows, list) else [rows]
    if not batch:
        return
    statement = _insert(conn, table)
    key = key_of(table)
    if update is None:
        update = [name for name in batch[0] if name not in key]
    if isinstance(update, dict):
        assignments = update
    else:
        assignments = {name: statement.excluded[name] for name in update}
    if assignments:
        statement = statement.on_conflict_do_update(index_elements=key, set_=assignments)
    else:
        statement = statement.on_conflict_do_nothing(index_elements=key)
    conn.execute(statement, batch)


def excluded(conn: Connection, table: Table) -> Any:
    """The `EXCLUDED` pseudo-row of an upsert into `table` (the values that lost the conflict)."""
    return _insert(conn, table).excluded


def bulk_upsert(
    conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Upsert many rows given as tuples in `columns` order: COPY on PostgreSQL."""
    if conn.dialect.name == "postgresql":
        _copy_upsert(conn, table, columns, rows)
        return
    dicts = [dict(zip(columns, row, strict=True)) for row in rows]
    upsert(conn, table, dicts)


_NULL = "\\N"  # COPY's NULL marker; only ever written unquoted


def _csv_field(value: Any) -> str:
    """One CSV field for COPY: NULL bare, every string quoted (so "\\N" or "" stay strings)."""
    if value is None:
        return _NULL
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'
    return str(value)  # int, bool, float: repr round-trips, and PostgreSQL reads nan/inf


def _copy_upsert(
    conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    buffer = io.StringIO()
    buffer.writelines(",".join(map(_csv_field, row)) + "\n" for row in rows)
    buffer.seek(0)
    key = key_of(table)
    names = ", ".join(f'"{c}"' for c in columns)
    updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in columns if c not in key)
    conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    temp = f"copy_{table.name}"
    dbapi_error = conn.dialect.loaded_dbapi.Error
    # `conn.connection` revalidates first, so its DBAPI connection is the live one (never None)
    dbapi_connection = cast(DBAPIConnection, conn.connection.dbapi_connection)
    cursor = dbapi_connection.cursor()  # same transaction as `conn`
    statement = f"COPY {temp} ({names}) FROM STDIN WITH (FORMAT csv, NULL '{_NULL}')"
    try:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {temp} "
            f"(LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        cursor.copy_expert(statement, buffer)
        statement = (
            f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {temp} "
            f"ON CONFLICT ({', '.join(key)}) {conflict}"
        )
        cursor.execute(statement)
        cursor.execute(f"TRUNCATE {temp}")
    except dbapi_error as exc:  # raw cursor: wrap as SQLAlchemy would (IntegrityError, ...)
        raise DBAPIError.instance(statement, None, exc, dbapi_error, dialect=conn.dialect) from exc
    finally:
        cursor.close()
