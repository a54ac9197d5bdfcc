"""`report` (HTML, issue #7) and `export` (reporting views to files, issue #4)."""

from __future__ import annotations

from pathlib import Path

import typer

from cifar_ops.errors import CifarOpsError


def register(app: typer.Typer) -> None:
    app.command()(report)
    app.command()(export)


def report(
    run_ids: list[str] = typer.Argument(None, help="Runs to report on."),
    experiment: str | None = typer.Option(None, "--experiment", "-e", help="All its runs."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o"),
) -> None:
    """A self-contained HTML report of runs, a comparison, or a search."""
    raise CifarOpsError("`cifar-ops report` is not built yet (issue #7)")


def export(
    fmt: str = typer.Option("csv", "--format", help="csv or parquet."),
    out_dir: Path = typer.Option(Path("export"), "--out", "-o"),
) -> None:
    """Write every reporting view to a file (for Power BI or pandas)."""
    raise CifarOpsError("`cifar-ops export` is not built yet (issue #4)")
