"""`status` and `cancel` of a search run through its Optuna study, against the fake Kubernetes
API: the Job lists workers, so the rows are the runs its pods registered, each at the completion
index of the pod the study says trains it (its `worker` attribute)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cifar_ops.config import load_config
from cifar_ops.kube import helm
from cifar_ops.kube.values import build_plan, build_values, study_worker_id
from cifar_ops.records import RunStart
from cifar_ops.search import worker
from cifar_ops.vocabulary import ExecutorKind
from cifar_ops.warehouse.store import Store
from tests.test_kube_entrypoint import TINY, TPE_SEARCH
from tests.test_kube_fake_api import NAMESPACE, PODS, add_job, add_pod, env, invoke, requests

pytestmark = pytest.mark.asyncio
__all__ = ["env"]  # the fake API and warehouse fixture
SHARED = "executor.values.artifacts.uri=s3://ml-bucket/searches"


def study_search(store: Store, tmp_path: Path, sqlite_url: str) -> tuple[Any, dict, list[Any]]:
    """A 3-trial TPE search as submit leaves it (study prepared, Job rendered), and the trials
    its pods 0, 1 and 2 asked for, each run registered running as the pod's runner does."""
    config = tmp_path / "tpe.yaml"
    config.write_text(TINY + TPE_SEARCH.replace("trials: 2", "trials: 3"))
    loaded = load_config(config, [SHARED])  # parallel pods: checkpoints on an object store
    plan = build_plan(loaded)
    worker.prepare(loaded, sqlite_url, store)
    docs = yaml.safe_load_all(helm.template(plan.release, build_values(plan), NAMESPACE))
    (job,) = [d for d in docs if d and d["kind"] == "Job"]
    job["metadata"]["namespace"] = NAMESPACE
    study = worker.SearchStudy(loaded, sqlite_url)
    asked = [study.ask(f"{plan.job_name}/{index}") for index in range(3)]
    for trial in asked:
        config_ = trial.trial.config
        start = RunStart(
            run_id=trial.run_id,
            experiment=plan.experiment,
            model_name=config_.model.name,
            config=config_.model_dump(mode="json"),
            config_hash=config_.config_hash(),
            trial_index=trial.trial.index,
            trial_number=trial.number,
            executor=ExecutorKind.KUBERNETES,
            job_name=plan.job_name,
        )
        store.register_queued([start])
        store.set_status(trial.run_id, "running")
    study.tell(asked[0], "succeeded", {"val_accuracy": 0.5, "val_loss": 1.0})
    store.set_status(asked[0].run_id, "succeeded")
    study.close()
    return plan, job, asked


async def test_status_shows_a_study_jobs_real_runs_and_fails_the_failed_indexs_run(
    kmock: Any, env: Store, tmp_path: Path, sqlite_url: str
) -> None:
    plan, job, asked = study_search(env, tmp_path, sqlite_url)
    status = {
        "startTime": "2030-01-01T00:00:00Z",
        "active": 1,
        "completedIndexes": "0",
        "failedIndexes": "1",  # its pod was OOM-killed until its retries ran out
    }
    add_job(kmock, job, status)
    add_pod(kmock, job, 2, "Running", "2030-01-01T00:00:02Z")

    result = await invoke("status", plan.experiment, "--json")
    assert result.exit_code == 0, result.output
    rows = {row["run_id"]: row for row in json.loads(result.output)["runs"]}
    assert rows.keys() == {trial.run_id for trial in asked}  # no worker id, nothing "missing"
    done, failed, running = (rows[trial.run_id] for trial in asked)
    assert (done["completion_index"], done["status"], done["job_state"]) == (
        0,
        "succeeded",
        "succeeded",
    )
    assert (failed["completion_index"], failed["status"], failed["reconciled"]) == (
        1,
        "failed",
        True,
    )
    assert failed["job_name"] == plan.job_name and "index failed" in failed["reason"]
    assert (running["completion_index"], running["status"], running["pod"]) == (
        2,
        "running",
        "Running",
    )
    assert env.get_run(asked[1].run_id).summary.status == "failed"
    assert env.get_run(asked[2].run_id).summary.status == "running"
    assert study_worker_id(plan.experiment, 1) not in rows


async def test_a_requeued_trials_run_is_not_failed_with_its_old_index(
    kmock: Any, env: Store, tmp_path: Path, sqlite_url: str
) -> None:
    """Index 1's pod vanished and its trial was queued again (no worker yet): the run will be
    resumed by whichever pod asks next, so index 1 failing does not fail it."""
    plan, job, asked = study_search(env, tmp_path, sqlite_url)
    study = worker.SearchStudy(load_config(tmp_path / "tpe.yaml", [SHARED]), sqlite_url)
    study.requeue(asked[1])
    study.close()
    add_job(kmock, job, {"startTime": "2030-01-01T00:00:00Z", "active": 1, "failedIndexes": "1"})

    result = await invoke("status", plan.experiment, "--json")
    assert result.exit_code == 0, result.output
    rows = {row["run_id"]: row for row in json.loads(result.output)["runs"]}
    requeued = rows[asked[1].run_id]
    assert requeued["completion_index"] is None and requeued["reconciled"] is False
    assert requeued["job_state"] == "running" and requeued["status"] == "running"
    assert env.get_run(asked[1].run_id).summary.status == "running"


async def test_status_fails_a_study_jobs_open_runs_when_the_job_fails(
    kmock: Any, env: Store, tmp_path: Path, sqlite_url: str
) -> None:
    plan, job, asked = study_search(env, tmp_path, sqlite_url)
    failed = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}
    add_job(kmock, job, {"startTime": "2030-01-01T00:00:00Z", "conditions": [failed]})
    result = await invoke("status", plan.experiment)
    assert result.exit_code == 0, result.output
    statuses = {run.run_id: run.status for run in env.list_runs(limit=None)}
    assert [statuses[trial.run_id] for trial in asked] == ["succeeded", "failed", "failed"]


async def test_cancel_marks_a_study_jobs_unfinished_runs_cancelled(
    kmock: Any, env: Store, tmp_path: Path, sqlite_url: str
) -> None:
    plan, job, asked = study_search(env, tmp_path, sqlite_url)
    add_job(kmock, job, {"active": 2})
    result = await invoke("cancel", plan.experiment, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["jobs"] == [plan.job_name]
    assert sorted(payload["cancelled_runs"]) == sorted(t.run_id for t in asked[1:])
    statuses = {run.run_id: run.status for run in env.list_runs(limit=None)}
    assert [statuses[trial.run_id] for trial in asked] == ["succeeded", "cancelled", "cancelled"]


async def test_logs_finds_a_study_trials_pod_through_its_worker(
    kmock: Any, env: Store, tmp_path: Path, sqlite_url: str
) -> None:
    """The Job's annotation names workers; the study's `worker` attribute names the trial's pod."""
    plan, job, asked = study_search(env, tmp_path, sqlite_url)
    add_job(kmock, job, {"startTime": "2030-01-01T00:00:00Z", "active": 2})
    add_pod(kmock, job, 1, "Running", "2030-01-01T00:00:01Z")
    trainer = add_pod(kmock, job, 2, "Running", "2030-01-01T00:00:02Z")
    log = kmock["get", PODS, kmock.subresource("log")]
    log << kmock.headers({"Content-Type": "text/plain"}) << (b"trial 2, epoch 1\n",)

    result = await invoke("logs", asked[2].run_id[:10])
    assert result.exit_code == 0, result.output
    assert result.output == "trial 2, epoch 1\n"
    (log_call,) = requests(kmock, "GET", f"/api/v1/namespaces/{NAMESPACE}/pods/{trainer}/log")
    assert log_call.params["container"] == "trainer"
    (pods_call,) = requests(kmock, "GET", f"/api/v1/namespaces/{NAMESPACE}/pods")
    assert pods_call.params["labelSelector"] == (
        f"batch.kubernetes.io/job-name={plan.job_name},batch.kubernetes.io/job-completion-index=2"
    )

    result = await invoke("logs", "f" * 12)  # neither a Job's id nor a study's run
    assert result.exit_code == 5 and "no Job in namespace ml runs" in result.output
