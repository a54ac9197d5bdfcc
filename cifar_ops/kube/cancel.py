"""`cifar-ops cancel EXPERIMENT`: delete its Jobs (so their pods) and mark its runs cancelled."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from cifar_ops.kube.cluster import Cluster, api_errors, call
from cifar_ops.kube.jobstate import run_ids_of
from cifar_ops.kube.naming import training_selector
from cifar_ops.kube.status import SETTLED, _plain
from cifar_ops.kube.storage import delete_claims
from cifar_ops.kube.studyjobs import is_study_job

Propagation = Literal["Foreground", "Background"]


@dataclass(frozen=True)
class CancelResult:
    experiment: str
    namespace: str
    jobs: list[str] = field(default_factory=list)
    cancelled_runs: list[str] = field(default_factory=list)
    still_terminating: list[str] = field(default_factory=list)  # Jobs not gone after the wait
    purged_claims: list[str] = field(default_factory=list)  # PersistentVolumeClaims deleted


def build_delete_options(propagation: Propagation = "Foreground") -> Any:
    """Delete options for a Job: Foreground waits for its pods to go before the Job does."""
    from kubernetes import client

    return client.V1DeleteOptions(propagation_policy=propagation, grace_period_seconds=30)


def cancel(
    cluster: Cluster,
    experiment: str,
    store: Any,
    propagation: Propagation = "Foreground",
    wait_seconds: float = 90.0,
    purge: bool = False,
) -> CancelResult:
    """Delete every training Job of the experiment; mark its open runs cancelled.

    A study search's runs are the ones its Job's pods registered under the Job's name (its
    annotation lists workers, not runs). The pods get SIGTERM (and 30 s) first and their
    runner records `preempted`; so this waits (up to `wait_seconds`) for the Jobs to be gone
    before it marks the runs `cancelled`, which then stays. A later submit queues the same run
    ids again (they resume from their checkpoints), skipping runs that succeeded. `purge` also
    deletes the experiment's claims (its checkpoints and models on them), which the chart keeps
    after the release is gone.
    """
    jobs = call(
        "list Jobs",
        cluster.batch.list_namespaced_job,
        cluster.namespace,
        label_selector=training_selector(experiment),
    )
    deleted: list[str] = []
    run_ids: set[str] = set()
    study_jobs: set[str] = set()
    for job in _plain(cluster.api_client, jobs):
        name = job["metadata"]["name"]
        call(
            f"delete Job {name}",
            cluster.batch.delete_namespaced_job,
            name,
            cluster.namespace,
            body=build_delete_options(propagation),
        )
        deleted.append(name)
        if is_study_job(job):  # it lists workers: its runs are the ones its pods registered
            study_jobs.add(name)
        else:
            run_ids.update(run_ids_of(job).values())
    with api_errors("wait for the deleted Jobs to go"):
        remaining = wait_until_gone(cluster, deleted, wait_seconds)
    cancelled = []
    for run in store.list_runs(experiment=experiment, limit=None):
        ours = run.run_id in run_ids or run.job_name in study_jobs or run.executor == "kubernetes"
        if run.status not in SETTLED and ours:
            store.set_status(run.run_id, "cancelled", "cancelled by `cifar-ops cancel`")
            cancelled.append(run.run_id)
    purged = delete_claims(cluster, experiment) if purge else []
    return CancelResult(experiment, cluster.namespace, deleted, cancelled, remaining, purged)


def wait_until_gone(cluster: Cluster, names: list[str], wait_seconds: float) -> list[str]:
    """Poll the deleted Jobs until the API no longer has them; the ones still there."""
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + wait_seconds
    remaining = list(names)
    while remaining:
        for name in list(remaining):
            try:
                cluster.batch.read_namespaced_job(name, cluster.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                remaining.remove(name)
        if not remaining or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    return remaining
