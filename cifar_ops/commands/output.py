"""Shared CLI plumbing: consoles, JSON output, and turning errors into `error: ...` and a code.

The consoles never read markup: paths, class names and messages are user text, and `[red]` or
`[/foo]` in them must print as written. Styled output is built with `rich.text.Text`.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from cifar_ops.errors import CifarOpsError

if TYPE_CHECKING:  # the vendored click's Context, which TyperGroup's methods take
    from typer._click import Context as ClickContext

console = Console(markup=False)
err_console = Console(stderr=True, markup=False)

# click's usage errors (typer vendors click in recent versions, so they are found through typer).
_CLICK_ERRORS = sys.modules[typer.BadParameter.__module__]
_USAGE_ERROR: type[Exception] = _CLICK_ERRORS.UsageError
_HELP_REQUEST: Any = getattr(_CLICK_ERRORS, "NoArgsIsHelpError", ())

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON object for scripts.")
SET_OPTION = typer.Option(None, "--set", help="Override a config key: --set train.epochs=3.")
CONFIG_OPTION = typer.Option(..., "--config", "-c", help="Run or search config YAML.")


class ErrorHandlingGroup(TyperGroup):
    """Root command group: a `CifarOpsError` or a usage error becomes one line
    `error: <message>` on stderr and its exit code (usage errors: 2)."""

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except _USAGE_ERROR as exc:
            _usage_failed(exc)

    def invoke(self, ctx: ClickContext) -> Any:
        try:
            return super().invoke(ctx)
        except CifarOpsError as exc:
            print_error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except _USAGE_ERROR as exc:
            _usage_failed(exc)


def print_error(message: str) -> None:
    """`error: <message>` on stderr, on one line, printed as written."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


def _usage_failed(exc: Any) -> NoReturn:
    if isinstance(exc, _HELP_REQUEST):
        raise exc
    command = exc.ctx.command_path if exc.ctx is not None else "cifar-ops"
    print_error(f"{exc.format_message()} (see `{command} --help`)")
    raise typer.Exit(exc.exit_code) from None


def print_json(payload: Any) -> None:
    """Print a JSON document on stdout (dates and paths as strings), nothing else."""
    typer.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))
