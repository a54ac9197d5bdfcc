"""What a submission trains, and the Helm values that say it to the chart (pure, no cluster)."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cifar_ops.config import RunConfig, SearchConfig
from cifar_ops.errors import UsageError
from cifar_ops.kube.chartvalues import merge
from cifar_ops.kube.naming import job_name, release_name
from cifar_ops.records import RunStart
from cifar_ops.search import Study
from cifar_ops.vocabulary import ExecutorKind, RunStatus

DEFAULT_METRICS_PORT = 9400  # charts/cifar-ops/values.yaml metrics.port


@dataclass(frozen=True)
class PlannedRun:
    """One pod's work: a warehouse run id and the resolved config it trains."""

    run_id: str
    config: RunConfig
    trial_index: int | None = None  # the search's trial index (not the Job's completion index)
    params: dict[str, Any] = field(default_factory=dict)
    study: SearchConfig | None = None  # a study worker: asks this search's study for its trial


@dataclass(frozen=True)
class SubmissionPlan:
    """A submission: one release per experiment, one Job whose completion indexes are `runs`."""

    experiment: str
    search: bool
    runs: list[PlannedRun]
    parallelism: int = 1
    skipped: list[int] = field(default_factory=list)  # trial indexes already succeeded
    chart_values: dict[str, Any] = field(default_factory=dict)  # the user's, merged over submit's

    @property
    def release(self) -> str:
        return release_name(self.experiment)

    @cached_property
    def submission(self) -> str:
        """Names the Job and ConfigMap: a digest of everything the release renders from, so the
        same submission renders the same names, and any change (a pod template is immutable)
        makes a new Job."""
        canonical = json.dumps(_values_without_submission(self), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:10]

    @property
    def job_name(self) -> str:
        return job_name(self.release, self.submission)

    @property
    def base_config(self) -> RunConfig:
        return self.runs[0].config


def derive_run_id(experiment: str, config_hash: str, trial_index: int | None = None) -> str:
    """A run's id from what it trains: the same config in the same experiment (and trial) always
    gets the same id, so renders repeat and a resubmitted run resumes its own checkpoint."""
    key = json.dumps([experiment, config_hash, trial_index])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def study_worker_id(experiment: str, index: int) -> str:
    """The id a study search's Job lists for completion index `index`: a worker, not a run (the
    run is the trial the worker asks for, `kube.studyjobs`)."""
    return derive_run_id(experiment, "study-worker", index)


def explicit_run_id(given: str) -> str:
    """A `--run-id` as the warehouse spells ids: 32 lowercase hex digits (a UUID will do)."""
    try:
        return uuid.UUID(given.strip()).hex
    except ValueError:
        raise UsageError(
            f"--run-id {given!r} is not a run id: give 32 hex digits (or a UUID)"
        ) from None


def build_plan(
    loaded: RunConfig | SearchConfig,
    succeeded_hashes: set[str] | frozenset[str] = frozenset(),
    *,
    run_id: str | None = None,
    chart_values: dict[str, Any] | None = None,
) -> SubmissionPlan:
    """Expand a config into runs, leaving out those whose hash already succeeded (a single run
    with an explicit `run_id` is always planned: a new id is a new run).

    Ids derive from the experiment, config hash and trial index (`derive_run_id`), or are
    `run_id` (a single run only). The plan's chart values are `executor.values` with
    `chart_values` (the `--values` files) over them.
    """
    base = loaded.run if isinstance(loaded, SearchConfig) else loaded
    chart_values = merge(base.executor.values, chart_values or {})
    if isinstance(loaded, RunConfig):
        config_hash = loaded.config_hash()
        if run_id is None and config_hash in succeeded_hashes:
            runs = []
        else:
            chosen = run_id or derive_run_id(loaded.experiment, config_hash)
            runs = [PlannedRun(run_id=chosen, config=loaded)]
        return SubmissionPlan(
            experiment=loaded.experiment, search=False, runs=runs, chart_values=chart_values
        )
    if run_id is not None:
        raise UsageError(
            "--run-id names a single run; a search's trial ids derive from its experiment,"
            " config hash and trial index"
        )
    if loaded.search.uses_study:
        return _study_plan(loaded, chart_values)
    study = Study(loaded, succeeded_hashes)
    runs = [
        PlannedRun(
            run_id=derive_run_id(loaded.experiment, trial.config.config_hash(), trial.index),
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
        chart_values=chart_values,
    )


def _study_plan(loaded: SearchConfig, chart_values: dict[str, Any]) -> SubmissionPlan:
    """A search run through its Optuna study: one completion per trial of the budget, each a
    worker that asks the study for its trial (`search.worker`); ids name the workers."""
    from cifar_ops.search.worker import SearchStudy

    runs = [
        PlannedRun(
            run_id=study_worker_id(loaded.experiment, index),
            config=loaded.run,
            study=loaded,
        )
        for index in range(SearchStudy.budget_of(loaded))
    ]
    return SubmissionPlan(
        experiment=loaded.experiment,
        search=True,
        runs=runs,
        parallelism=loaded.search.parallelism,
        chart_values=chart_values,
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
    """The JSON a pod reads from the ConfigMap (trial-<completion index>.json). A study worker's
    also has `study`: the search's spec and base YAML, from which the pod rebuilds the search."""
    document: dict[str, Any] = {
        "run_id": run.run_id,
        "experiment": experiment,
        "trial_index": run.trial_index,
        "params": run.params,
        "config": pod_config(run.config).model_dump(mode="json"),
    }
    if run.study is not None:  # the pod's executor and metrics port, as for a listed trial
        pod = document["config"]
        base = {**run.study.base, "executor": pod["executor"], "monitoring": pod["monitoring"]}
        document["study"] = {"search": run.study.search.model_dump(mode="json"), "base": base}
    return document


def build_values(plan: SubmissionPlan) -> dict[str, Any]:
    """Helm values for the per-experiment release: the run(s), resources, image and queue that
    submit derives, with the user's chart values (`plan.chart_values`) merged over them."""
    values = _values_without_submission(plan)
    values["run"]["submission"] = plan.submission
    return values


def _values_without_submission(plan: SubmissionPlan) -> dict[str, Any]:
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
    if base.executor.queue:
        values["job"]["queueName"] = base.executor.queue
    return merge(values, plan.chart_values)


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
    """The queued warehouse rows a submission registers, one per planned run (none for a study's
    workers: a trial's run is registered when a worker asks for it)."""
    return [
        RunStart(
            run_id=run.run_id,
            experiment=plan.experiment,
            model_name=run.config.model.name,
            config=run.config.model_dump(mode="json"),
            config_hash=run.config.config_hash(),
            status=RunStatus.QUEUED,
            trial_index=run.trial_index,
            trial_params=run.params or None,
            executor=ExecutorKind.KUBERNETES,
            job_name=plan.job_name,
        )
        for run in plan.runs
        if run.study is None
    ]
