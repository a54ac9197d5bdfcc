"""Shared CLI plumbing: consoles, JSON output, and turning `CifarOpsError` into an exit code."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from cifar_ops.errors import CifarOpsError

console = Console()
err_console = Console(stderr=True)

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON object for scripts.")
SET_OPTION = typer.Option(None, "--set", help="Override a config key: --set train.epochs=3.")
CONFIG_OPTION = typer.Option(..., "--config", "-c", help="Run or search config YAML.")


class ErrorHandlingGroup(TyperGroup):
    """Root command group: a `CifarOpsError` becomes `error: <message>` and its exit code."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CifarOpsError as exc:
            err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


def print_json(payload: Any) -> None:
    """Print a JSON document on stdout (dates and paths as strings), nothing else."""
    typer.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))
