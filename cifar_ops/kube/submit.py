"""`cifar-ops submit`: validate, expand, register queued runs, then `helm upgrade --install`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cifar_ops.config import RunConfig, SearchConfig, load_config
from cifar_ops.errors import CifarOpsError, ConfigError, SubmitError
from cifar_ops.kube import chartvalues, cluster, helm, preflight
from cifar_ops.kube.storage import require_parallel_safe_storage
from cifar_ops.kube.values import (
    SubmissionPlan,
    build_plan,
    build_run_starts,
    build_values,
    explicit_run_id,
)
from cifar_ops.redaction import redact_text
from cifar_ops.search import register
from cifar_ops.vocabulary import RunStatus


@dataclass(frozen=True)
class SubmitResult:
    plan: SubmissionPlan
    namespace: str | None
    dry_run: bool
    manifests: str = ""  # `helm template` output (dry run)
    helm_output: str = ""  # `helm upgrade --install` output (NOTES.txt)


def submit(
    config_path: str | Path,
    overrides: list[str] | None = None,
    *,
    namespace: str | None = None,
    dry_run: bool = False,
    database_url: str | None = None,
    values_files: Sequence[Path] = (),
    run_id: str | None = None,
) -> SubmitResult:
    """Load a run or search config and submit it as one release of the chart."""
    loaded = load_config(config_path, overrides)
    return submit_loaded(
        loaded,
        config_path,
        namespace=namespace,
        dry_run=dry_run,
        database_url=database_url,
        values_files=values_files,
        run_id=run_id,
    )


def submit_loaded(
    loaded: RunConfig | SearchConfig,
    config_path: str | Path,
    *,
    namespace: str | None = None,
    dry_run: bool = False,
    database_url: str | None = None,
    values_files: Sequence[Path] = (),
    run_id: str | None = None,
) -> SubmitResult:
    """Submit a loaded run or search as one release of the chart (`config_path` names it in errors).

    The chart values are submit's, then `executor.values`, then each of `values_files` (merged as
    `helm -f` merges); values.schema.json checks the result. Run ids derive from the experiment,
    config hash and trial index (or are `run_id`), so a dry run renders the same manifests every
    time, and touches neither the warehouse nor the cluster. Otherwise helm and the kubeconfig
    are checked first, runs whose config hash already succeeded in the experiment are left out,
    and, before anything is written, the experiment must not share its release with another
    experiment, nor the release have a Job still running (helm would delete it). Then the rest
    are registered as queued runs (a failed, cancelled or preempted one is queued again under its
    id and resumes from its checkpoint) and helm installs the release; if helm fails, those runs
    are marked failed with helm's message.
    """
    base = loaded.run if isinstance(loaded, SearchConfig) else loaded
    namespace = namespace or base.executor.namespace
    chart_values = chartvalues.values_files(values_files)
    chosen_id = explicit_run_id(run_id) if run_id is not None else None
    everything = build_plan(loaded, run_id=chosen_id, chart_values=chart_values)
    _require_parallel_safe_storage(everything, build_values(everything), config_path)
    if dry_run:
        manifests = helm.template(everything.release, build_values(everything), namespace)
        return SubmitResult(plan=everything, namespace=namespace, dry_run=True, manifests=manifests)

    helm.find_helm()
    helm.chart_dir()
    cluster.require_kubeconfig(", or use --dry-run to only print the manifests")
    from cifar_ops.warehouse.store import open_store

    store = open_store(database_url)
    known = preflight.known_experiments(store)
    preflight.require_own_release(base.experiment, known, str(config_path))
    plan = build_plan(
        loaded,
        store.succeeded_hashes(base.experiment),
        run_id=chosen_id,
        chart_values=chart_values,
    )
    existing = {run.run_id: run for run in store.list_runs(experiment=base.experiment, limit=None)}
    plan = _leave_out_succeeded(plan, existing, str(config_path))
    if not plan.runs:
        return SubmitResult(plan=plan, namespace=namespace, dry_run=False)
    values = build_values(plan)
    connected = cluster.connect(namespace)
    preflight.require_no_active_job(connected, base.experiment)
    helm.template(plan.release, values, namespace)  # bad values fail here, before any row
    remove_finished_job(connected, plan.job_name)
    if isinstance(loaded, SearchConfig) and loaded.search.uses_study:
        from cifar_ops.search.worker import prepare  # Optuna: only for a study's search

        prepare(loaded, store.engine.url.render_as_string(hide_password=False), store)
    elif isinstance(loaded, SearchConfig):
        register(loaded, store)
    store.register_queued(build_run_starts(plan))
    for run in plan.runs:
        if getattr(existing.get(run.run_id), "status", None) in REQUEUED:
            store.set_status(run.run_id, "queued", "submitted again")
    try:
        output = helm.upgrade_install(plan.release, values, namespace)
    except CifarOpsError as exc:
        reason = redact_text(str(exc))  # helm's stderr can quote a repository or server URL
        for run in plan.runs:
            store.set_status(run.run_id, "failed", f"submit failed: {reason}")
        raise SubmitError(reason) from None
    return SubmitResult(
        plan=plan,
        namespace=namespace or cluster.kubeconfig_namespace(),
        dry_run=False,
        helm_output=output,
    )


# a resubmission queues these again
REQUEUED = frozenset({RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.PREEMPTED})


def _require_parallel_safe_storage(
    plan: SubmissionPlan, values: dict[str, Any], config_path: str | Path
) -> None:
    """Exit 2 before helm (whose own check in the chart would exit 5) and before the warehouse is
    opened; a plan without skipped trials has the most pods at once."""
    if plan.search:
        effective = chartvalues.effective(helm.chart_dir(), values)
        parallelism = int(chartvalues.lookup(effective, "run.parallelism", 1))
        require_parallel_safe_storage(effective, parallelism, str(config_path))


def _leave_out_succeeded(
    plan: SubmissionPlan, existing: dict[str, Any], config_path: str
) -> SubmissionPlan:
    """Drop runs whose id already succeeded; refuse an explicit id held with another config."""
    runs = []
    for run in plan.runs:
        held = existing.get(run.run_id)
        if held is not None and held.config_hash != run.config.config_hash():
            raise ConfigError(
                f"run id {run.run_id} already belongs to a run of {plan.experiment!r} with another"
                " config: give another --run-id, or none to derive it from the config",
                path=config_path,
            )
        if held is None or held.status != "succeeded":
            runs.append(run)
    return replace(plan, runs=runs) if len(runs) != len(plan.runs) else plan


def remove_finished_job(connected: cluster.Cluster, name: str, wait_seconds: float = 60.0) -> None:
    """Delete a finished Job that has this submission's name, so helm creates it afresh.

    The same submission renders the same Job; helm would leave a finished one as it is (its
    manifest did not change) and nothing would run.
    """
    from kubernetes.client.exceptions import ApiException

    from cifar_ops.kube.cancel import build_delete_options, wait_until_gone

    with cluster.api_errors(f"replace the finished Job {name}"):
        try:
            connected.batch.read_namespaced_job(name, connected.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        connected.batch.delete_namespaced_job(
            name, connected.namespace, body=build_delete_options("Background")
        )
        if wait_until_gone(connected, [name], wait_seconds):
            raise SubmitError(
                f"the finished Job {name} was deleted but is still there after {wait_seconds:.0f}"
                " s: submit again once it is gone"
            )
