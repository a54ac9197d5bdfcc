"""Hostile text in values cannot become pod spec: the config models and values.schema.json refuse
it, and a chart rendered with the schema switched off still holds only the keys it defines, the
hostile text as plain string values (the real helm in .tools/bin)."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from cifar_ops.cli import app
from cifar_ops.kube import helm
from tests.conftest import REPO

CHART = REPO / "charts" / "cifar-ops"
K8S_VERSION = "1.35.0"
CRD_KINDS = {"PodMonitor", "PrometheusRule"}
MARK = "INJECTED"
# newlines at pod-spec and container indentation, `: `, a template, both quotes, a comment, a list
HOSTILE = (
    f"\n      hostNetwork: true\n          command: [sh, -c, id]\n{MARK}: {{{{ .Release.Name }}}}"
    " 'single' \"double\" # comment\n- x: y:1.0"
)
AFFINITY = ("job", "affinity")
SHA = "sha256:" + "a" * 64
# Dicts whose keys are the user's text (labels, annotations, selectors, resource names).
USER_MAPS = {
    ("serviceAccount", "annotations"),
    ("job", "nodeSelector"),
    ("job", "podAnnotations"),
    ("job", "podLabels"),
    ("job", "resources", "requests"),
    ("job", "resources", "limits"),
    ("migrations", "resources", "requests"),
    ("migrations", "resources", "limits"),
    ("metrics", "podMonitor", "labels"),
    ("dashboards", "labels"),
    ("dashboards", "annotations"),
    ("prometheusRule", "labels"),
}
# Free text the schema lets through: it only ever reaches a manifest quoted or through toYaml
# (so does all of job.affinity, whose content Kubernetes checks).
FREE_TEXT = {
    ("serviceAccount", "annotations", "example.com/role"),
    ("job", "podAnnotations", "example.com/owner"),
    ("dashboards", "annotations", "grafana_folder"),
    ("job", "extraEnv", 0, "value"),
    ("rbac", "extraSubjects", 0, "name"),
    ("run", "trials", 0, "trial"),
    ("run", "trials", 1, "trial"),
    ("score", "spec"),
    ("podSecurityContext", "seccompProfile", "localhostProfile"),
}


SCORE = {
    "name": "score-0123456789",
    "submission": "fedcba9876",
    "spec": json.dumps({"model": "models:/cifar-resnet@champion", "data_dir": "s3://b/in/"}),
    "modelClaim": "shared-models",
}


def trial(run_id: str) -> str:
    return json.dumps({"run_id": run_id, "config": {"experiment": "probe"}})


def benign_values(search: bool) -> dict[str, Any]:
    """Values that reach every template and every optional block of the chart."""
    run_ids = ["0" * 31 + "1", "0" * 31 + "2"]
    storage_claims = {"existingClaim": "shared-claim"} if search else {}
    # an object store in the search (no checkpoint claim); the run keeps its claims
    artifacts = {"artifacts": {"uri": "s3://ml-bucket/cifar-ops/runs"}} if search else {}
    # the run's release also scores (a scoring release has no `run`; both render here)
    scoring = {} if search else {"score": SCORE}
    return {
        **artifacts,
        **scoring,
        "nameOverride": "trainer" if search else "",
        "fullnameOverride": "" if search else "probe-ops",
        "image": {
            "repository": "registry.example.com:5000/ml/cifar-ops-gpu",
            "tag": "0.1.0",
            "digest": "" if search else SHA,
            "pullPolicy": "IfNotPresent",
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "database": {"existingSecret": "warehouse-url", "secretKey": "url"},
        "platform": {"enabled": True},
        "serviceAccount": {
            "create": not search,
            "name": "trainer-sa",
            "annotations": {"example.com/role": "trainer"},
        },
        "rbac": {
            "create": True,
            "extraSubjects": [
                {
                    "kind": "Group",
                    "name": "ml-team",
                    "namespace": "ml",
                    "apiGroup": "rbac.authorization.k8s.io",
                }
            ],
        },
        "migrations": {
            "enabled": True,
            "backoffLimit": 2,
            "activeDeadlineSeconds": 600,
            "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "512Mi"}},
        },
        "run": {
            "experiment": "probe",
            "submission": "abcdef0123",
            "search": search,
            "parallelism": 2,
            "trials": [{"runId": run_id, "trial": trial(run_id)} for run_id in run_ids],
        },
        "job": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": 3600,
            "ttlSecondsAfterFinished": 600,
            "podFailurePolicy": {"enabled": True, "permanentExitCodes": [2, 3]},
            "gpus": 1,
            "resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "16Gi"}},
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                {
                    "key": "spot",
                    "operator": "Equal",
                    "value": "yes",
                    "effect": "NoExecute",
                    "tolerationSeconds": 60,
                },
            ],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "zone", "operator": "In", "values": ["a"]}
                                ]
                            }
                        ]
                    }
                }
            },
            "priorityClassName": "batch-low",
            "podAnnotations": {"example.com/owner": "ml"},
            "podLabels": {"team": "ml"},
            "extraEnv": [{"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"}],
            "queueName": "gpu-queue",
        },
        "storage": {
            "checkpoints": {
                **storage_claims,
                "size": "20Gi",
                "storageClassName": "fast-ssd",
                "accessModes": ["ReadWriteOnce"],
            },
            "datasetCache": {
                **storage_claims,
                "persistent": True,
                "size": "10Gi",
                "storageClassName": "fast-ssd",
                "accessModes": ["ReadWriteOnce"],
            },
            "scratch": {"sizeLimit": "20Gi"},
            "shm": {"sizeLimit": "2Gi"},
            "tmp": {"sizeLimit": "4Gi"},
        },
        "metrics": {
            "port": 9400,
            "scrapeAnnotations": True,
            "podMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
        },
        "dashboards": {
            "enabled": True,
            "labels": {"grafana_dashboard": "1"},
            "annotations": {"grafana_folder": "cifar-ops"},
        },
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        "podSecurityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/train.json"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def scalar_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every string or number leaf of the values (booleans steer templates, they carry no text)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from scalar_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from scalar_paths(item, (*path, index))
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield path


def poisoned(values: dict[str, Any], paths: list[tuple[Any, ...]], keys: bool) -> dict[str, Any]:
    """`values` with HOSTILE appended to the leaves at `paths` and, if `keys`, to user map keys."""
    result = copy.deepcopy(values)
    for path in paths:
        parent = result
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = f"{parent[path[-1]]}{HOSTILE}"
    if keys:
        for path in USER_MAPS:
            parent = result
            for part in path[:-1]:
                parent = parent[part]
            parent[path[-1]] = {f"{k}{HOSTILE}": v for k, v in parent[path[-1]].items()}
    return result


def helm_template(
    values: dict[str, Any], schema: bool = True, namespace: str = "ml"
) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "values.json"
        path.write_text(json.dumps(values))
        command = [
            helm.find_helm(),
            "template",
            "probe",
            str(CHART),
            "-n",
            namespace,
            "-f",
            str(path),
        ]
        if not schema:
            command.append("--skip-schema-validation")
        return subprocess.run(command, capture_output=True, text=True, timeout=120)


def rendered(
    values: dict[str, Any], schema: bool = True, namespace: str = "ml"
) -> dict[tuple[str, int], Any]:
    """The manifests by (template file, position in it), parsed as YAML."""
    result = helm_template(values, schema, namespace)
    assert result.returncode == 0, result.stderr
    docs: dict[tuple[str, int], Any] = {}
    for text in re.split(r"^---\s*$", result.stdout, flags=re.MULTILINE):
        source = re.search(r"^# Source: (\S+)$", text, flags=re.MULTILINE)
        doc = yaml.safe_load(text)
        if source and doc:
            count = sum(1 for name, _ in docs if name == source.group(1))
            docs[(source.group(1), count)] = doc
    return docs


def key_paths(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Each key path of a manifest; a key the user wrote counts as the key without HOSTILE."""
    if isinstance(doc, dict):
        for key, item in doc.items():
            assert isinstance(key, str)
            name = key.replace(HOSTILE, "")
            assert MARK not in name, f"hostile text became a key at {path}: {key!r}"
            yield (*path, name)
            yield from key_paths(item, (*path, name))
    elif isinstance(doc, list):
        for index, item in enumerate(doc):
            yield from key_paths(item, (*path, index))


def hostile_leaves(doc: Any) -> Iterator[Any]:
    """Every leaf that holds part of the hostile text."""
    if isinstance(doc, dict):
        for item in doc.values():
            yield from hostile_leaves(item)
    elif isinstance(doc, list):
        for item in doc:
            yield from hostile_leaves(item)
    elif "hostNetwork" in str(doc) or MARK in str(doc) or "Release.Name" in str(doc):
        yield doc


def pod_spec(docs: dict[tuple[str, int], Any]) -> dict[str, Any]:
    return docs[("cifar-ops/templates/job.yaml", 0)]["spec"]["template"]["spec"]


@pytest.fixture(autouse=True)
def _helm_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{REPO / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.parametrize("search", [False, True], ids=["run", "search"])
def test_benign_values_render_valid_manifests(search: bool) -> None:
    docs = rendered(benign_values(search))
    assert ("cifar-ops/templates/pvc.yaml", 1) in docs or search
    assert ("cifar-ops/templates/score-job.yaml", 1) in docs or search
    for doc in docs.values():
        if doc["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("search", [False, True], ids=["run", "search"])
def test_hostile_text_in_every_field_stays_a_string_value(search: bool) -> None:
    values = benign_values(search)
    benign = rendered(values)
    everything = poisoned(values, list(scalar_paths(values)), keys=True)
    hostile = rendered(everything, schema=False, namespace=f"ml{HOSTILE}")
    assert hostile.keys() == benign.keys()
    for where, doc in benign.items():
        assert set(key_paths(hostile[where])) == set(key_paths(doc)), where
        assert all(isinstance(leaf, str) for leaf in hostile_leaves(hostile[where])), where
    pod = pod_spec(hostile)
    assert "hostNetwork" not in pod and "hostPID" not in pod
    assert pod["priorityClassName"] == f"batch-low{HOSTILE}"
    (container,) = pod["containers"]
    assert "command" not in container
    assert container["image"].startswith(f"registry.example.com:5000/ml/cifar-ops-gpu{HOSTILE}")
    assert pod["nodeSelector"] == {f"nvidia.com/gpu.present{HOSTILE}": f"true{HOSTILE}"}
    assert "{{ .Release.Name }}" in pod["priorityClassName"]  # values are never templated


@pytest.mark.parametrize("search", [False, True], ids=["run", "search"])
def test_schema_refuses_hostile_text_outside_free_text_fields(search: bool) -> None:
    values = benign_values(search)
    accepted = set()
    for path in scalar_paths(values):
        if helm_template(poisoned(values, [path], keys=False)).returncode == 0:
            accepted.add(path)
    free = {path for path in scalar_paths(values) if path in FREE_TEXT or path[:2] == AFFINITY}
    assert accepted == free
    for path in USER_MAPS:
        single = copy.deepcopy(values)
        parent = single
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = {f"key{HOSTILE}": "1"}
        result = helm_template(single)
        assert result.returncode != 0 and "/".join(map(str, path)) in result.stderr, path


def test_issue_repro_is_refused_by_the_schema() -> None:
    values = benign_values(search=False)
    values["job"]["priorityClassName"] = "high\n      hostNetwork: true\n      hostPID: true"
    values["image"]["repository"] = "evil/img\n          command: [sh, -c, id]\n          x: y"
    result = helm_template(values)
    assert result.returncode != 0
    assert "/job/priorityClassName" in result.stderr and "/image/repository" in result.stderr


def test_issue_repro_is_refused_by_validate(tmp_path: Path) -> None:
    config = tmp_path / "hostile.yaml"
    config.write_text(
        f"base: {REPO / 'jobs/configs/simple_cnn.yaml'}\n"
        "resources:\n"
        '  priority_class: "high\\n      hostNetwork: true\\n      hostPID: true"\n'
        "executor:\n"
        '  image: "evil/img\\n          command: [sh, -c, id]\\n          x: y:1.0"\n'
    )
    result = CliRunner().invoke(app, ["validate", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "resources.priority_class" in result.output and "DNS-1123 subdomain" in result.output
    assert "executor.image" in result.output and "an image reference" in result.output
