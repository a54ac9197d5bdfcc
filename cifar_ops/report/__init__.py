"""HTML reports built only from the warehouse reporting views.

`build_report` reads runs (by id or experiment) through `loader`, renders them with `render`
(plots from `plots`, one jinja2 template) and writes one self-contained HTML file atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cifar_ops.report.model import Kpis, ReportData, RunReport, SearchReport

__all__ = ["Kpis", "ReportData", "RunReport", "SearchReport", "build_report"]


def build_report(
    output: Path,
    *,
    run_ids: Sequence[str] = (),
    experiment: str | None = None,
    url: str | None = None,
    details: int | None = None,
    heatmap_axes: tuple[str, str] | None = None,
) -> ReportData:
    """Write the report of `run_ids` or `experiment` from the warehouse at `url` to `output`.

    Nothing is written when a run is unknown or the experiment is empty (the error says which),
    or when `output` is not a regular file or a new file in an existing directory (`UsageError`).
    """
    from cifar_ops import settings
    from cifar_ops.errors import UsageError
    from cifar_ops.report.loader import load_report_data
    from cifar_ops.report.render import write_report
    from cifar_ops.report.target import check_report_target
    from cifar_ops.warehouse import open_store
    from cifar_ops.warehouse.engine import create_warehouse_engine

    output = check_report_target(Path(output))
    url = url or settings.database_url()
    open_store(url).close()  # checks (PostgreSQL) or applies (SQLite) the schema, or says the fix
    engine = create_warehouse_engine(url)
    try:
        data = load_report_data(
            engine,
            run_ids=run_ids,
            experiment=experiment,
            details=details,
            heatmap_axes=heatmap_axes,
        )
    finally:
        engine.dispose()
    try:
        write_report(data, output)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"--output {str(output)!r}: cannot write the report: {reason}") from None
    return data
