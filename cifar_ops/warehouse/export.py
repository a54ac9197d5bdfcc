"""`cifar-ops export`: every reporting view to one CSV or Parquet file, for Power BI or pandas."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cifar_ops.errors import WarehouseError
from cifar_ops.warehouse.store import Store
from cifar_ops.warehouse.views import VIEW_NAMES

FORMATS = ("csv", "parquet")


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
            frame.to_csv(partial, index=False)
        else:
            frame.to_parquet(partial, index=False)
        partial.replace(path)
        written.append(path)
    return written
