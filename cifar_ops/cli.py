"""The `cifar-ops` command: a thin Typer app. Each command group lives in cifar_ops/commands/.

Nothing heavy is imported here: TensorFlow, SQLAlchemy and the Kubernetes client load inside the
command that needs them, so `cifar-ops --help` answers at once.
"""

from __future__ import annotations

import os

import typer

from cifar_ops import __version__
from cifar_ops.commands import (
    artifact_cmds,
    config_cmds,
    db_cmds,
    kube_cmds,
    metrics_cmds,
    models_cmds,
    report_cmds,
    runs_cmds,
    serving_cmds,
    training_cmds,
)
from cifar_ops.commands.output import ErrorHandlingGroup

app = typer.Typer(
    cls=ErrorHandlingGroup,
    name="cifar-ops",
    help="Train, track and ship CIFAR-10 style image classifiers, locally or on Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cifar-ops {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """cifar-ops: `run` or `submit`, then look at `runs`, `report` and the warehouse views."""


training_cmds.register(app)
artifact_cmds.register(app)
config_cmds.register(app)
kube_cmds.register(app)
metrics_cmds.register(app)
app.add_typer(runs_cmds.app, name="runs")
report_cmds.register(app)
app.add_typer(db_cmds.app, name="db")
app.add_typer(models_cmds.app, name="models")
serving_cmds.register(app)


def main() -> None:
    """Console-script entry point; keeps TensorFlow's C++ info lines off the terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app()
