"""Engines for the two warehouses: PostgreSQL as it comes, SQLite tuned for several writers.

SQLite gets foreign keys on (they are off per connection by default), WAL so readers never block
the writer, a busy timeout so concurrent writers wait instead of failing, and `BEGIN IMMEDIATE`
so a transaction takes the write lock up front (a deferred one that reads first can fail to
upgrade its lock when another process committed in between, with no waiting at all).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from cifar_ops.errors import WarehouseError
from cifar_ops.redaction import redact_url

SQLITE_BUSY_TIMEOUT_S = 60.0
# libpq TCP keepalives on every PostgreSQL connection (a URL's own `keepalives*` win): a session
# idle for a whole run (the run lock's) notices a vanished server within about a minute, not the
# OS default of two hours.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 30, 10, 3
PG_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": KEEPALIVE_IDLE_S,
    "keepalives_interval": KEEPALIVE_INTERVAL_S,
    "keepalives_count": KEEPALIVE_COUNT,
}


def masked(url: str) -> str:
    """The URL with its passwords replaced by ***, for messages (also when it does not parse)."""
    return redact_url(url)


def driver_reason(exc: BaseException) -> str:
    """The first line of the database driver's message (SQLAlchemy wraps it in `.orig`)."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return detail[0] if detail else type(exc).__name__


def dialect_of(url: str) -> str:
    """`postgresql` or `sqlite`; anything else is refused with the allowed forms.

    A second `@` in a server URL (one in a password, unescaped) is refused too: the parser would
    take the rest of the password for the host, and the driver's error would print it.
    """
    scheme, _, rest = url.strip().partition("://")
    if not scheme.startswith("sqlite") and rest.count("@") > 1:
        raise WarehouseError(
            f"CIFAR_OPS_DATABASE_URL {masked(url)!r} has more than one '@': write an '@' inside "
            "the user, password or query as %40"
        )
    try:
        name = make_url(url).get_backend_name()
    except ArgumentError as exc:
        raise WarehouseError(
            f"CIFAR_OPS_DATABASE_URL {masked(url)!r} is not a database URL: use "
            "sqlite:///path.db or postgresql+psycopg2://user:password@host:5432/db"
        ) from exc
    if name not in ("postgresql", "sqlite"):
        raise WarehouseError(
            f"warehouse URL {masked(url)!r} uses {name!r}: only postgresql and sqlite are supported"
        )
    return name


def create_warehouse_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url` with the per-dialect settings above."""
    if dialect_of(url) == "sqlite":
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    query = make_url(url).query
    keepalives = {k: v for k, v in PG_KEEPALIVES.items() if k not in query}
    connect_args = {**keepalives, **kwargs.pop("connect_args", {})}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # let the "begin" event issue BEGIN itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")
