"""`status`, `logs` and `cancel` through the CLI and the real `kubernetes` client, against kmock's
HTTP-level fake Kubernetes API (seeded with Jobs the chart renders) and a real SQLite warehouse.
The assertions are on the requests the fake received: paths, label selectors, delete options."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from typer.testing import CliRunner

from cifar_ops.cli import app
from cifar_ops.config import load_config
from cifar_ops.kube import helm
from cifar_ops.kube.naming import (
    release_selector,
    scoring_selector,
    storage_selector,
    training_selector,
)
from cifar_ops.kube.values import SubmissionPlan, build_plan, build_run_starts, build_values
from cifar_ops.warehouse.store import Store, open_store
from tests.conftest import REPO

pytestmark = pytest.mark.asyncio
NAMESPACE = "ml"
GRID = REPO / "jobs" / "configs" / "grids" / "conv4_sgd.yaml"
JOBS = kmock.resource("batch/v1/jobs")
PODS = kmock.resource("v1/pods")
CLAIMS = kmock.resource("v1/persistentvolumeclaims")


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "users": [{"name": "me", "user": {"token": "not-a-secret"}}],
                "contexts": [
                    {
                        "name": "fake",
                        "context": {"cluster": "fake", "user": "me", "namespace": NAMESPACE},
                    }
                ],
                "current-context": "fake",
            }
        )
    )
    return path


@pytest.fixture
def env(
    kmock: kmock.KubernetesEmulator,
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Store:
    """KUBECONFIG at the fake (namespace `ml` from its context) and the warehouse at SQLite."""
    monkeypatch.setenv("PATH", f"{REPO / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", str(kmock.url))))
    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", sqlite_url)
    # a real API server filters lists by label selector; the emulator does not, so do it here
    kmock[kmock.action.LIST, JOBS] << (lambda request: _listing(kmock, JOBS, request))
    kmock[kmock.action.LIST, PODS] << (lambda request: _listing(kmock, PODS, request))
    kmock[kmock.action.LIST, CLAIMS] << (lambda request: _listing(kmock, CLAIMS, request))
    return open_store(sqlite_url)


def _listing(fake: Any, resource: Any, request: Any) -> dict[str, Any]:
    wanted = dict(
        part.split("=", 1) for part in request.params.get("labelSelector", "").split(",") if part
    )
    items = [
        obj.raw
        for (res, _namespace, _name), obj in fake.objects.items()
        if res == resource and not obj.deleted
        if wanted.items() <= (obj.raw["metadata"].get("labels") or {}).items()
    ]
    return {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": "1"},
        "items": items,
    }


def submitted(store: Store, config: Path) -> tuple[SubmissionPlan, dict[str, Any]]:
    """What `submit` leaves behind: queued runs, and the Job the chart renders for them."""
    plan = build_plan(load_config(config))
    store.register_queued(build_run_starts(plan))
    docs = yaml.safe_load_all(helm.template(plan.release, build_values(plan), NAMESPACE))
    (job,) = [d for d in docs if d and d["kind"] == "Job"]
    job["metadata"]["namespace"] = NAMESPACE
    return plan, job


def add_job(fake: Any, job: dict[str, Any], status: dict[str, Any]) -> None:
    fake.objects[JOBS, NAMESPACE, job["metadata"]["name"]] = {**job, "status": status}


def add_pod(fake: Any, job: dict[str, Any], index: int, phase: str, created: str) -> str:
    name = f"{job['metadata']['name']}-{index}-{created[-2:]}"
    labels = {
        **job["spec"]["template"]["metadata"]["labels"],
        "batch.kubernetes.io/job-name": job["metadata"]["name"],
        "batch.kubernetes.io/job-completion-index": str(index),
    }
    fake.objects[PODS, NAMESPACE, name] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": labels,
            "creationTimestamp": created,
        },
        "spec": {"containers": [{"name": "trainer", "image": "x"}]},
        "status": {"phase": phase},
    }
    return name


async def invoke(*args: str) -> Any:
    """The CLI in a worker thread: the sync client must not block the fake's event loop."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


def requests(fake: Any, method: str, path: str) -> list[Any]:
    return [r for r in list(fake) if r.method.value == method and r.url.path == path]


async def test_status_joins_job_indexes_pods_and_warehouse(kmock: Any, env: Store) -> None:
    plan, job = submitted(env, GRID)
    ids = [run.run_id for run in plan.runs]
    env.set_status(ids[0], "succeeded")
    env.set_status(ids[2], "running")  # its pod died silently: no more metrics, no finish_run
    env.set_status(ids[3], "running")
    status = {
        "startTime": "2030-01-01T00:00:00Z",
        "active": 1,
        "completedIndexes": "0-1",
        "failedIndexes": "2",
    }
    add_job(kmock, job, status)
    add_pod(kmock, job, 3, "Pending", "2030-01-01T00:00:01Z")
    add_pod(kmock, job, 3, "Running", "2030-01-01T00:05:02Z")  # the retry: the newest wins

    result = await invoke("status", "conv4-sgd-grid", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["namespace"] == NAMESPACE  # from the kubeconfig's context
    rows = {row["completion_index"]: row for row in payload["runs"]}
    assert len(rows) == 24
    assert rows[0]["status"] == "succeeded" and rows[0]["job_state"] == "succeeded"
    assert rows[1]["job_state"] == "succeeded" and rows[1]["warehouse_status"] == "queued"
    assert rows[2]["status"] == "failed" and rows[2]["reconciled"] is True
    assert rows[3]["status"] == "running" and rows[3]["pod"] == "Running"
    assert rows[4]["status"] == "queued" and rows[4]["job_state"] == "pending"  # no pod yet
    # the Job's verdict was written back, so the warehouse no longer says running
    assert env.get_run(ids[2]).summary.status == "failed"

    selector = training_selector("conv4-sgd-grid")
    (jobs_call,) = requests(kmock, "GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")
    (pods_call,) = requests(kmock, "GET", f"/api/v1/namespaces/{NAMESPACE}/pods")
    assert jobs_call.params["labelSelector"] == selector == pods_call.params["labelSelector"]


async def test_status_fails_a_run_whose_job_passed_its_deadline(kmock: Any, env: Store) -> None:
    plan, job = submitted(env, REPO / "jobs/configs/vgg10.yaml")
    env.set_status(plan.runs[0].run_id, "running")
    add_job(kmock, job, {"startTime": "2020-01-01T00:00:00Z", "active": 1})  # 86400 s long ago
    result = await invoke("status", "vgg10")
    assert result.exit_code == 0, result.output
    run_id = plan.runs[0].run_id
    assert f"{run_id[:12]}: DeadlineExceeded: ran past activeDeadlineSeconds=86400" in result.output
    assert "marked failed in the warehouse" in result.output
    assert env.get_run(plan.runs[0].run_id).summary.status == "failed"


async def test_logs_follow_streams_the_newest_pod_of_the_runs_index(kmock: Any, env: Store) -> None:
    plan, job = submitted(env, GRID)
    add_job(kmock, job, {"startTime": "2030-01-01T00:00:00Z", "active": 2})
    add_pod(kmock, job, 6, "Failed", "2030-01-01T00:00:01Z")
    newest = add_pod(kmock, job, 6, "Running", "2030-01-01T00:09:09Z")
    add_pod(kmock, job, 7, "Running", "2030-01-01T00:09:10Z")
    log = kmock["get", PODS, kmock.subresource("log")]
    log << kmock.headers({"Content-Type": "text/plain"}) << (b"epoch 1/30\n", b"epoch 2/30\n")

    result = await invoke("logs", plan.runs[6].run_id[:10], "--follow")
    assert result.exit_code == 0, result.output
    assert result.output == "epoch 1/30\nepoch 2/30\n"
    (log_call,) = requests(kmock, "GET", f"/api/v1/namespaces/{NAMESPACE}/pods/{newest}/log")
    assert log_call.params["follow"] == "true" and log_call.params["container"] == "trainer"
    (pods_call,) = requests(kmock, "GET", f"/api/v1/namespaces/{NAMESPACE}/pods")
    assert pods_call.params["labelSelector"] == (
        f"batch.kubernetes.io/job-name={plan.job_name},batch.kubernetes.io/job-completion-index=6"
    )


async def test_logs_of_an_unknown_run_exits_5(kmock: Any, env: Store) -> None:
    result = await invoke("logs", "0123abcd")
    assert result.exit_code == 5
    assert "no Job in namespace ml runs '0123abcd'" in result.output


async def test_cancel_deletes_the_experiments_jobs_and_marks_runs_cancelled(
    kmock: Any, env: Store
) -> None:
    plan, job = submitted(env, GRID)
    other_plan, other_job = submitted(env, REPO / "jobs/configs/fast.yaml")
    ids = [run.run_id for run in plan.runs]
    env.set_status(ids[0], "succeeded")
    env.set_status(ids[1], "running")
    add_job(kmock, job, {"active": 4})
    add_job(kmock, other_job, {"active": 1})

    result = await invoke("cancel", "conv4-sgd-grid", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["jobs"] == [plan.job_name]
    assert sorted(payload["cancelled_runs"]) == sorted(ids[1:])

    (list_call,) = requests(kmock, "GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")
    assert list_call.params["labelSelector"] == training_selector("conv4-sgd-grid")
    (delete_call,) = [r for r in list(kmock) if r.method.value == "DELETE"]
    assert delete_call.url.path == f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{plan.job_name}"
    assert delete_call.data["propagationPolicy"] == "Foreground"
    statuses = {run.run_id: run.status for run in env.list_runs(limit=None)}
    assert statuses[ids[0]] == "succeeded"  # a finished run keeps its result
    assert {statuses[i] for i in ids[1:]} == {"cancelled"}
    assert statuses[other_plan.runs[0].run_id] == "queued"  # another experiment is untouched
    assert (JOBS, NAMESPACE, other_job["metadata"]["name"]) in kmock.objects
    # it waited for the Job to be gone before marking the runs, so the pods' `preempted` is older
    (gone_check,) = requests(kmock, "GET", delete_call.url.path)
    assert gone_check.id > delete_call.id


async def test_cancel_reports_jobs_still_terminating(kmock: Any, env: Store) -> None:
    from cifar_ops.kube.cancel import cancel
    from cifar_ops.kube.cluster import connect

    plan, job = submitted(env, REPO / "jobs/configs/fast.yaml")
    job["metadata"]["finalizers"] = ["batch.kubernetes.io/job-tracking"]  # pods still going
    add_job(kmock, job, {"active": 1})
    result = await asyncio.to_thread(lambda: cancel(connect(), "fast", env, wait_seconds=0))
    assert result.still_terminating == [plan.job_name]
    assert result.cancelled_runs == [plan.runs[0].run_id]


async def test_api_refusal_is_a_clear_error(kmock: Any, env: Store) -> None:
    refusal = {"kind": "Status", "code": 403, "reason": "Forbidden"}
    kmock["get", JOBS].override << 403 << refusal
    result = await invoke("cancel", "conv4-sgd-grid")
    assert result.exit_code == 5
    assert "Kubernetes API refused to list Jobs: 403" in result.output
    assert "RBAC" in result.output and "Traceback" not in result.output


async def test_no_kubeconfig_is_a_clear_error(
    kmock: Any, env: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nowhere"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for command in (["status"], ["logs", "abc"], ["cancel", "x"]):
        result = await invoke(*command)
        assert result.exit_code == 5, result.output
        assert "no kubeconfig found" in result.output and "KUBECONFIG" in result.output
    assert list(kmock) == []


async def test_unreachable_cluster_is_a_clear_error(
    kmock: Any, env: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = write_kubeconfig(tmp_path / "down", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    result = await invoke("status")
    assert result.exit_code == 5
    assert "cannot reach the Kubernetes API to list Jobs" in result.output


def helm_called(fake: Any) -> bool:
    """helm's first request of an upgrade: its release records (Secrets owned by helm)."""
    return bool(requests(fake, "GET", f"/api/v1/namespaces/{NAMESPACE}/secrets"))


@pytest.mark.parametrize("status", [{"active": 3}, {"startTime": "2030-01-01T00:00:00Z"}])
async def test_submit_refuses_while_the_releases_job_still_runs(
    kmock: Any, env: Store, status: dict[str, Any]
) -> None:
    plan, job = submitted(env, GRID)
    add_job(kmock, job, status)  # running, or not started yet: no Complete/Failed condition
    before = {run.run_id: run.status for run in env.list_runs(limit=None)}

    result = await invoke("submit", "--config", str(GRID))
    assert result.exit_code == 5, result.output
    assert f"Job {plan.job_name} of release cifar-ops-conv4-sgd-grid" in result.output
    assert "cifar-ops cancel conv4-sgd-grid" in result.output
    assert "cifar-ops status conv4-sgd-grid" in result.output
    assert {run.run_id: run.status for run in env.list_runs(limit=None)} == before
    assert not helm_called(kmock)
    (list_call,) = requests(kmock, "GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")
    assert list_call.params["labelSelector"] == release_selector("cifar-ops-conv4-sgd-grid")


@pytest.mark.parametrize("condition", ["Complete", "Failed"])
async def test_resubmit_after_the_job_finished_registers_the_rest_and_calls_helm(
    kmock: Any, env: Store, condition: str
) -> None:
    earlier, job = submitted(env, GRID)
    for run in earlier.runs[:20]:
        env.set_status(run.run_id, "succeeded")
    add_job(kmock, job, {"conditions": [{"type": condition, "status": "True"}]})

    result = await invoke("submit", "--config", str(GRID))
    # the fake is no Helm backend: helm's upgrade fails there, after its first request
    assert result.exit_code == 5, result.output
    assert "`helm upgrade --install cifar-ops-conv4-sgd-grid` failed" in result.output
    assert helm_called(kmock)
    runs = {run.run_id: run for run in env.list_runs(experiment="conv4-sgd-grid", limit=None)}
    assert runs.keys() == {run.run_id for run in earlier.runs}  # ids derive from the config
    assert {runs[run.run_id].status for run in earlier.runs[:20]} == {"succeeded"}
    new = [runs[run.run_id] for run in earlier.runs[20:]]
    assert sorted(run.trial_index for run in new) == [20, 21, 22, 23]
    assert {run.status for run in new} == {"failed"}
    assert all("submit failed" in (run.status_reason or "") for run in new)
    assert {run.executor for run in new} == {"kubernetes"} and len({r.job_name for r in new}) == 1


async def test_submit_refuses_an_experiment_whose_release_another_one_has(
    kmock: Any, env: Store, tmp_path: Path
) -> None:
    fast = REPO / "jobs/configs/fast.yaml"
    other = build_plan(load_config(fast, ["experiment=Fast"]))  # release cifar-ops-fast too
    env.register_queued(build_run_starts(other))

    result = await invoke("submit", "--config", str(fast))
    assert result.exit_code == 2, result.output
    assert "fast.yaml: experiment: 'fast' maps to Helm release cifar-ops-fast" in result.output
    assert "experiment 'Fast' in the warehouse already uses" in result.output
    assert [run.experiment for run in env.list_runs(limit=None)] == ["Fast"]
    assert list(kmock) == []


def claim(experiment: str, name: str, modes: list[str]) -> dict[str, Any]:
    """A PersistentVolumeClaim as the chart labels it."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {
                "app.kubernetes.io/name": "cifar-ops",
                "app.kubernetes.io/component": "storage",
                "cifar-ops/experiment": experiment,
            },
        },
        "spec": {
            "accessModes": modes,
            "storageClassName": "nfs",
            "resources": {"requests": {"storage": "20Gi"}},
        },
        "status": {"phase": "Bound"},
    }


def add_claims(fake: Any) -> None:
    """The chart's claims of two experiments, and one claim the chart did not make."""
    for name, experiment in (("cifar-ops-vgg10-checkpoints", "vgg10"), ("fast-ck", "fast")):
        fake.objects[CLAIMS, NAMESPACE, name] = claim(experiment, name, ["ReadWriteMany"])
    foreign = claim("vgg10", "someone-elses", ["ReadWriteOnce"])
    foreign["metadata"]["labels"] = {"app": "db"}
    fake.objects[CLAIMS, NAMESPACE, "someone-elses"] = foreign


async def test_status_lists_the_claims_the_chart_keeps(kmock: Any, env: Store) -> None:
    add_claims(kmock)
    result = await invoke("status", "vgg10", "--json")
    assert result.exit_code == 0, result.output
    (listed,) = json.loads(result.output)["claims"]
    assert listed == {
        "name": "cifar-ops-vgg10-checkpoints",
        "experiment": "vgg10",
        "phase": "Bound",
        "size": "20Gi",
        "storage_class": "nfs",
        "access_modes": ["ReadWriteMany"],
    }
    (call,) = requests(kmock, "GET", f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims")
    assert call.params["labelSelector"] == storage_selector("vgg10")

    result = await invoke("status")  # every experiment, as a table
    assert result.exit_code == 0, result.output
    assert "cifar-ops-vgg10-checkpoints" in result.output and "fast-ck" in result.output
    assert "someone-elses" not in result.output and "--purge" in result.output


async def test_status_without_leave_to_list_claims_still_shows_the_runs(
    kmock: Any, env: Store
) -> None:
    plan, job = submitted(env, REPO / "jobs/configs/vgg10.yaml")
    add_job(kmock, job, {"active": 1})
    kmock["get", CLAIMS].override << 403 << {"kind": "Status", "code": 403, "reason": "Forbidden"}
    result = await invoke("status", "vgg10")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("┏")  # the runs' table came first
    assert "claims not listed: Kubernetes API refused to list PersistentVolumeClaims: 403" in (
        " ".join(result.output.split())
    )
    result = await invoke("status", "vgg10", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["claims"] is None
    assert [row["run_id"] for row in payload["runs"]] == [plan.runs[0].run_id]


async def test_cancel_purge_deletes_only_the_experiments_claims(kmock: Any, env: Store) -> None:
    add_claims(kmock)
    plan, job = submitted(env, REPO / "jobs/configs/vgg10.yaml")
    add_job(kmock, job, {"active": 1})

    result = await invoke("cancel", "vgg10")  # without --purge the claims stay
    assert result.exit_code == 0, result.output
    assert not requests(
        kmock, "DELETE", f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims/fast-ck"
    )
    assert all(
        r.method.value != "DELETE" or "persistentvolumeclaims" not in r.url.path
        for r in list(kmock)
    )

    result = await invoke("cancel", "vgg10", "--purge", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["purged_claims"] == ["cifar-ops-vgg10-checkpoints"]
    deleted = [
        r.url.path
        for r in list(kmock)
        if r.method.value == "DELETE" and "persistentvolumeclaims" in r.url.path
    ]
    assert deleted == [
        f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims/cifar-ops-vgg10-checkpoints"
    ]
    assert (CLAIMS, NAMESPACE, "fast-ck") in kmock.objects


async def test_resubmitting_a_failed_run_replaces_its_finished_job_under_the_same_ids(
    kmock: Any, env: Store
) -> None:
    """Same config, same run id and Job name: the finished Job is deleted so that helm creates
    it again (helm leaves an unchanged manifest alone), and the run is queued again."""
    plan, job = submitted(env, REPO / "jobs/configs/vgg10.yaml")
    run_id = plan.runs[0].run_id
    env.set_status(run_id, "failed", "OOMKilled")
    add_job(kmock, job, {"conditions": [{"type": "Failed", "status": "True"}]})
    job_path = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{plan.job_name}"

    result = await invoke("submit", "--config", str(REPO / "jobs/configs/vgg10.yaml"), "--json")
    # the fake is no Helm backend: helm's upgrade fails there, after its first request
    assert result.exit_code == 5, result.output
    (delete_call,) = requests(kmock, "DELETE", job_path)
    assert delete_call.data["propagationPolicy"] == "Background"
    assert helm_called(kmock)
    helm_first = requests(kmock, "GET", f"/api/v1/namespaces/{NAMESPACE}/secrets")[0]
    assert delete_call.id < helm_first.id
    (run,) = env.list_runs(experiment="vgg10", limit=None)
    assert run.run_id == run_id and "submit failed" in (run.status_reason or "")


async def test_resubmitting_a_succeeded_run_submits_nothing(kmock: Any, env: Store) -> None:
    plan, job = submitted(env, REPO / "jobs/configs/vgg10.yaml")
    env.set_status(plan.runs[0].run_id, "succeeded")
    add_job(kmock, job, {"conditions": [{"type": "Complete", "status": "True"}]})
    result = await invoke("submit", "--config", str(REPO / "jobs/configs/vgg10.yaml"))
    assert result.exit_code == 0, result.output
    assert "already succeeded" in result.output
    assert not [r for r in list(kmock) if r.method.value == "DELETE"]
    assert not helm_called(kmock)


async def test_an_explicit_run_id_held_by_another_config_is_refused(kmock: Any, env: Store) -> None:
    plan, _ = submitted(env, REPO / "jobs/configs/vgg10.yaml")
    config = str(REPO / "jobs/configs/vgg10.yaml")
    result = await invoke(
        "submit", "--config", config, "--set", "seed=7", "--run-id", plan.runs[0].run_id
    )
    assert result.exit_code == 2, result.output
    assert f"run id {plan.runs[0].run_id} already belongs to a run of 'vgg10'" in result.output
    assert not helm_called(kmock)
    assert len(env.list_runs(experiment="vgg10", limit=None)) == 1


async def test_helm_stderr_quoting_a_url_is_stored_and_shown_redacted(
    kmock: Any, env: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cifar_ops.errors import SubmitError

    def refuse(release: str, *args: Any) -> str:
        raise SubmitError(
            f"`helm upgrade --install {release}` failed: Error: pulling "
            "https://chartuser:hunter2@charts.example/cifar-ops-1.0.tgz: 401"
        )

    monkeypatch.setattr(helm, "upgrade_install", refuse)
    result = await invoke("submit", "--config", str(REPO / "jobs/configs/vgg10.yaml"))
    assert result.exit_code == 5, result.output
    assert "hunter2" not in result.output
    assert "Error: pulling https://chartuser:***@charts.example/cifar-ops-1.0.tgz" in result.output
    (run,) = env.list_runs(experiment="vgg10", limit=None)
    assert run.status == "failed" and "hunter2" not in (run.status_reason or "")
    assert "pulling https://chartuser:***@charts.example/" in (run.status_reason or "")


def scoring_job(fake: Any, model: str, status: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A scoring Job as `submit --score` renders it, seeded into the fake with `status`."""
    from cifar_ops.kube.score import ScoringPlan, build_score_values
    from cifar_ops.scoring.run import ScoringRequest

    plan = ScoringPlan(ScoringRequest(model, "s3://ml-bucket/incoming/"))
    docs = yaml.safe_load_all(helm.template(plan.release, build_score_values(plan), NAMESPACE))
    (job,) = [d for d in docs if d and d["kind"] == "Job"]
    job["metadata"]["namespace"] = NAMESPACE
    add_job(fake, job, status)
    return plan, job


async def test_status_lists_the_scoring_jobs_beside_the_runs(kmock: Any, env: Store) -> None:
    runs, job = submitted(env, REPO / "jobs/configs/vgg10.yaml")
    add_job(kmock, job, {"active": 1})
    running, scoring = scoring_job(kmock, "models:/cifar/1", {"active": 1})
    add_pod(kmock, scoring, 0, "Running", "2030-01-01T00:00:01Z")
    failed, _ = scoring_job(
        kmock,
        "models:/cifar/2",
        {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]},
    )

    result = await invoke("status", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert [row["run_id"] for row in payload["runs"]] == [runs.runs[0].run_id]
    shown = sorted(payload["scorings"], key=lambda row: row["job_name"] != running.job_name)
    assert shown == [
        {
            "kind": "score",
            "name": running.name,
            "job_name": running.job_name,
            "state": "running",
            "pod": "Running",
            "reason": None,
        },
        {
            "kind": "score",
            "name": failed.name,
            "job_name": failed.job_name,
            "state": "failed",
            "pod": "-",
            "reason": "BackoffLimitExceeded",
        },
    ]
    scoring_calls = [
        call
        for call in requests(kmock, "GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")
        if call.params["labelSelector"] == scoring_selector()
    ]
    assert len(scoring_calls) == 1

    result = await invoke("status")  # a table of its own
    assert result.exit_code == 0, result.output
    assert running.name in result.output and failed.name in result.output
    assert f"{failed.name}: BackoffLimitExceeded" in result.output

    result = await invoke("status", "vgg10", "--json")  # a scoring is in no experiment
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["scorings"] is None
