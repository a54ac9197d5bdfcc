"""`cifar-ops submit --score`: the scoring Job the chart renders (dry run, kubernetes-validate),
the pod's entrypoint on the rendered ConfigMap, and a resubmission against the fake API."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from cifar_ops.cli import app
from cifar_ops.kube import helm
from cifar_ops.kube.score import ScoringPlan, build_score_values, pinned
from cifar_ops.scoring.run import ScoringRequest
from cifar_ops.warehouse import open_store, synthetic
from cifar_ops.warehouse.registry import Registry
from cifar_ops.warehouse.schema import score_rows
from jobs import entrypoint
from tests.conftest import REPO
from tests.serving_support import image_folder, train_tiny
from tests.test_kube_fake_api import JOBS, NAMESPACE, helm_called, requests, write_kubeconfig

K8S_VERSION = "1.35.0"


@pytest.fixture(autouse=True)
def _helm_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{REPO / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def manifests(*args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(app, ["submit", "--score", *args, "--dry-run", "-n", NAMESPACE])
    assert result.exit_code == 0, result.output
    return [doc for doc in yaml.safe_load_all(result.output) if doc]


def test_dry_run_renders_only_a_valid_scoring_job_on_cpu_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))  # a dry run needs no cluster
    args = ("models:/cifar-resnet@champion", "--data-dir", "s3://bucket/incoming/", "--top-k", "5")
    docs = manifests(*args)
    assert manifests(*args) == docs  # the same scoring renders the same names
    assert sorted(doc["kind"] for doc in docs) == ["ConfigMap", "Job", "ServiceAccount"]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    (job,) = [d for d in docs if d["kind"] == "Job"]
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    plan = ScoringPlan(ScoringRequest("models:/cifar-resnet@champion", "s3://bucket/incoming/",
                                      top_k=5))  # fmt: skip
    assert job["metadata"]["name"] == config_map["metadata"]["name"] == plan.job_name
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "scoring"
    spec = json.loads(config_map["data"]["score.json"])
    assert spec == {"model": "models:/cifar-resnet@champion", "data_dir": "s3://bucket/incoming/",
                    "output": None, "batch_size": 256, "top_k": 5}  # fmt: skip
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["--score"] and "command" not in container
    assert "nvidia.com/gpu" not in container["resources"]["limits"]

    values = tmp_path / "gpu.yaml"
    values.write_text(yaml.safe_dump({"job": {"resources": {"requests": {"cpu": "1"}}}}))
    gpu = manifests(*args, "--gpus", "1", "-f", str(values))
    (gpu_job,) = [d for d in gpu if d["kind"] == "Job"]
    (gpu_container,) = gpu_job["spec"]["template"]["spec"]["containers"]
    assert gpu_container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu_container["resources"]["requests"]["cpu"] == "1"
    assert gpu_job["metadata"]["name"] != job["metadata"]["name"]  # a new pod template


def test_submit_score_usage_errors(cli_runner: CliRunner) -> None:
    no_dir = cli_runner.invoke(app, ["submit", "--score", "m.keras", "--dry-run"])
    assert no_dir.exit_code == 2 and "--score needs --data-dir" in no_dir.output
    both = cli_runner.invoke(
        app, ["submit", "--score", "m.keras", "--data-dir", "d", "--config", "x.yaml"]
    )
    assert both.exit_code == 2 and "leave out --config" in both.output
    neither = cli_runner.invoke(app, ["submit", "--dry-run"])
    assert neither.exit_code == 2 and "submit needs --config" in neither.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    base = tmp_path_factory.mktemp("kube-score-model")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)
        patch.setenv("CIFAR_OPS_ARTIFACTS", str(base / "runs"))
        patch.setenv("CIFAR_OPS_DATA_CACHE", str(base / "cache"))
        yield train_tiny(base)


def mount_score_config_map(plan: ScoringPlan, run_dir: Path) -> Path:
    rendered = helm.template(plan.release, build_score_values(plan), NAMESPACE)
    (config_map,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ConfigMap"]
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, content in config_map["data"].items():
        (run_dir / name).write_text(content)
    return run_dir


def test_scoring_pod_runs_the_mounted_spec_and_a_retry_adds_no_rows(
    trained: dict, tmp_path: Path, database_url: str
) -> None:
    from cifar_ops.warehouse.migrate import upgrade_database

    upgrade_database(database_url)
    folder = image_folder(tmp_path / "images", count=9)
    request = ScoringRequest(trained["model"], str(folder), str(tmp_path / "out"), batch_size=4)
    run_dir = mount_score_config_map(ScoringPlan(request), tmp_path / "run")
    env = {"CIFAR_OPS_DATABASE_URL": database_url}
    assert entrypoint.main(["--run-dir", str(run_dir), "--score"], env) == 0
    assert entrypoint.main(["--run-dir", str(run_dir), "--score"], env) == 0  # a retried pod
    with open_store(database_url) as store, store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(score_rows)).scalar_one() == 9
    assert (tmp_path / "out" / "scores.parquet").is_file()

    (folder / "a" / "bad.png").write_bytes(b"\x89PNG broken")
    assert entrypoint.main(["--run-dir", str(run_dir), "--score"], env) == 3  # permanent
    (run_dir / "score.json").write_text(json.dumps({"model": "m", "nope": 1}))
    assert entrypoint.main(["--run-dir", str(run_dir), "--score"], env) == 2
    assert entrypoint.main(["--run-dir", str(run_dir), "--score"], {}) == 2  # no warehouse URL


def test_an_alias_is_pinned_to_its_version_when_submitted(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", sqlite_url)
    with open_store(sqlite_url) as store:
        start = synthetic.run_start("pin")
        store.start_run(start)
        store.finish_run(start.run_id, synthetic.finish())
        registry = Registry(store)
        registry.register(start.run_id, "pinned", alias="champion")
        registry.register(start.run_id, "pinned", alias="champion")
    request = ScoringRequest("models:/pinned@champion", "s3://b/p")
    assert pinned(request).model == "models:/pinned/2"
    assert pinned(replace(request, model="models:/pinned/1")).model == "models:/pinned/1"
    assert pinned(replace(request, model="m.keras")).model == "m.keras"


@pytest.mark.asyncio
async def test_resubmitting_a_finished_scoring_replaces_its_job_then_calls_helm(
    kmock: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", str(kmock.url))))
    request = ScoringRequest("s3://models/run/model.keras", "s3://bucket/incoming")
    plan = ScoringPlan(request)
    docs = yaml.safe_load_all(helm.template(plan.release, build_score_values(plan), NAMESPACE))
    (job,) = [d for d in docs if d and d["kind"] == "Job"]
    job["metadata"]["namespace"] = NAMESPACE
    kmock.objects[JOBS, NAMESPACE, plan.job_name] = {
        **job, "status": {"conditions": [{"type": "Complete", "status": "True"}]}
    }  # fmt: skip
    args = ["submit", "--score", request.model, "--data-dir", request.data_dir, "--json"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    # the fake is no Helm backend: helm's upgrade fails there, after its first request
    assert result.exit_code == 5, result.output
    assert f"`helm upgrade --install {plan.release}` failed" in result.output
    (delete_call,) = requests(
        kmock, "DELETE", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{plan.job_name}"
    )
    assert helm_called(kmock)
    helm_first = requests(kmock, "GET", f"/api/v1/namespaces/{NAMESPACE}/secrets")[0]
    assert delete_call.id < helm_first.id
