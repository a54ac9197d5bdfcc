"""Study searches on Kubernetes: which real runs a study Job's pods train.

A search run through its Optuna study submits an Indexed Job of workers: its run-ids annotation
names the workers (`values.study_worker_id`), never a run. Each pod asks the study for a trial
and registers that trial's run (executor kubernetes, `job_name` the Job's). So a study Job's runs
are the warehouse runs with its job name, and the completion index a run's pod has is the
`worker` user attribute (`<job>/<index>`) of the newest Optuna trial carrying its run id (a trial
queued again after its pod died has no worker until another pod takes it).
"""

from __future__ import annotations

from typing import Any

from cifar_ops.errors import ConfigError, WarehouseError
from cifar_ops.kube.jobstate import run_ids_of
from cifar_ops.kube.naming import LABEL_EXPERIMENT
from cifar_ops.kube.values import study_worker_id


def experiment_of(job: dict[str, Any]) -> str:
    return ((job.get("metadata") or {}).get("labels") or {}).get(LABEL_EXPERIMENT, "")


def is_study_job(job: dict[str, Any]) -> bool:
    """The Job's annotation lists study workers (every id is its index's worker id)."""
    experiment, ids = experiment_of(job), run_ids_of(job)
    return bool(experiment and ids) and all(
        run_id == study_worker_id(experiment, index) for index, run_id in ids.items()
    )


def trial_workers(database_url: str, experiment: str) -> dict[str, str]:
    """Run id -> the worker (`<job>/<index>`) now training it, from the experiment's study; {}
    when there is no study to read (none yet, or Optuna's tables missing)."""
    from cifar_ops.search.storage import WORKER_ATTR, open_storage
    from cifar_ops.search.worker import ATTR_RUN_ID

    try:
        storage = open_storage(database_url)
    except (ConfigError, WarehouseError):
        return {}
    try:
        try:
            study_id = storage.get_study_id_from_name(experiment)
        except KeyError:
            return {}
        workers: dict[str, str | None] = {}
        trials = storage.get_all_trials(study_id, deepcopy=False)
        for trial in sorted(trials, key=lambda trial: trial.number):
            run_id = trial.user_attrs.get(ATTR_RUN_ID)
            if run_id:
                workers[run_id] = trial.user_attrs.get(WORKER_ATTR)
    finally:
        storage.engine.dispose()
    return {run_id: worker for run_id, worker in workers.items() if worker}


def worker_index(worker: str | None, job_name: str) -> int | None:
    """The completion index of a worker of this Job (None: another Job's, or none)."""
    job, _, index = (worker or "").rpartition("/")
    return int(index) if job == job_name and index.isdigit() else None
