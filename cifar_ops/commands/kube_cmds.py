"""`submit`, `status`, `logs`, `cancel`: runs as Jobs on Kubernetes through the Helm chart."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Column, Table
from rich.text import Text

from cifar_ops.commands.output import JSON_OPTION, SET_OPTION, console, print_json

NAMESPACE_OPTION = typer.Option(None, "--namespace", "-n", help="Defaults to the kubeconfig's.")


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.command()(status)
    app.command()(logs)
    app.command()(cancel)


def submit(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Run or search config YAML (not with --score)."
    ),
    overrides: list[str] = SET_OPTION,
    namespace: str | None = NAMESPACE_OPTION,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print manifests, change nothing."),
    values_files: list[Path] = typer.Option(
        [],
        "--values",
        "-f",
        help="Chart values file merged over submit's (repeatable, later wins, as `helm -f`).",
    ),
    run_id: str | None = typer.Option(
        None, "--run-id", help="Id of a single run (32 hex digits); default: from the config hash."
    ),
    score: str | None = typer.Option(
        None,
        "--score",
        help="Instead of training, score images with this model (a path, URL, run id or "
        "models:/NAME@ALIAS) as a Job; with --data-dir.",
    ),
    data_dir: str | None = typer.Option(
        None,
        "--data-dir",
        help="--score: the folder or bucket prefix to score, as the pod sees it.",
    ),
    output: str | None = typer.Option(None, "--output", "-o", help="--score: where files go."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, max=8192, help="--score only."),
    top_k: int = typer.Option(3, "--top-k", min=1, help="--score only."),
    gpus: int | None = typer.Option(
        None, "--gpus", min=0, help="--score: GPUs of the pod (default 0: CPU; or job.gpus)."
    ),
    model_claim: str | None = typer.Option(
        None, "--model-claim", help="--score: an existing PVC holding the models (the runs')."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Submit a config as a GPU Job (a search as an Indexed Job), or a batch scoring
    (--score MODEL --data-dir DIR), through the Helm chart."""
    from cifar_ops.config import SearchConfig, load_config
    from cifar_ops.errors import UsageError
    from cifar_ops.executors import Launch, cluster_kind, executor_for

    if score is not None:
        if config is not None or overrides or run_id is not None:
            raise UsageError("--score submits a scoring: leave out --config, --set and --run-id")
        if data_dir is None:
            raise UsageError("--score needs --data-dir: the folder or bucket prefix to score")
        _submit_scoring(
            score, data_dir, output, batch_size, top_k, gpus, model_claim, namespace, dry_run,
            values_files, as_json,
        )  # fmt: skip
        return
    if config is None:
        raise UsageError("submit needs --config (a run or search), or --score MODEL --data-dir")
    loaded = load_config(config, overrides)
    base = loaded.run if isinstance(loaded, SearchConfig) else loaded
    executor = executor_for(cluster_kind(base.executor.kind))  # kind local: kubernetes
    result = executor.launch(
        loaded,
        Launch(
            config_path=config,
            namespace=namespace,
            dry_run=dry_run,
            values_files=values_files,
            run_id=run_id,
        ),
    )
    plan = result.plan
    runs = [
        {"run_id": run.run_id, "trial_index": run.trial_index, "params": run.params}
        for run in plan.runs
    ]
    if as_json:
        payload = {
            "experiment": plan.experiment,
            "release": plan.release,
            "job": plan.job_name if plan.runs else None,
            "namespace": result.namespace,
            "dry_run": result.dry_run,
            "runs": runs,
            "skipped_trials": plan.skipped,
        }
        if result.dry_run:
            payload["manifests"] = result.manifests
        print_json(payload)
        return
    if result.dry_run:
        typer.echo(result.manifests, nl=False)
        return
    if plan.skipped:
        skipped = len(plan.skipped)
        console.print(f"skipped {skipped} trial(s) that already succeeded: {plan.skipped}")
    if not plan.runs:
        console.print(f"nothing to submit: every trial of {plan.experiment} already succeeded")
        return
    ns = f" -n {result.namespace}" if result.namespace else ""
    console.print(
        Text.assemble(
            ("submitted", "green"),
            f" {plan.experiment}: release {plan.release}, Job {plan.job_name},"
            f" {len(plan.runs)} run(s)",
        )
    )
    for run in plan.runs:
        trial = f"  trial {run.trial_index}" if run.trial_index is not None else ""
        console.print(f"  {run.run_id}{trial}")
    console.print(
        f"follow: cifar-ops status {plan.experiment}{ns}  |  "
        f"cifar-ops logs {plan.runs[0].run_id[:8]} --follow{ns}  |  "
        f"cifar-ops cancel {plan.experiment}{ns}"
    )


def _submit_scoring(
    model: str,
    data_dir: str,
    output: str | None,
    batch_size: int,
    top_k: int,
    gpus: int | None,
    model_claim: str | None,
    namespace: str | None,
    dry_run: bool,
    values_files: list[Path],
    as_json: bool,
) -> None:
    from cifar_ops.kube import chartvalues
    from cifar_ops.kube.chartvalues import merge
    from cifar_ops.kube.score import ScoringPlan, submit_scoring
    from cifar_ops.scoring.run import ScoringRequest

    chart_values = chartvalues.values_files(values_files)
    if gpus is not None:
        chart_values = merge(chart_values, {"job": {"gpus": gpus}})
    plan = ScoringPlan(
        ScoringRequest(model, data_dir, output, batch_size, top_k),
        model_claim=model_claim or "",
        chart_values=chart_values,
    )
    result = submit_scoring(plan, namespace=namespace, dry_run=dry_run)
    plan = result.plan
    if as_json:
        payload = {
            "scoring": plan.name,
            "release": plan.release,
            "job": plan.job_name,
            "namespace": result.namespace,
            "dry_run": result.dry_run,
            "model": plan.request.model,
        }
        if result.dry_run:
            payload["manifests"] = result.manifests
        print_json(payload)
        return
    if result.dry_run:
        typer.echo(result.manifests, nl=False)
        return
    ns = f" -n {result.namespace}" if result.namespace else ""
    console.print(
        Text.assemble(
            ("submitted", "green"),
            f" scoring {plan.name} of {plan.request.model}: release {plan.release}, "
            f"Job {plan.job_name}",
        ),
        soft_wrap=True,
    )
    console.print(f"follow: kubectl logs job/{plan.job_name} -f{ns}", soft_wrap=True)


def status(
    experiment: str | None = typer.Argument(None, help="Limit to one experiment."),
    namespace: str | None = NAMESPACE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Job and pod state joined with the warehouse's run status, and the claims the runs keep;
    without an experiment, the scoring Jobs (`submit --score`) too."""
    from cifar_ops.errors import SubmitError
    from cifar_ops.kube.cluster import connect
    from cifar_ops.kube.status import collect_scorings, collect_status
    from cifar_ops.kube.storage import list_claims
    from cifar_ops.warehouse.store import open_store

    cluster = connect(namespace)
    rows = collect_status(cluster, experiment, open_store())
    scorings = collect_scorings(cluster) if experiment is None else None  # in no experiment
    try:  # the runs are the answer; claims a reader may not be allowed to list are an extra
        claims, unlisted = list_claims(cluster, experiment), None
    except SubmitError as exc:
        claims, unlisted = [], str(exc)
    if as_json:
        print_json(
            {
                "namespace": cluster.namespace,
                "runs": [row.__dict__ for row in rows],
                "scorings": None if scorings is None else [row.__dict__ for row in scorings],
                "claims": None if unlisted else [claim.__dict__ for claim in claims],
            }
        )
        return
    if not rows and not scorings:
        console.print(f"no runs on the cluster (namespace {cluster.namespace}) or in the warehouse")
    elif rows:
        print_runs(rows)
    print_scorings(scorings or [])
    print_claims(claims)
    if unlisted:
        console.print(Text(f"claims not listed: {unlisted}"))


def print_runs(rows: list[Any]) -> None:
    """Each run's Job, index and pod state beside its warehouse status (and why it failed)."""
    table = Table("run", "experiment", "job", "index", "job state", "pod", "warehouse", "status")
    for row in rows:
        index = "" if row.completion_index is None else str(row.completion_index)
        shown = row.status + ("*" if row.reconciled else "")
        table.add_row(
            row.run_id[:12],
            row.experiment,
            row.job_name or "-",
            index,
            row.job_state,
            row.pod,
            row.warehouse_status or "-",
            shown,
        )
    console.print(table)
    for row in rows:
        if row.reason and row.status == "failed":
            marked = " (* marked failed in the warehouse)" if row.reconciled else ""
            console.print(f"{row.run_id[:12]}: {row.reason}{marked}", soft_wrap=True)


def print_scorings(rows: list[Any]) -> None:
    """The scoring Jobs: Kubernetes' state only (their rows in the warehouse are the scores)."""
    if not rows:
        return
    table = Table("kind", "name", "job", "state", "pod")
    for row in rows:
        table.add_row(row.kind, row.name, row.job_name, row.state, row.pod)
    console.print(table)
    for row in rows:
        if row.reason and row.state == "failed":
            console.print(f"{row.name}: {row.reason}", soft_wrap=True)


SHORT_ACCESS_MODES = {  # as kubectl shows them
    "ReadWriteOnce": "RWO",
    "ReadOnlyMany": "ROX",
    "ReadWriteMany": "RWX",
    "ReadWriteOncePod": "RWOP",
}


def print_claims(claims: list[Any]) -> None:
    """The PersistentVolumeClaims the chart keeps (checkpoints, models, dataset cache)."""
    if not claims:
        return
    table = Table(Column("claim", no_wrap=True), "experiment", "phase", "size", "class", "access")
    for claim in claims:
        table.add_row(
            claim.name,
            claim.experiment,
            claim.phase,
            claim.size,
            claim.storage_class or "-",
            ",".join(SHORT_ACCESS_MODES.get(mode, mode) for mode in claim.access_modes),
        )
    console.print(table)
    console.print("kept after the runs end; remove with `cifar-ops cancel EXPERIMENT --purge`")


def logs(
    run_id: str = typer.Argument(..., help="Run id (or its first characters)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the pod ends."),
    namespace: str | None = NAMESPACE_OPTION,
) -> None:
    """Print the logs of a run's pod."""
    from cifar_ops.kube.cluster import connect
    from cifar_ops.kube.logs import stream_logs

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    stream_logs(connect(namespace), run_id, write, follow=follow)


def cancel(
    experiment: str = typer.Argument(..., help="Experiment to stop."),
    namespace: str | None = NAMESPACE_OPTION,
    purge: bool = typer.Option(
        False, "--purge", help="Also delete its claims: checkpoints and models on them are lost."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Stop an experiment's Jobs and mark its runs cancelled (--purge: delete its claims too)."""
    from cifar_ops.kube.cancel import cancel as cancel_experiment
    from cifar_ops.kube.cluster import connect
    from cifar_ops.warehouse.store import open_store

    result = cancel_experiment(connect(namespace), experiment, open_store(), purge=purge)
    if as_json:
        print_json(result.__dict__)
        return
    console.print(
        f"cancelled {experiment} in namespace {result.namespace}: deleted Job(s)"
        f" {', '.join(result.jobs) or 'none'}; {len(result.cancelled_runs)} run(s) marked cancelled"
    )
    if purge:
        console.print(f"deleted claim(s): {', '.join(result.purged_claims) or 'none'}")
    if result.still_terminating:
        console.print(
            f"still terminating: {', '.join(result.still_terminating)} (their pods may still"
            " record `preempted`; run `cifar-ops cancel` again once they are gone)"
        )
