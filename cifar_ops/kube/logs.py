"""`cifar-ops logs RUN`: the trainer container's log of a run's newest pod, optionally followed.

A Job's run-ids annotation names its runs, except a study search's: there it names workers, and
each pod asks the study for its trial at run time. Such a run's pod is the completion index of
the `worker` attribute (`<job>/<index>`) the study keeps on the run's newest trial, as `status`
finds it (`kube.studyjobs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cifar_ops import settings
from cifar_ops.errors import SubmitError
from cifar_ops.kube.cluster import Cluster, api_errors, call
from cifar_ops.kube.jobstate import latest_pod, run_ids_of
from cifar_ops.kube.naming import LABEL_COMPLETION_INDEX, LABEL_JOB_NAME, training_selector
from cifar_ops.kube.status import _plain, study_workers
from cifar_ops.kube.studyjobs import is_study_job, worker_index

CONTAINER = "trainer"


@dataclass(frozen=True)
class RunPod:
    run_id: str
    job_name: str
    completion_index: int
    pod_name: str


def build_pod_selector(job_name: str, completion_index: int | None) -> str:
    """Pods of one Job, or of one completion index of an Indexed Job."""
    selector = f"{LABEL_JOB_NAME}={job_name}"
    if completion_index is not None:
        selector += f",{LABEL_COMPLETION_INDEX}={completion_index}"
    return selector


def find_run_pod(cluster: Cluster, run_id: str, database_url: str | None = None) -> RunPod:
    """The Job holding the run (id or unique prefix) and the newest pod of its index; a study
    search's run through the study beside the warehouse at `database_url` (default
    `CIFAR_OPS_DATABASE_URL`), read only when no Job's annotation names the run."""
    jobs = call(
        "list Jobs",
        cluster.batch.list_namespaced_job,
        cluster.namespace,
        label_selector=training_selector(),
    )
    listed = _plain(cluster.api_client, jobs)
    matches = [
        (job, index, full_id)
        for job in listed  # a study Job's ids are its workers': `logs WORKER` finds that pod
        for index, full_id in run_ids_of(job).items()
        if full_id.startswith(run_id)
    ]
    if not matches:
        matches = _study_matches(listed, run_id, database_url or settings.database_url())
    if not matches:
        raise SubmitError(
            f"no Job in namespace {cluster.namespace} runs {run_id!r} (finished Jobs go after"
            " ttlSecondsAfterFinished; a study search's trial has a pod only while a worker"
            " trains it; `cifar-ops runs show` has what the warehouse kept)"
        )
    if len({full_id for _, _, full_id in matches}) > 1:
        raise SubmitError(f"run id prefix {run_id!r} is ambiguous: give more characters")
    job, index, full_id = matches[0]
    name = job["metadata"]["name"]
    indexed = (job.get("spec") or {}).get("completionMode") == "Indexed"
    pods = call(
        "list pods",
        cluster.core.list_namespaced_pod,
        cluster.namespace,
        label_selector=build_pod_selector(name, index if indexed else None),
    )
    pod = latest_pod(_plain(cluster.api_client, pods), index if indexed else 0)
    if pod is None:
        raise SubmitError(f"run {full_id} has no pod yet (Job {name}): try again shortly")
    return RunPod(full_id, name, index, pod["metadata"]["name"])


def _study_matches(
    jobs: list[dict[str, Any]], run_id: str, database_url: str
) -> list[tuple[dict[str, Any], int, str]]:
    """(Job, completion index, run id) of each study run matching `run_id` that a worker of one
    of these study Jobs trains now."""
    studies = {job["metadata"]["name"]: job for job in jobs if is_study_job(job)}
    matches = []
    for _, workers in sorted(study_workers(list(studies.values()), database_url).items()):
        for full_id, worker in workers.items():
            name = worker.rpartition("/")[0]
            index = worker_index(worker, name)
            if full_id.startswith(run_id) and name in studies and index is not None:
                matches.append((studies[name], index, full_id))
    return matches


def stream_logs(
    cluster: Cluster, run_id: str, write: Callable[[str], None], *, follow: bool = False
) -> RunPod:
    """Write the run's pod log through `write`; with `follow`, until the container ends."""
    target = find_run_pod(cluster, run_id)
    with api_errors(f"read the log of pod {target.pod_name}"):
        response = cluster.core.read_namespaced_pod_log(
            target.pod_name,
            cluster.namespace,
            container=CONTAINER,
            follow=follow,
            _preload_content=False,
        )
        try:
            for chunk in response.stream(decode_content=True):
                write(chunk.decode("utf-8", errors="replace"))
        finally:
            response.release_conn()
    return target
