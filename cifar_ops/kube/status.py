"""`cifar-ops status`: each run's Job and pod state joined with its warehouse status.

A run the warehouse still calls queued or running whose Job index has failed (or passed its
deadline) is marked failed in the warehouse with the Job's reason: the Job's terminal state is
the truth, not whether metrics stopped arriving. A study search's Job lists workers, not runs:
its rows are the runs its pods registered, each at the index of the pod training it
(`kube.studyjobs`). Without an experiment, the scoring Jobs (`submit --score`) are listed too:
they belong to none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cifar_ops import settings
from cifar_ops.kube.cluster import Cluster, call
from cifar_ops.kube.jobstate import (
    IndexState,
    index_state,
    latest_pod,
    pod_summary,
    run_ids_of,
)
from cifar_ops.kube.naming import (
    LABEL_JOB_NAME,
    LABEL_SCORING,
    scoring_selector,
    training_selector,
)
from cifar_ops.kube.studyjobs import experiment_of, is_study_job, trial_workers, worker_index
from cifar_ops.vocabulary import RunStatus

SETTLED = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.PRUNED})


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


@dataclass(frozen=True)
class ScoreStatusRow:
    """A scoring Job (one pod): no run, no warehouse status, only what Kubernetes says."""

    name: str  # the scoring's name, `score-<digest>`
    job_name: str
    state: str  # pending | running | succeeded | failed
    pod: str
    reason: str | None = None
    kind: str = "score"


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
    workers: Mapping[str, Mapping[str, str]] | None = None,
) -> list[RunStatusRow]:
    """Join Jobs and pods (by the run-ids annotation and completion index) with warehouse runs;
    a study Job's by its name, at the index `workers` (experiment -> run id -> worker) gives."""
    now = now or datetime.now(UTC)
    by_run = {run.run_id: run for run in runs}
    rows: list[RunStatusRow] = []
    seen: set[str] = set()
    for job in jobs:
        name = job["metadata"]["name"]
        experiment = experiment_of(job)
        job_pods = [pod for pod in pods if _job_of(pod) == name]
        if is_study_job(job):
            study_workers = (workers or {}).get(experiment, {})
            for run in sorted(runs, key=lambda run: run.trial_index or 0):
                if run.job_name == name and run.experiment == experiment:
                    seen.add(run.run_id)
                    index = worker_index(study_workers.get(run.run_id), name)
                    rows.append(_study_row(job, job_pods, index, run, now))
            continue
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


def _study_row(
    job: dict[str, Any], pods: list[dict[str, Any]], index: int | None, run: Any, now: datetime
) -> RunStatusRow:
    """A study run at its pod's index; with no pod training it now, at the Job's own state."""
    name, experiment = job["metadata"]["name"], experiment_of(job)
    if index is not None:
        pod = latest_pod(pods, index)
        state = index_state(job, index, now, pod)
        return _row(run.run_id, experiment, name, index, state, pod, run)
    spec = {key: value for key, value in (job.get("spec") or {}).items() if key != "completionMode"}
    state = index_state({**job, "spec": spec}, 0, now)  # the Job's conditions, deadline, pods
    return _row(run.run_id, experiment, name, None, state, None, run)


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
    cluster: Cluster,
    experiment: str | None,
    store: Any,
    now: datetime | None = None,
    database_url: str | None = None,
) -> list[RunStatusRow]:
    """Everything `cifar-ops status` shows, with stale warehouse rows reconciled. A study Job's
    pods are matched to runs through the study beside the warehouse at `database_url`
    (default `CIFAR_OPS_DATABASE_URL`, where `open_store` opens it)."""
    jobs, pods = fetch(cluster, experiment)
    runs = store.list_runs(experiment=experiment, limit=None)
    workers = study_workers(jobs, database_url or settings.database_url())
    return reconcile(build_status_rows(jobs, pods, runs, now, workers), store)


def collect_scorings(cluster: Cluster, now: datetime | None = None) -> list[ScoreStatusRow]:
    """Every scoring Job in the namespace with its state and its newest pod's."""
    selector, namespace = scoring_selector(), cluster.namespace
    jobs = call(
        "list scoring Jobs",
        cluster.batch.list_namespaced_job,
        namespace,
        label_selector=selector,
    )
    pods = call(
        "list scoring pods", cluster.core.list_namespaced_pod, namespace, label_selector=selector
    )
    return build_score_rows(_plain(cluster.api_client, jobs), _plain(cluster.api_client, pods), now)


def build_score_rows(
    jobs: list[dict[str, Any]], pods: list[dict[str, Any]], now: datetime | None = None
) -> list[ScoreStatusRow]:
    now = now or datetime.now(UTC)
    rows = []
    for job in jobs:
        name = job["metadata"]["name"]
        pod = latest_pod([pod for pod in pods if _job_of(pod) == name], 0)
        state = index_state(job, 0, now, pod)
        labels = job["metadata"].get("labels") or {}
        scoring = labels.get(LABEL_SCORING, "")
        rows.append(ScoreStatusRow(scoring, name, state.state, pod_summary(pod), state.reason))
    return sorted(rows, key=lambda row: (row.name, row.job_name))


def study_workers(jobs: list[dict[str, Any]], database_url: str) -> dict[str, dict[str, str]]:
    """Experiment -> run id -> worker, for each experiment with a study Job among `jobs`."""
    studies = {experiment_of(job) for job in jobs if is_study_job(job)}
    return {experiment: trial_workers(database_url, experiment) for experiment in studies}
