"""The Helm chart, rendered by the real helm: lint, strict Kubernetes 1.35 schemas, values schema,
the platform and per-experiment uses, and the promises submit makes (GPU, labels, Secret ref)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cifar_ops.config import load_config
from cifar_ops.errors import SubmitError
from cifar_ops.kube import helm
from cifar_ops.kube.naming import training_selector
from cifar_ops.kube.values import build_plan, build_values
from tests.conftest import REPO

CHART = REPO / "charts" / "cifar-ops"
CONFIGS = sorted((REPO / "jobs" / "configs").rglob("*.yaml"))
K8S_VERSION = "1.35.0"  # kubernetes-validate ships schemas up to 1.37; the brief's target is 1.35
CRD_KINDS = {"PodMonitor", "PrometheusRule"}
SECRET_URL = "postgresql+psycopg2://trainer:hunter2@db.internal:5432/cifar"


@pytest.fixture(autouse=True)
def _helm_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{REPO / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}")


def render(values: dict[str, Any], release: str = "cifar-ops") -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(helm.template(release, values, "ml")) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def training_job(docs: list[dict[str, Any]]) -> dict[str, Any]:
    jobs = [
        doc
        for doc in of_kind(docs, "Job")
        if doc["metadata"]["labels"].get("app.kubernetes.io/component") == "training"
    ]
    assert len(jobs) == 1
    return jobs[0]


def validate_strictly(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            assert doc["metadata"]["name"] and doc["spec"]
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_helm_lint_passes() -> None:
    out = subprocess.run(
        [helm.find_helm(), "lint", "--strict", str(CHART)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_platform_install_has_hook_rbac_monitors_and_no_training_job() -> None:
    values = {"metrics": {"podMonitor": {"enabled": True}}, "prometheusRule": {"enabled": True}}
    docs = render(values)
    validate_strictly(docs)
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == sorted(
        ["ServiceAccount", "Role", "RoleBinding", "Job", "PodMonitor", "PrometheusRule"]
        + ["ConfigMap"]
    )
    (migrate,) = of_kind(docs, "Job")
    assert migrate["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    container = migrate["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["cifar-ops", "db", "upgrade"]  # Alembic, then Optuna's
    assert container["env"][0]["valueFrom"]["secretKeyRef"] == {
        "name": "cifar-ops-database",
        "key": "url",
    }
    (dashboards,) = of_kind(docs, "ConfigMap")
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = {p.name for p in (CHART / "files" / "dashboards").glob("*.json")}
    assert set(dashboards["data"]) == shipped
    (monitor,) = of_kind(docs, "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "training"
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    (rule,) = of_kind(docs, "PrometheusRule")
    shipped_groups = [
        group["name"]
        for path in sorted((CHART / "files" / "rules").glob("*.yaml"))
        for group in yaml.safe_load(path.read_text())["groups"]
    ]
    assert [group["name"] for group in rule["spec"]["groups"]] == shipped_groups


def test_role_is_least_privilege_for_status_logs_cancel() -> None:
    (role,) = of_kind(render({}), "Role")
    grants = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert grants == {
        ("batch", "jobs"): {"get", "list", "watch", "delete"},
        ("", "pods"): {"get", "list", "watch"},
        ("", "pods/log"): {"get"},
        ("", "configmaps"): {"get", "list"},
        ("", "persistentvolumeclaims"): {"get", "list", "delete"},  # status, cancel --purge
    }


def test_dashboards_and_rules_render_only_when_files_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chart = tmp_path / "cifar-ops"
    shutil.copytree(CHART, chart)
    for folder in ("dashboards", "rules"):
        for path in (chart / "files" / folder).iterdir():
            path.unlink()
    monkeypatch.setenv("CIFAR_OPS_CHART", str(chart))
    docs = render({"prometheusRule": {"enabled": True}})
    assert not of_kind(docs, "ConfigMap") and not of_kind(docs, "PrometheusRule")
    (chart / "files" / "dashboards" / "a.json").write_text('{"title": "{{run_id}}"}')
    (chart / "files" / "rules" / "r.yaml").write_text("groups: [{name: g, rules: []}]\n")
    docs = render({"prometheusRule": {"enabled": True}})
    (dashboards,) = of_kind(docs, "ConfigMap")
    assert dashboards["data"] == {"a.json": '{"title": "{{run_id}}"}'}  # not templated
    assert of_kind(docs, "PrometheusRule")[0]["spec"]["groups"] == [{"name": "g", "rules": []}]
    (chart / "files" / "rules" / "bad.yaml").write_text("rules: []\n")
    with pytest.raises(SubmitError, match="bad.yaml: a rules file needs a top-level `groups`"):
        render({"prometheusRule": {"enabled": True}})


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS[0].parent)))
def test_every_config_renders_valid_manifests(config: Path) -> None:
    loaded = load_config(config)
    plan = build_plan(loaded)
    docs = render(build_values(plan), plan.release)
    validate_strictly(docs)
    job = training_job(docs)
    assert job["metadata"]["name"] == plan.job_name
    assert sorted(doc["kind"] for doc in docs) == [
        "ConfigMap",
        "Job",
        "PersistentVolumeClaim",
        "ServiceAccount",
    ]


def test_search_is_an_indexed_job_with_one_completion_per_trial() -> None:
    plan = build_plan(load_config(REPO / "jobs/configs/grids/conv4_sgd.yaml"))
    docs = render(build_values(plan), plan.release)
    spec = training_job(docs)["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == 24 == len(plan.runs)
    assert spec["parallelism"] == 4
    assert spec["backoffLimitPerIndex"] == 3 and "backoffLimit" not in spec
    permanent = spec["podFailurePolicy"]["rules"][0]
    assert permanent["action"] == "FailIndex"
    assert permanent["onExitCodes"]["values"] == [2, 3, 6, 65]  # 65: diverged, no retry
    (config_map,) = of_kind(docs, "ConfigMap")
    assert len([key for key in config_map["data"] if key.startswith("trial-")]) == 24


def test_single_run_job_carries_gpu_labels_secret_ref_and_no_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", SECRET_URL)
    plan = build_plan(load_config(REPO / "jobs/configs/vgg10.yaml"))
    rendered = helm.template(plan.release, build_values(plan), "ml")
    assert "hunter2" not in rendered and SECRET_URL not in rendered
    job = training_job([doc for doc in yaml.safe_load_all(rendered) if doc])
    run_id = plan.runs[0].run_id
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels["cifar-ops/experiment"] == "vgg10"
        assert labels["cifar-ops/run-id"] == run_id
        assert labels["app.kubernetes.io/name"] == "cifar-ops"
        assert labels["app.kubernetes.io/instance"] == plan.release
    selector = dict(part.split("=") for part in training_selector("vgg10").split(","))
    assert selector.items() <= job["spec"]["template"]["metadata"]["labels"].items()
    spec = job["spec"]
    assert "completionMode" not in spec and spec["backoffLimit"] == 3
    fail_job = spec["podFailurePolicy"]["rules"][0]
    assert fail_job["action"] == "FailJob" and fail_job["onExitCodes"]["operator"] == "In"
    assert 65 in fail_job["onExitCodes"]["values"]  # a diverged run is not retried
    assert spec["podFailurePolicy"]["rules"][1] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget"}],
    }
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = {item["name"]: item for item in container["env"]}
    assert env["CIFAR_OPS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == (
        "cifar-ops-database"
    )
    assert "value" not in env["CIFAR_OPS_DATABASE_URL"]
    assert env["CIFAR_OPS_JOB_NAME"]["value"] == plan.job_name
    assert env["CIFAR_OPS_METRICS_ADDRESS"]["value"] == "0.0.0.0"  # Prometheus scrapes the pod IP
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert volumes["checkpoints"]["persistentVolumeClaim"]["claimName"].endswith("-checkpoints")
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert {"/dev/shm", "/tmp", "/var/lib/cifar-ops/runs", "/var/cache/cifar-ops"} <= mounts
    assert pod["automountServiceAccountToken"] is False


def test_optional_job_fields_render_only_when_set() -> None:
    plan = build_plan(load_config(REPO / "jobs/configs/fast.yaml"))
    values = build_values(plan)
    bare = training_job(render(values, plan.release))["spec"]["template"]["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert key not in bare
    values["job"].update(
        nodeSelector={"nvidia.com/gpu.present": "true"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        affinity={"nodeAffinity": {}},
        priorityClassName="batch-low",
        activeDeadlineSeconds=0,
        ttlSecondsAfterFinished=0,
    )
    job = training_job(render(values, plan.release))
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["priorityClassName"] == "batch-low"
    assert "activeDeadlineSeconds" not in job["spec"]
    assert "ttlSecondsAfterFinished" not in job["spec"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"job": {"gpus": -1}}, "/job/gpus"),
        ({"database": {"url": SECRET_URL}}, "additional properties 'url' not allowed"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"securityContext": {"allowPrivilegeEscalation": True}}, "allowPrivilegeEscalation"),
        ({"run": {"experiment": "x"}}, "missing properties 'submission', 'trials'"),
        ({"storage": {"shm": {"sizeLimit": "lots"}}}, "/storage/shm/sizeLimit"),
        ({"job": {"priorityClassName": "high\n  hostNetwork: true"}}, "/job/priorityClassName"),
        ({"image": {"repository": "evil/img\n  command: [sh]"}}, "/image/repository"),
        ({"job": {"nodeSelector": {"pool": "a: b"}}}, "/job/nodeSelector/pool"),
        ({"job": {"nodeSelector": {"a\nb": "x"}}}, "/job/nodeSelector"),
        ({"job": {"tolerations": [{"key": "a", "command": "id"}]}}, "/job/tolerations/0"),
        ({"job": {"extraEnv": [{"name": "A=B", "value": "1"}]}}, "/job/extraEnv/0/name"),
        ({"storage": {"checkpoints": {"storageClassName": "Fast SSD"}}}, "storageClassName"),
        ({"database": {"existingSecret": "db\nx: y"}}, "/database/existingSecret"),
    ],
)
def test_values_schema_rejects_bad_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(SubmitError) as caught:
        render(values)
    assert message in str(caught.value)
    assert "values don't meet the specifications of the schema" in str(caught.value)


def test_config_resources_reach_the_pod_as_valid_fields() -> None:
    digest = "sha256:" + "b" * 64
    overrides = [
        "resources.priority_class=batch-low",
        "resources.node_selector={nvidia.com/gpu.present: 'true'}",
        "resources.tolerations=[{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule},"
        " {key: spot, value: 'yes', effect: NoExecute, tolerationSeconds: 60}]",
        f"executor.image=registry.example.com:5000/ml/cifar-ops-gpu:1.0@{digest}",
    ]
    plan = build_plan(load_config(REPO / "jobs/configs/fast.yaml", overrides))
    docs = render(build_values(plan), plan.release)
    validate_strictly(docs)
    pod = training_job(docs)["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "batch-low"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "value": "yes", "effect": "NoExecute", "tolerationSeconds": 60},
    ]
    assert pod["containers"][0]["image"] == f"registry.example.com:5000/ml/cifar-ops-gpu@{digest}"


def test_pushgateway_credentials_reach_the_pod_from_a_secret_as_the_readme_says() -> None:
    plan = build_plan(load_config(REPO / "jobs/configs/fast.yaml"))
    values = build_values(plan)
    readme = (REPO / "README.md").read_text()
    snippet = readme.split("```yaml\njob:\n  extraEnv:\n", 1)[1].split("```", 1)[0]
    values["job"]["extraEnv"] = yaml.safe_load("job:\n  extraEnv:\n" + snippet)["job"]["extraEnv"]
    docs = render(values, plan.release)
    validate_strictly(docs)
    container = training_job(docs)["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in container["env"]}
    for name, key in (("USERNAME", "username"), ("PASSWORD", "password")):
        ref = env[f"CIFAR_OPS_PUSHGATEWAY_{name}"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "pushgateway-auth", "key": key}
