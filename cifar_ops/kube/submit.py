"""`cifar-ops submit`: validate, expand, register queued runs, then `helm upgrade --install`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cifar_ops.config import SearchConfig, load_config
from cifar_ops.errors import CifarOpsError, SubmitError
from cifar_ops.kube import cluster, helm, preflight
from cifar_ops.kube.values import SubmissionPlan, build_plan, build_run_starts, build_values


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
) -> SubmitResult:
    """Submit a run or search config as one release of the chart.

    A dry run renders the manifests and touches neither the warehouse nor the cluster. Otherwise
    helm and the kubeconfig are checked first, trials whose config hash already succeeded in the
    experiment are left out, and, before anything is written, the experiment must not share its
    release with another experiment, nor the release have a Job still running (helm would delete
    it). Then the rest are registered as queued runs and helm installs the release; if helm
    fails, those runs are marked failed with helm's message.
    """
    loaded = load_config(config_path, overrides)
    base = loaded.run if isinstance(loaded, SearchConfig) else loaded
    namespace = namespace or base.executor.namespace
    if dry_run:
        plan = build_plan(loaded)
        manifests = helm.template(plan.release, build_values(plan), namespace)
        return SubmitResult(plan=plan, namespace=namespace, dry_run=True, manifests=manifests)

    helm.find_helm()
    helm.chart_dir()
    cluster.require_kubeconfig(", or use --dry-run to only print the manifests")
    from cifar_ops.warehouse.store import open_store

    store = open_store(database_url)
    known = preflight.known_experiments(store)
    preflight.require_own_release(base.experiment, known, str(config_path))
    plan = build_plan(loaded, store.succeeded_hashes(base.experiment))
    if not plan.runs:
        return SubmitResult(plan=plan, namespace=namespace, dry_run=False)
    preflight.require_no_active_job(cluster.connect(namespace), base.experiment)
    values = build_values(plan)
    helm.template(plan.release, values, namespace)  # bad values fail here, before any row
    if isinstance(loaded, SearchConfig):
        store.register_search(
            loaded.experiment,
            method=loaded.search.method,
            parameters=loaded.search.model_dump(mode="json")["parameters"],
            trial_count=len(loaded.trials),
            description=base.description or None,
        )
    store.register_queued(build_run_starts(plan))
    try:
        output = helm.upgrade_install(plan.release, values, namespace)
    except CifarOpsError as exc:
        for run in plan.runs:
            store.set_status(run.run_id, "failed", f"submit failed: {exc}")
        raise SubmitError(str(exc)) from None
    return SubmitResult(
        plan=plan,
        namespace=namespace or cluster.kubeconfig_namespace(),
        dry_run=False,
        helm_output=output,
    )
