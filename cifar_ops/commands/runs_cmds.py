"""`runs list|show|compare`: read the warehouse (issue #4 fills the bodies)."""

from __future__ import annotations

import typer

from cifar_ops.commands.output import JSON_OPTION
from cifar_ops.errors import CifarOpsError

app = typer.Typer(help="List, show and compare logged runs.", no_args_is_help=True)


@app.command("list")
def list_runs(
    experiment: str | None = typer.Option(None, "--experiment", "-e"),
    status: str | None = typer.Option(None, "--status"),
    model: str | None = typer.Option(None, "--model"),
    limit: int = typer.Option(50, "--limit", min=1),
    as_json: bool = JSON_OPTION,
) -> None:
    """Runs, newest first, with their headline numbers."""
    raise CifarOpsError("`cifar-ops runs list` is not built yet (issue #4)")


@app.command()
def show(run_id: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """One run: config, epochs and evaluation."""
    raise CifarOpsError("`cifar-ops runs show` is not built yet (issue #4)")


@app.command()
def compare(run_ids: list[str] = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """Several runs side by side (seed 004's results table)."""
    raise CifarOpsError("`cifar-ops runs compare` is not built yet (issue #4)")
