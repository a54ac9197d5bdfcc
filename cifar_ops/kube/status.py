"""`cifar-ops status`: each run's Job and pod state joined with its warehouse status.

A run the warehouse still calls queued or running whose Job index has failed (or passed its
deadline) is marked failed in the warehouse with the Job's reason: the Job's terminal state is
the truth, not whether metrics stopped arriving.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cifar_ops.kube.cluster import Cluster, call
from cifar_ops.kube.jobstate import (
    IndexState,
    index_state,
    latest_pod,
    pod_summary,
    run_ids_of,
)
from cifar_ops.kube.naming import LABEL_EXPERIMENT, LABEL_JOB_NAME, training_selector
from cifar_ops.vocabulary import RunStatus

SETTLED = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.PRUNED}
)


@dataclass(frozen=True)
class RunStatusRow:
    run_id: str
    experiment: str
    job_name: str | None
    completion_index: int | None
    job_state: str  # pending | running | succeeded | failed | missing
    pod: str  # pod phase (and container reason), or "-"
    warehouse_status: str | None  # None: the warehouse has no such run
    status: str  # what the run is, all told
    reason: str | None = None
    reconciled: bool = False  # the warehouse was just updated to `status`


def _plain(api_client: Any, objects: Any) -> list[dict[str, Any]]:
    return [api_client.sanitize_for_serialization(item) for item in objects.items]


def fetch(cluster: Cluster, experiment: str | None) -> tuple[list[dict], list[dict]]:
    """The experiment's (or every) training Job and pod, as plain API dicts."""
    selector = training_selector(experiment)
    namespace = cluster.namespace
    jobs = call("list Jobs", cluster.batch.list_namespaced_job, namespace, label_selector=selector)
    pods = call("list pods", cluster.core.list_namespaced_pod, namespace, label_selector=selector)
    return _plain(cluster.api_client, jobs), _plain(cluster.api_client, pods)


def build_status_rows(
    jobs: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    runs: list[Any],
    now: datetime | None = None,
) -> list[RunStatusRow]:
    """Join Jobs and pods (by the run-ids annotation and completion index) with warehouse runs."""
    now = now or datetime.now(UTC)
    by_run = {run.run_id: run for run in runs}
    rows: list[RunStatusRow] = []
    seen: set[str] = set()
    for job in jobs:
        name = job["metadata"]["name"]
        experiment = (job["metadata"].get("labels") or {}).get(LABEL_EXPERIMENT, "")
        job_pods = [pod for pod in pods if _job_of(pod) == name]
        for index, run_id in sorted(run_ids_of(job).items()):
            seen.add(run_id)
            pod = latest_pod(job_pods, index)
            state = index_state(job, index, now, pod)
            run = by_run.get(run_id)
            rows.append(_row(run_id, experiment, name, index, state, pod, run))
    for run in runs:
        if run.run_id not in seen and run.executor == "kubernetes":
            missing = IndexState("missing")
            rows.append(_row(run.run_id, run.experiment, run.job_name, None, missing, None, run))
    return rows


def _job_of(pod: dict[str, Any]) -> str | None:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return labels.get(LABEL_JOB_NAME) or labels.get("job-name")


def _row(
    run_id: str,
    experiment: str,
    job_name: str | None,
    index: int | None,
    state: IndexState,
    pod: dict[str, Any] | None,
    run: Any,
) -> RunStatusRow:
    job_state, job_reason = state.state, state.reason
    warehouse = run.status if run is not None else None
    status, reason = warehouse or job_state, getattr(run, "status_reason", None)
    if job_state == "failed" and warehouse not in SETTLED:
        status, reason = "failed", job_reason
    elif warehouse is None or (job_state == "running" and warehouse in ("queued", "preempted")):
        status = job_state
    return RunStatusRow(
        run_id=run_id,
        experiment=experiment or getattr(run, "experiment", ""),
        job_name=job_name,
        completion_index=index,
        job_state=job_state,
        pod=pod_summary(pod),
        warehouse_status=warehouse,
        status=status,
        reason=reason,
    )


def reconcile(rows: list[RunStatusRow], store: Any) -> list[RunStatusRow]:
    """Write `failed` for runs whose Job failed while the warehouse still has them open."""
    updated = []
    for row in rows:
        stale = row.warehouse_status is not None and row.warehouse_status not in SETTLED
        if stale and row.status == "failed" and row.job_state == "failed":
            store.set_status(row.run_id, "failed", row.reason or "the Job failed")
            row = RunStatusRow(**{**row.__dict__, "reconciled": True})
        updated.append(row)
    return updated


def collect_status(
    cluster: Cluster, experiment: str | None, store: Any, now: datetime | None = None
) -> list[RunStatusRow]:
    """Everything `cifar-ops status` shows, with stale warehouse rows reconciled."""
    jobs, pods = fetch(cluster, experiment)
    runs = store.list_runs(experiment=experiment, limit=None)
    return reconcile(build_status_rows(jobs, pods, runs, now), store)
