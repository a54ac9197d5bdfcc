"""`submit`, `status`, `logs`, `cancel`: runs as Jobs on Kubernetes (issue #5 fills the bodies)."""

from __future__ import annotations

from pathlib import Path

import typer

from cifar_ops.commands.output import JSON_OPTION
from cifar_ops.errors import CifarOpsError

NAMESPACE_OPTION = typer.Option(None, "--namespace", "-n", help="Defaults to the kubeconfig's.")


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.command()(status)
    app.command()(logs)
    app.command()(cancel)


def submit(
    config: Path = typer.Option(..., "--config", "-c", help="Run or search config YAML."),
    overrides: list[str] = typer.Option(None, "--set", help="Override a config key."),
    namespace: str | None = NAMESPACE_OPTION,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print manifests, change nothing."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Submit a config as a GPU Job (a search as an Indexed Job) through the Helm chart."""
    raise CifarOpsError("`cifar-ops submit` is not built yet (issue #5)")


def status(
    experiment: str | None = typer.Argument(None, help="Limit to one experiment."),
    namespace: str | None = NAMESPACE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Job and pod state joined with the warehouse's run status."""
    raise CifarOpsError("`cifar-ops status` is not built yet (issue #5)")


def logs(
    run_id: str = typer.Argument(..., help="Run id (or its first characters)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the pod ends."),
    namespace: str | None = NAMESPACE_OPTION,
) -> None:
    """Print the logs of a run's pod."""
    raise CifarOpsError("`cifar-ops logs` is not built yet (issue #5)")


def cancel(
    experiment: str = typer.Argument(..., help="Experiment to stop."),
    namespace: str | None = NAMESPACE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Stop an experiment's Jobs and mark its runs cancelled."""
    raise CifarOpsError("`cifar-ops cancel` is not built yet (issue #5)")
