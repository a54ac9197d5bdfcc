"""The schema's version under Alembic: upgrade, current, history, and the check at open time.

SQLite (the embedded default) is upgraded automatically on first use, inside one write-locked
transaction so concurrent first users do not race. PostgreSQL is upgraded explicitly, once
(`alembic upgrade head`, `cifar-ops db upgrade` or the chart's hook Job), never from each training
pod: a database behind head is refused with the fix in the message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from cifar_ops import settings
from cifar_ops.errors import WarehouseError
from cifar_ops.warehouse.engine import create_warehouse_engine, driver_reason, masked

MIGRATIONS_PACKAGE = "cifar_ops.warehouse.migrations"


@dataclass(frozen=True)
class Revision:
    revision: str
    down_revision: str | None
    message: str
    is_head: bool


@dataclass(frozen=True)
class SchemaState:
    url: str  # password masked
    current: str | None  # None: no schema yet
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def migrations_dir() -> Path:
    """The migrations shipped in the package (env.py, versions/, alembic.ini), as a directory."""
    directory = resources.files(MIGRATIONS_PACKAGE)
    if not isinstance(directory, Path) or not (directory / "env.py").is_file():
        raise WarehouseError(
            f"the Alembic migrations of {MIGRATIONS_PACKAGE} are not a directory on disk "
            f"({directory}): install cifar-ops as a regular wheel or from its source tree"
        )
    return directory


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's config (the packaged alembic.ini), optionally bound to an open connection."""
    directory = migrations_dir()
    config = Config(str(directory / "alembic.ini"))
    config.set_main_option("script_location", str(directory))
    config.set_main_option("prepend_sys_path", "")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise WarehouseError(f"the migrations have {len(heads)} heads ({heads}); merge them")
    return heads[0]


def history() -> list[Revision]:
    """Every migration, newest first."""
    script = ScriptDirectory.from_config(alembic_config())
    heads = set(script.get_heads())
    return [
        Revision(
            revision=rev.revision,
            down_revision=rev.down_revision if isinstance(rev.down_revision, str) else None,
            message=(rev.doc or "").strip().splitlines()[0] if rev.doc else "",
            is_head=rev.revision in heads,
        )
        for rev in script.walk_revisions()
    ]


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def state(engine: Engine) -> SchemaState:
    """Where the database stands against the migrations' head."""
    url = masked(engine.url.render_as_string(hide_password=False))
    with _connect(engine) as connection:
        current = current_revision(connection)
    return SchemaState(url=url, current=current, head=head_revision())


def upgrade(engine: Engine, revision: str = "head") -> SchemaState:
    """Apply migrations up to `revision` in one transaction; returns the new state.

    An unknown revision or a refused statement (e.g. no permission) is a `WarehouseError`, and the
    transaction leaves the schema as it was.
    """
    url = masked(engine.url.render_as_string(hide_password=False))
    try:
        with _begin(engine) as connection:
            command.upgrade(alembic_config(connection), revision)
    except CommandError as exc:
        raise WarehouseError(
            f"cannot upgrade {url} to {revision!r}: {exc} (see `cifar-ops db history`)"
        ) from None
    except SQLAlchemyError as exc:
        raise WarehouseError(
            f"upgrading {url} to {revision!r} failed: {driver_reason(exc)}"
        ) from None
    return state(engine)


def ensure_current(engine: Engine) -> None:
    """SQLite: bring the schema to head. PostgreSQL: refuse a schema that is not at head."""
    head = head_revision()
    url = masked(engine.url.render_as_string(hide_password=False))
    if engine.dialect.name == "sqlite":
        with _begin(engine) as connection:  # BEGIN IMMEDIATE: one upgrader at a time
            current = current_revision(connection)
            if current != head:
                _refuse_unknown(url, current, head)
                command.upgrade(alembic_config(connection), "head")
        return
    with _connect(engine) as connection:
        current = current_revision(connection)
    if current == head:
        return
    if current is None:
        raise WarehouseError(
            f"the warehouse {url} has no schema (head is {head}): run `cifar-ops db upgrade` "
            "(or `alembic upgrade head`, or install the Helm chart, whose hook runs it)"
        )
    _refuse_unknown(url, current, head)
    raise WarehouseError(
        f"the warehouse {url} is behind the migration head (at {current}, head is {head}): "
        "run `cifar-ops db upgrade` (or `alembic upgrade head`)"
    )


def _refuse_unknown(url: str, current: str | None, head: str) -> None:
    """A revision these migrations do not have was written by a newer cifar-ops: refuse it."""
    if current is not None and current not in {rev.revision for rev in history()}:
        raise WarehouseError(
            f"the warehouse {url} is at revision {current}, unknown to this cifar-ops (head "
            f"{head}): it was migrated by a newer version; upgrade cifar-ops"
        )


@contextmanager
def _connect(engine: Engine, *, begin: bool = False) -> Iterator[Connection]:
    """A connection (in a transaction if `begin`); an unreachable database is a WarehouseError."""
    try:
        connection = engine.connect()
    except SQLAlchemyError as exc:
        raise unreachable(engine, exc) from exc
    with connection:
        if not begin:
            yield connection
            return
        with connection.begin():
            yield connection


def _begin(engine: Engine) -> AbstractContextManager[Connection]:
    return _connect(engine, begin=True)


def unreachable(engine: Engine, exc: BaseException) -> WarehouseError:
    """The error for a database that cannot be reached, naming it (password masked)."""
    url = masked(engine.url.render_as_string(hide_password=False))
    return WarehouseError(
        f"cannot reach the warehouse {url}: {driver_reason(exc)} (check CIFAR_OPS_DATABASE_URL)"
    )


def upgrade_database(url: str | None = None, revision: str = "head") -> SchemaState:
    """`cifar-ops db upgrade`: migrate the warehouse at `url` (default from the environment)."""
    engine = create_warehouse_engine(url or settings.database_url())
    try:
        return upgrade(engine, revision)
    finally:
        engine.dispose()


def database_state(url: str | None = None) -> SchemaState:
    """`cifar-ops db current`: where the warehouse at `url` stands, without changing it."""
    engine = create_warehouse_engine(url or settings.database_url())
    try:
        return state(engine)
    finally:
        engine.dispose()
