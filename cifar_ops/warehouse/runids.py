"""Run ids as people type them: a full id or a unique prefix, resolved against the warehouse.

The CLI (`runs show`, `compare`) and the HTML report (which reads only the reporting views) both
resolve through `resolve`, so a prefix means the same run everywhere.
"""

from __future__ import annotations

import re

from sqlalchemy import ColumnElement, select
from sqlalchemy.engine import Connection

from cifar_ops.errors import WarehouseError

_PREFIX = re.compile(r"^[0-9a-f]{1,32}$")
_SHOWN = 5  # matches named in an "ambiguous prefix" error


def prefix_of(given: str) -> str:
    """The hex prefix a user meant (dashes, case and surrounding blanks ignored)."""
    prefix = given.strip().lower().replace("-", "")
    if not _PREFIX.match(prefix):
        raise WarehouseError(
            f"{given!r} is not a run id: run ids are 32 hex digits (a unique prefix will do)"
        )
    return prefix


def resolve(conn: Connection, given: str, run_id: ColumnElement[str], where: str) -> str:
    """The one full id in `run_id` (a table's or view's column) that starts with `given`."""
    prefix = prefix_of(given)
    query = (
        select(run_id)
        .where(run_id.startswith(prefix, autoescape=True))
        .order_by(run_id)
        .limit(_SHOWN + 1)
    )
    matches = list(conn.execute(query).scalars())
    if not matches:
        raise WarehouseError(
            f"no run {given!r} in the warehouse {where}; `cifar-ops runs list` shows the runs"
        )
    if len(matches) > 1:
        count = f"{_SHOWN + 1} or more" if len(matches) > _SHOWN else str(len(matches))
        shown = ", ".join(matches[:_SHOWN])
        raise WarehouseError(
            f"run id prefix {given!r} matches {count} runs ({shown}): give more digits"
        )
    return str(matches[0])
