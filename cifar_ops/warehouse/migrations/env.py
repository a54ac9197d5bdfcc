"""Alembic environment for the cifar-ops warehouse.

The URL comes from, in order: a connection handed over by `cifar_ops.warehouse.migrate` (the CLI
and SQLite's automatic upgrade), `alembic -x url=...`, then `CIFAR_OPS_DATABASE_URL` (default
`sqlite:///cifar-ops.db`). SQLite runs in batch mode (it cannot ALTER most things in place).
The reporting views are created by migrations as SQL and left out of autogenerate's comparison.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from cifar_ops import settings
from cifar_ops.warehouse.engine import create_warehouse_engine
from cifar_ops.warehouse.schema import metadata
from cifar_ops.warehouse.views import REPORTING_SCHEMA

config = context.config


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Compare only the tables of schema.py: never the reporting views or their schema."""
    if type_ == "table" and name and name.startswith(f"{REPORTING_SCHEMA}_"):
        return False
    return getattr(obj, "schema", None) != REPORTING_SCHEMA


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        include_object=include_object,
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=metadata,
        literal_binds=True,
        include_object=include_object,
        render_as_batch=_url().startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _configure(given)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_warehouse_engine(_url())
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


def _url() -> str:
    return context.get_x_argument(as_dictionary=True).get("url") or settings.database_url()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
