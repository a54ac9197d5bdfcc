"""`submit --values` and `executor.values` through the CLI and the real helm: every template reads
them, renders repeat byte for byte, and a parallel search without shared storage is refused."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from cifar_ops.cli import app
from cifar_ops.config import load_config
from cifar_ops.kube import helm
from cifar_ops.kube.chartvalues import merge
from cifar_ops.kube.values import build_plan, build_values, derive_run_id
from tests.conftest import REPO

GRID = str(REPO / "jobs" / "configs" / "grids" / "conv4_sgd.yaml")
VGG = str(REPO / "jobs" / "configs" / "vgg10.yaml")
CLUSTER_VALUES = str(REPO / "jobs" / "values" / "cluster.yaml")  # README's example
K8S_VERSION = "1.35.0"
RWO = "executor.values.storage.checkpoints.accessModes=[ReadWriteOnce]"


@pytest.fixture(autouse=True)
def _tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", f"{REPO / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))  # a dry run needs none


def dry_run(cli_runner: CliRunner, *args: str) -> list[dict[str, Any]]:
    result = cli_runner.invoke(app, ["submit", "--dry-run", *args])
    assert result.exit_code == 0, result.output
    docs = [doc for doc in yaml.safe_load_all(result.output) if doc]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    return docs


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def pod_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (job,) = of_kind(docs, "Job")
    return job["spec"]["template"]["spec"]


def write(path: Path, values: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_values_file_reaches_every_template(cli_runner: CliRunner) -> None:
    docs = dry_run(cli_runner, "--config", GRID, "--values", CLUSTER_VALUES)
    (job,) = of_kind(docs, "Job")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    pod = pod_of(docs)
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["key"] == "nvidia.com/gpu.product"
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/ml/cifar-ops-gpu:0.1.0"
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "2" and env["CIFAR_OPS_ARTIFACTS"].startswith("/")
    # the platform release's account, shared: no ServiceAccount of the experiment's own
    assert pod["serviceAccountName"] == "cifar-ops" and not of_kind(docs, "ServiceAccount")
    (claim,) = of_kind(docs, "PersistentVolumeClaim")
    assert claim["spec"]["storageClassName"] == "nfs-rwx"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["metadata"]["labels"]["app.kubernetes.io/component"] == "storage"


def test_later_values_files_win_as_with_helm(cli_runner: CliRunner, tmp_path: Path) -> None:
    own_account = write(
        tmp_path / "own-account.yaml",
        {
            "serviceAccount": {
                "create": True,
                "name": "",
                "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/trainer"},
            },
            "image": {"tag": "0.2.0"},  # maps merge: the repository stays
            "job": {"extraEnv": [{"name": "A", "value": "1"}]},  # lists are replaced
        },
    )
    docs = dry_run(cli_runner, "--config", VGG, "--values", CLUSTER_VALUES, "-f", own_account)
    (account,) = of_kind(docs, "ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/trainer"
    }
    assert account["imagePullSecrets"] == [{"name": "regcred"}]
    pod = pod_of(docs)
    assert pod["serviceAccountName"] == account["metadata"]["name"] == "cifar-ops-vgg10"
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/ml/cifar-ops-gpu:0.2.0"
    names = [item["name"] for item in container["env"]]
    assert "A" in names and "TF_CPP_MIN_LOG_LEVEL" not in names


def test_config_values_and_queue_then_files_over_them(
    cli_runner: CliRunner, tmp_path: Path
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        f"base: {VGG}\n"
        "executor:\n"
        "  queue: team-a\n"
        "  values:\n"
        "    imagePullSecrets: [{name: from-config}]\n"
        "    storage: {checkpoints: {storageClassName: standard}}\n"
    )
    docs = dry_run(cli_runner, "--config", str(config))
    (job,) = of_kind(docs, "Job")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert pod_of(docs)["imagePullSecrets"] == [{"name": "from-config"}]
    (claim,) = of_kind(docs, "PersistentVolumeClaim")
    assert claim["spec"]["storageClassName"] == "standard"
    docs = dry_run(cli_runner, "--config", str(config), "--values", CLUSTER_VALUES)
    assert pod_of(docs)["imagePullSecrets"] == [{"name": "regcred"}]
    (job,) = of_kind(docs, "Job")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"


@pytest.mark.parametrize("config", [VGG, GRID], ids=["run", "search"])
def test_two_dry_runs_render_identical_manifests(cli_runner: CliRunner, config: str) -> None:
    args = ["submit", "--config", config, "--dry-run", "--values", CLUSTER_VALUES]
    first, second = (cli_runner.invoke(app, args) for _ in range(2))
    assert first.exit_code == second.exit_code == 0, first.output
    assert first.output == second.output
    loaded = load_config(config)
    trials = getattr(loaded, "trials", None)
    expected = (
        [derive_run_id(loaded.experiment, t.config.config_hash(), t.index) for t in trials]
        if trials
        else [derive_run_id(loaded.experiment, loaded.config_hash())]
    )
    assert all(run_id in first.output for run_id in expected)
    assert len(set(expected)) == len(expected)


def test_names_follow_what_changes(cli_runner: CliRunner) -> None:
    def job_and_runs(*extra: str) -> tuple[str, list[str]]:
        docs = dry_run(cli_runner, "--config", VGG, *extra)
        (job,) = of_kind(docs, "Job")
        (config_map,) = of_kind(docs, "ConfigMap")
        assert config_map["metadata"]["name"] == job["metadata"]["name"]
        return job["metadata"]["name"], [job["metadata"]["labels"]["cifar-ops/run-id"]]

    job, runs = job_and_runs()
    # a pod-template change (resources are not hashed) is a new Job, the same run
    more_cpu, same_runs = job_and_runs("--set", "resources.cpu=8")
    assert more_cpu != job and same_runs == runs
    # but more GPUs with a per-replica batch train a larger global batch: another run
    _, more_gpus_runs = job_and_runs("--set", "resources.gpus=2")
    assert more_gpus_runs != runs
    # another recipe is another run
    _, other_runs = job_and_runs("--set", "seed=7")
    assert other_runs != runs
    given = "0123456789abcdef0123456789abcdef"
    named_job, named = job_and_runs("--run-id", "01234567-89AB-CDEF-0123-456789ABCDEF")
    assert named == [given] and named_job != job


def test_parallel_search_without_shared_storage_is_refused(
    cli_runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "wh.db"
    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", f"sqlite:///{database}")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    for extra in (["--dry-run"], []):
        result = cli_runner.invoke(app, ["submit", "--config", GRID, "--set", RWO, *extra])
        assert result.exit_code == 2, result.output
        message = " ".join(result.output.split())
        assert "search.parallelism: 4 pods at once" in message
        assert "checkpoint claim is ReadWriteOnce" in message
        assert "artifacts.uri" in message and "ReadWriteMany" in message
        assert "existingClaim" in message
    assert not database.exists()  # refused before the warehouse was opened


@pytest.mark.parametrize(
    "fix",
    [
        "executor.values.artifacts.uri=s3://ml-bucket/cifar-ops",
        "executor.values.storage.checkpoints.existingClaim=shared-rwx",
        "executor.values.storage.checkpoints.accessModes=[ReadWriteMany]",
        "search.parallelism=1",
    ],
)
def test_each_fix_lets_the_search_through(cli_runner: CliRunner, fix: str) -> None:
    docs = dry_run(cli_runner, "--config", GRID, "--set", RWO, "--set", fix)
    claims = of_kind(docs, "PersistentVolumeClaim")
    pod = pod_of(docs)
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    env = {item["name"]: item.get("value") for item in pod["containers"][0]["env"]}
    if "artifacts.uri" in fix:  # an object store: scratch on an emptyDir, no claim at all
        assert not claims
        assert volumes["checkpoints"]["emptyDir"] == {"sizeLimit": "20Gi"}
        assert env["CIFAR_OPS_ARTIFACTS"] == "s3://ml-bucket/cifar-ops"
        assert env["CIFAR_OPS_SCRATCH_DIR"] == "/var/lib/cifar-ops/runs"
    elif "existingClaim" in fix:
        assert not claims
        assert volumes["checkpoints"]["persistentVolumeClaim"]["claimName"] == "shared-rwx"
    else:
        assert len(claims) == 1


def test_bad_values_exit_with_helms_message_before_anything(
    cli_runner: CliRunner, tmp_path: Path
) -> None:
    bad = write(tmp_path / "bad.yaml", {"job": {"gpus": -1}, "imagePullSecrets": [{"x": 1}]})
    result = cli_runner.invoke(app, ["submit", "--config", VGG, "--dry-run", "--values", bad])
    assert result.exit_code == 5
    assert "values don't meet the specifications of the schema" in result.output
    assert "/job/gpus" in result.output and "/imagePullSecrets/0" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("run: {trials: []}\n", "chart value `run` cannot be set here"),
        ("platform: {enabled: true}\n", "chart value `platform` cannot be set here"),
        ("- a\n- b\n", "a values file is a mapping of chart values"),
        ("job: [unclosed\n", "not YAML"),
    ],
)
def test_unusable_values_files_exit_2(
    cli_runner: CliRunner, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(content)
    result = cli_runner.invoke(app, ["submit", "--config", VGG, "--dry-run", "--values", str(path)])
    assert result.exit_code == 2, result.output
    assert f"--values {path}: {message}" in " ".join(result.output.split())
    missing = tmp_path / "missing.yaml"
    result = cli_runner.invoke(app, ["submit", "--config", VGG, "-f", str(missing), "--dry-run"])
    assert result.exit_code == 2 and "cannot read the file" in result.output


def test_config_values_and_queue_are_validated(cli_runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"base: {VGG}\nexecutor: {{values: {{run: {{}}}}}}\n")
    result = cli_runner.invoke(app, ["validate", "--config", str(config)])
    assert result.exit_code == 2
    assert "executor.values" in result.output and "`run` cannot be set here" in result.output
    config.write_text(f"base: {VGG}\nexecutor: {{queue: 'team a'}}\n")
    result = cli_runner.invoke(app, ["validate", "--config", str(config)])
    assert result.exit_code == 2 and "executor.queue" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", VGG, "--run-id", "not-hex"], "--run-id 'not-hex' is not a run id"),
        (["--config", GRID, "--run-id", "0" * 32], "--run-id names a single run"),
    ],
)
def test_bad_run_id_exits_2(cli_runner: CliRunner, args: list[str], message: str) -> None:
    result = cli_runner.invoke(app, ["submit", "--dry-run", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_merge_is_helms_merge_of_values_files(tmp_path: Path) -> None:
    """Our one merged file renders exactly what helm renders from the files given separately."""
    first = {
        "run": {
            "experiment": "probe",
            "submission": "abcdef0123",
            "trials": [{"runId": "0" * 32, "trial": "{}"}],
        },
        "image": {"repository": "registry.example.com/a", "tag": "1"},
        "imagePullSecrets": [{"name": "one"}, {"name": "two"}],
        "job": {"nodeSelector": {"pool": "gpu"}, "podLabels": {"team": "ml"}},
    }
    second = {
        "image": {"tag": "2"},
        "imagePullSecrets": [{"name": "three"}],
        "job": {"nodeSelector": {"zone": "a"}, "podLabels": None},
        "storage": {"checkpoints": {"size": "5Gi"}},
    }

    def template(*files: dict[str, Any]) -> str:
        command = [helm.find_helm(), "template", "probe", str(helm.chart_dir())]
        for index, values in enumerate(files):
            command += ["-f", write(tmp_path / f"{index}.yaml", values)]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        return result.stdout

    merged = merge(first, second)
    assert merged["job"]["nodeSelector"] == {"pool": "gpu", "zone": "a"}
    assert template(merged) == template(first, second)
    assert "team:" not in template(merged)  # null removes a default, as with helm


def test_plans_repeat_and_an_explicit_id_is_a_new_run() -> None:
    search = load_config(GRID)
    first, second = build_plan(search), build_plan(search)
    assert [run.run_id for run in first.runs] == [run.run_id for run in second.runs]
    assert build_values(first) == build_values(second) and first.job_name == second.job_name
    single = load_config(VGG)
    done = {single.config_hash()}
    assert build_plan(single, done).runs == []  # the same run already succeeded
    (again,) = build_plan(single, done, run_id="f" * 32).runs  # a new id: a new run
    assert again.run_id == "f" * 32
