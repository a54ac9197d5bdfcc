"""`forget-metrics`: delete finished runs' groups from the Pushgateway."""

from __future__ import annotations

import typer

from cifar_ops.commands.output import JSON_OPTION, console, print_json


def register(app: typer.Typer) -> None:
    app.command("forget-metrics")(forget_metrics)


def forget_metrics(
    run_ids: list[str] = typer.Argument(None, help="Finished runs (ids or unique prefixes)."),
    experiment: str | None = typer.Option(None, "--experiment", "-e", help="All its runs."),
    pushgateway: str | None = typer.Option(
        None, "--pushgateway", help="Gateway URL; default: the one each run was configured with."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Delete finished runs' Pushgateway groups (it keeps them forever otherwise)."""
    from cifar_ops.errors import UsageError
    from cifar_ops.monitoring.forget import forget_run_metrics
    from cifar_ops.redaction import has_credentials, redact_url
    from cifar_ops.warehouse.store import open_store

    if pushgateway is not None and has_credentials(pushgateway):
        raise UsageError(
            f"--pushgateway {redact_url(pushgateway)!r}: give the URL without a user or password; "
            "set CIFAR_OPS_PUSHGATEWAY_USERNAME and CIFAR_OPS_PUSHGATEWAY_PASSWORD instead"
        )

    with open_store() as store:
        result = forget_run_metrics(
            store, run_ids or [], experiment=experiment, gateway=pushgateway
        )
    if as_json:
        print_json(
            {
                "deleted": [{"run_id": r, "pushgateway": g} for r, g in result.deleted],
                "skipped": [{"run_id": r, "reason": why} for r, why in result.skipped],
            }
        )
        return
    for run_id, gateway in result.deleted:
        console.print(f"deleted {run_id} from {gateway}", highlight=False)
    for run_id, why in result.skipped:
        console.print(f"skipped {run_id}: {why}", highlight=False)
    if not result.deleted and not result.skipped:
        console.print("no runs matched")
