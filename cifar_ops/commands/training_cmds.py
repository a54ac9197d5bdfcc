"""`run`, `evaluate`, `predict`: train and use models on this machine (bodies: issue #3)."""

from __future__ import annotations

from pathlib import Path

import typer

from cifar_ops.commands.output import JSON_OPTION
from cifar_ops.errors import CifarOpsError

CONFIG_OPTION = typer.Option(..., "--config", "-c", help="Run or search config YAML.")
SET_OPTION = typer.Option(None, "--set", help="Override a config key: --set train.epochs=3.")


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(evaluate)
    app.command()(predict)


def run(
    config: Path = CONFIG_OPTION,
    overrides: list[str] = SET_OPTION,
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Sets data.dir."),
    run_id: str | None = typer.Option(None, "--run-id", help="Resume or name this run."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", help="Serve /metrics."),
    parallel: int = typer.Option(1, "--parallel", min=1, help="Search trials at once."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Train a config here (a search runs its trials) and log it to the warehouse."""
    raise CifarOpsError("`cifar-ops run` is not built yet (issue #3)")


def evaluate(
    model: Path = typer.Argument(..., help="A saved .keras model."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Image folder or CIFAR dir."),
    split: str = typer.Option("test", "--split", help="train, validation or test."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Evaluate a saved model on a dataset: accuracy, loss and per-class metrics."""
    raise CifarOpsError("`cifar-ops evaluate` is not built yet (issue #3)")


def predict(
    model: Path = typer.Argument(..., help="A saved .keras model."),
    images: list[Path] = typer.Argument(..., help="Image files of any size and mode."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Class probabilities for image files, resized to the model's input."""
    raise CifarOpsError("`cifar-ops predict` is not built yet (issue #3)")
