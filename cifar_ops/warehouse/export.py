"""`cifar-ops export`: every reporting view to one CSV or Parquet file, for Power BI or pandas.

A CSV opened in a spreadsheet runs a text cell that begins with = + - @ (or a tab or carriage
return) as a formula, and class names and run descriptions are user text; such cells get a
leading `'` (OWASP's CSV-injection escape). Numbers are written as numbers. Parquet is typed and
left as it is.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cifar_ops.errors import WarehouseError
from cifar_ops.warehouse.store import Store
from cifar_ops.warehouse.views import VIEW_NAMES

FORMATS = ("csv", "parquet")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def export_views(store: Store, fmt: str, out_dir: Path) -> list[Path]:
    """Write `<view>.<fmt>` for each reporting view into `out_dir`; returns the files."""
    if fmt not in FORMATS:
        raise WarehouseError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WarehouseError(f"cannot create the export directory {out_dir}: {exc}") from exc
    written = []
    for name in VIEW_NAMES:
        columns, rows = store.read_view(name)
        frame = pd.DataFrame.from_records(rows, columns=columns)
        path = out_dir / f"{name}.{fmt}"
        partial = path.with_name(path.name + ".partial")
        if fmt == "csv":
            # RFC 4180's CRLF line ends: a line break inside a cell (\r too) is then quoted.
            csv_safe(frame).to_csv(partial, index=False, lineterminator="\r\n")
        else:
            frame.to_parquet(partial, index=False)
        partial.replace(path)
        written.append(path)
    return written


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every text cell that a spreadsheet would run as a formula escaped by `'`."""
    escaped = frame.copy()
    for column in escaped.columns:
        if pd.api.types.is_object_dtype(escaped[column]) or pd.api.types.is_string_dtype(
            escaped[column]
        ):
            escaped[column] = escaped[column].map(_escape_cell)
    return escaped


def _escape_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
