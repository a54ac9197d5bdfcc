"""`report` (one self-contained HTML page) and `export` (every reporting view to a file)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command()(report)
    app.command()(export)


def report(
    run_ids: list[str] = typer.Argument(None, help="Runs to report on (ids or unique prefixes)."),
    experiment: str | None = typer.Option(None, "--experiment", "-e", help="All its runs."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o"),
    details: int | None = typer.Option(
        None,
        "--details",
        min=0,
        help="Runs shown in full (default: all named, or an experiment's best 3).",
    ),
    heatmap: str | None = typer.Option(
        None, "--heatmap", metavar="X,Y", help="Search heatmap axes (default: the two most varied)."
    ),
) -> None:
    """A self-contained HTML report of runs, a comparison, or a search."""
    from rich.text import Text

    from cifar_ops.commands.output import console
    from cifar_ops.report import build_report

    if bool(run_ids) == bool(experiment):
        raise typer.BadParameter("give RUN_ID... or --experiment E (one of the two)")
    axes = None
    if heatmap is not None:
        parts = [p.strip() for p in heatmap.split(",")]
        if len(parts) != 2 or not all(parts):
            raise typer.BadParameter(f"--heatmap takes X,Y (two parameter keys), got {heatmap!r}")
        axes = (parts[0], parts[1])
    data = build_report(
        output, run_ids=run_ids or (), experiment=experiment, details=details, heatmap_axes=axes
    )
    extras = [name for name, part in (("comparison", data.comparison), ("search", data.search))
              if part is not None]  # fmt: skip
    shown = f"{len(data.runs)} run(s) in detail" + "".join(f", {e}" for e in extras)
    console.print(
        Text.assemble("wrote ", (str(output), "bold"), f": {data.title} ({shown})"), soft_wrap=True
    )


def export(
    fmt: str = typer.Option("csv", "--format", help="csv or parquet."),
    out_dir: Path = typer.Option(Path("export"), "--out", "-o"),
) -> None:
    """Write every reporting view to a file (for Power BI or pandas)."""
    if fmt not in ("csv", "parquet"):
        raise typer.BadParameter(f"{fmt!r} is not csv or parquet", param_hint="--format")
    from cifar_ops.commands.output import console
    from cifar_ops.warehouse import open_store
    from cifar_ops.warehouse.export import export_views

    with open_store() as store:
        written = export_views(store, fmt, out_dir)
    for path in written:
        console.print(str(path))
