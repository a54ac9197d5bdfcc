"""What a submission trains, and the Helm values that say it to the chart (pure, no cluster)."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from cifar_ops.config import RunConfig, SearchConfig
from cifar_ops.kube.naming import job_name, release_name
from cifar_ops.records import RunStart
from cifar_ops.search import Study
from cifar_ops.vocabulary import ExecutorKind

DEFAULT_METRICS_PORT = 9400  # charts/cifar-ops/values.yaml metrics.port


@dataclass(frozen=True)
class PlannedRun:
    """One pod's work: a warehouse run id and the resolved config it trains."""

    run_id: str
    config: RunConfig
    trial_index: int | None = None  # the search's trial index (not the Job's completion index)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SubmissionPlan:
    """A submission: one release per experiment, one Job whose completion indexes are `runs`."""

    experiment: str
    search: bool
    runs: list[PlannedRun]
    parallelism: int = 1
    skipped: list[int] = field(default_factory=list)  # trial indexes already succeeded

    @property
    def release(self) -> str:
        return release_name(self.experiment)

    @property
    def submission(self) -> str:
        """Stable id of this set of runs: names the Job and ConfigMap."""
        joined = ",".join(run.run_id for run in self.runs)
        return hashlib.sha256(joined.encode()).hexdigest()[:10]

    @property
    def job_name(self) -> str:
        return job_name(self.release, self.submission)

    @property
    def base_config(self) -> RunConfig:
        return self.runs[0].config


def build_plan(
    loaded: RunConfig | SearchConfig, succeeded_hashes: set[str] | frozenset[str] = frozenset()
) -> SubmissionPlan:
    """Expand a config into runs with fresh ids, leaving out trials whose hash already succeeded."""
    if isinstance(loaded, RunConfig):
        runs = [PlannedRun(run_id=uuid.uuid4().hex, config=loaded)]
        return SubmissionPlan(experiment=loaded.experiment, search=False, runs=runs)
    study = Study(loaded, succeeded_hashes)
    runs = [
        PlannedRun(
            run_id=uuid.uuid4().hex,
            config=trial.config,
            trial_index=trial.index,
            params=trial.params,
        )
        for trial in study.ask_all()  # one Indexed Job: every trial is decided now
    ]
    return SubmissionPlan(
        experiment=loaded.experiment,
        search=True,
        runs=runs,
        parallelism=loaded.search.parallelism,
        skipped=[trial.index for trial in study.skipped],
    )


def pod_config(config: RunConfig, metrics_port: int = DEFAULT_METRICS_PORT) -> RunConfig:
    """The config as the pod runs it: kubernetes executor, /metrics on the chart's port.

    Both sections are left out of the config hash, so the recipe is the one submitted.
    """
    executor = config.executor.model_copy(update={"kind": ExecutorKind.KUBERNETES})
    updates: dict[str, Any] = {"executor": executor}
    if config.monitoring.port is None:
        updates["monitoring"] = config.monitoring.model_copy(update={"port": metrics_port})
    return config.model_copy(update=updates)


def build_trial_document(run: PlannedRun, experiment: str) -> dict[str, Any]:
    """The JSON a pod reads from the ConfigMap (trial-<completion index>.json)."""
    return {
        "run_id": run.run_id,
        "experiment": experiment,
        "trial_index": run.trial_index,
        "params": run.params,
        "config": pod_config(run.config).model_dump(mode="json"),
    }


def build_values(plan: SubmissionPlan) -> dict[str, Any]:
    """Helm values for the per-experiment release: the run(s), resources and image."""
    base = plan.base_config
    resources = base.resources
    deadline = resources.active_deadline_seconds or 0
    if plan.search and deadline:
        # the Job's deadline covers every wave of `parallelism` trials
        deadline *= math.ceil(len(plan.runs) / max(plan.parallelism, 1))
    values: dict[str, Any] = {
        "platform": {"enabled": False},
        "run": {
            "experiment": plan.experiment,
            "submission": plan.submission,
            "search": plan.search,
            "parallelism": min(plan.parallelism, max(len(plan.runs), 1)),
            "trials": [
                {
                    "runId": run.run_id,
                    "trial": json.dumps(build_trial_document(run, plan.experiment), sort_keys=True),
                }
                for run in plan.runs
            ],
        },
        "job": {
            "gpus": resources.gpus,
            "backoffLimit": resources.backoff_limit,
            "activeDeadlineSeconds": deadline,
            "resources": {
                "requests": {"cpu": resources.cpu, "memory": resources.memory},
                "limits": {"memory": resources.memory},
            },
            "nodeSelector": dict(resources.node_selector),
            "tolerations": [toleration.to_pod_spec() for toleration in resources.tolerations],
            "priorityClassName": resources.priority_class or "",
        },
    }
    if base.executor.image:
        values["image"] = build_image_values(base.executor.image)
    return values


def build_image_values(reference: str) -> dict[str, str]:
    """`repo[:tag][@sha256:...]` (already checked by grammar.ImageReference) as the chart's
    image.repository / tag / digest; a digest pins the image, so a tag beside it is dropped."""
    name, _, digest = reference.partition("@")
    repository, _, tag = name.rpartition(":")
    if not repository or "/" in tag:  # no tag: the colon, if any, was a registry port
        repository, tag = name, ""
    if digest:
        return {"repository": repository, "digest": digest}
    return {"repository": repository, "tag": tag} if tag else {"repository": repository}


def build_run_starts(plan: SubmissionPlan) -> list[RunStart]:
    """The queued warehouse rows a submission registers, one per planned run."""
    return [
        RunStart(
            run_id=run.run_id,
            experiment=plan.experiment,
            model_name=run.config.model.name,
            config=run.config.model_dump(mode="json"),
            config_hash=run.config.config_hash(),
            status="queued",
            trial_index=run.trial_index,
            trial_params=run.params or None,
            executor=ExecutorKind.KUBERNETES,
            job_name=plan.job_name,
        )
        for run in plan.runs
    ]
