"""Checks `submit` makes before it writes a row or calls helm, so a submission cannot destroy
another one: helm deletes every Job of the release that the new manifest no longer holds.
"""

from __future__ import annotations

from typing import Any

from cifar_ops.errors import ConfigError, SubmitError
from cifar_ops.kube.cluster import Cluster, call
from cifar_ops.kube.jobstate import job_finished
from cifar_ops.kube.naming import release_name, release_selector
from cifar_ops.kube.status import _plain


def active_jobs(cluster: Cluster, release: str) -> list[str]:
    """Names of the release's training Jobs that have not finished (their pods may be running)."""
    jobs = call(
        "list Jobs",
        cluster.batch.list_namespaced_job,
        cluster.namespace,
        label_selector=release_selector(release),
    )
    return sorted(
        job["metadata"]["name"] for job in _plain(cluster.api_client, jobs) if not job_finished(job)
    )


def require_no_active_job(cluster: Cluster, experiment: str) -> None:
    """Refuse to replace a release whose Job still runs: `helm upgrade` would delete it and its
    pods' runs would be left preempted with nothing to resume them."""
    release = release_name(experiment)
    running = active_jobs(cluster, release)
    if running:
        jobs = ("Jobs " if len(running) > 1 else "Job ") + ", ".join(running)
        raise SubmitError(
            f"{jobs} of release {release} (namespace {cluster.namespace}) has not finished, and"
            f" submitting again would delete it and stop its runs: wait for it to finish"
            f" (`cifar-ops status {experiment}`), or stop it first with"
            f" `cifar-ops cancel {experiment}`"
        )


def require_own_release(experiment: str, known: list[str], config_path: str | None = None) -> None:
    """Refuse an experiment whose release name another experiment in the warehouse already maps
    to (`a_b`, `a.b` and `A-b` are all `cifar-ops-a-b`): their submissions would replace each
    other's Jobs."""
    release = release_name(experiment)
    clashes = sorted(name for name in known if name != experiment and release_name(name) == release)
    if clashes:
        raise ConfigError(
            f"{experiment!r} maps to Helm release {release}, which experiment"
            f" {clashes[0]!r} in the warehouse already uses: rename it so that it differs after"
            " lower-casing, replacing characters other than a-z, 0-9 and '-', and cutting at"
            " 53 characters",
            path=config_path,
            key="experiment",
        )


def known_experiments(store: Any) -> list[str]:
    """Every experiment name the warehouse has."""
    return [summary.name for summary in store.experiments()]
