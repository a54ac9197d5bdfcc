"""Pure builders of the Kubernetes executor: names, values, queued rows, Job state (no cluster)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
import yaml

from cifar_ops.config import load_config
from cifar_ops.kube import helm
from cifar_ops.kube.cancel import build_delete_options
from cifar_ops.kube.jobstate import index_state, parse_indexes, pod_summary, run_ids_of
from cifar_ops.kube.logs import build_pod_selector
from cifar_ops.kube.naming import job_name, release_name
from cifar_ops.kube.values import build_image_values, build_plan, build_run_starts, build_values
from tests.conftest import REPO

GRID = REPO / "jobs" / "configs" / "grids" / "conv4_sgd.yaml"
NOW = datetime(2030, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("experiment", "release"),
    [
        ("conv4-sgd-grid", "cifar-ops-conv4-sgd-grid"),
        ("My_Exp.v2", "cifar-ops-my-exp-v2"),
        ("x" * 63, "cifar-ops-" + "x" * 43),  # helm's 53-character limit
    ],
)
def test_release_name_is_a_valid_helm_release(experiment: str, release: str) -> None:
    assert release_name(experiment) == release
    assert len(release) <= 53


def test_job_name_matches_the_chart_for_a_long_experiment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{REPO / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    config = load_config(REPO / "jobs/configs/fast.yaml", ["experiment=" + "a-long-name" * 5])
    plan = build_plan(config)
    docs = yaml.safe_load_all(helm.template(plan.release, build_values(plan), None))
    (job,) = [doc for doc in docs if doc and doc["kind"] == "Job"]
    assert job["metadata"]["name"] == plan.job_name == job_name(plan.release, plan.submission)
    assert len(plan.job_name) <= 52


def test_plan_skips_succeeded_hashes_and_queues_the_rest() -> None:
    search = load_config(GRID)
    done = {search.trials[i].config.config_hash() for i in (0, 5, 23)}
    plan = build_plan(search, done)
    assert plan.skipped == [0, 5, 23]
    starts = build_run_starts(plan)
    assert [s.trial_index for s in starts] == [i for i in range(24) if i not in (0, 5, 23)]
    assert {s.status for s in starts} == {"queued"} and {s.executor for s in starts} == {
        "kubernetes"
    }
    assert {s.job_name for s in starts} == {plan.job_name}
    assert len({s.run_id for s in starts}) == 21
    assert starts[0].trial_params == search.trials[1].params
    assert build_values(plan)["run"]["parallelism"] == 4


def test_values_carry_resources_deadline_per_wave_and_image() -> None:
    overrides = [
        "resources.gpus=2",
        "resources.cpu=8000m",
        "resources.memory=32Gi",
        "resources.priority_class=batch",
        "resources.node_selector={pool: a100}",
        "resources.active_deadline_seconds=3600",
        "executor.image=registry.example/cifar-ops-gpu:1.2",
    ]
    plan = build_plan(load_config(GRID, overrides))
    values = build_values(plan)
    job = values["job"]
    assert job["gpus"] == 2 and job["priorityClassName"] == "batch"
    assert job["resources"] == {
        "requests": {"cpu": "8000m", "memory": "32Gi"},
        "limits": {"memory": "32Gi"},
    }
    assert job["nodeSelector"] == {"pool": "a100"}
    assert job["activeDeadlineSeconds"] == 3600 * 6  # 24 trials, 4 at a time
    assert values["image"] == {"repository": "registry.example/cifar-ops-gpu", "tag": "1.2"}
    assert values["platform"] == {"enabled": False}


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("repo/img:1.0", {"repository": "repo/img", "tag": "1.0"}),
        ("localhost:5000/img", {"repository": "localhost:5000/img"}),
        ("img@sha256:" + "a" * 64, {"repository": "img", "digest": "sha256:" + "a" * 64}),
    ],
)
def test_image_reference_parsing(reference: str, expected: dict[str, str]) -> None:
    assert build_image_values(reference) == expected


def test_delete_options_and_pod_selectors() -> None:
    options = build_delete_options()
    assert options.propagation_policy == "Foreground" and options.grace_period_seconds == 30
    assert build_delete_options("Background").propagation_policy == "Background"
    assert build_pod_selector("j", None) == "batch.kubernetes.io/job-name=j"
    assert build_pod_selector("j", 3).endswith(",batch.kubernetes.io/job-completion-index=3")


def test_index_ranges() -> None:
    assert parse_indexes("0-3,5,7-8") == {0, 1, 2, 3, 5, 7, 8}
    assert parse_indexes("") == set() and parse_indexes(None) == set()


def job(**status: object) -> dict:
    return {
        "metadata": {"name": "j", "annotations": {"cifar-ops/run-ids": '{"0": "a", "1": "b"}'}},
        "spec": {"completionMode": "Indexed", "activeDeadlineSeconds": 3600},
        "status": {"startTime": "2030-01-01T23:30:00Z", **status},
    }


def test_job_state_comes_from_conditions_indexes_and_the_deadline() -> None:
    assert run_ids_of(job()) == {0: "a", 1: "b"}
    assert index_state(job(completedIndexes="1"), 1, NOW).state == "succeeded"
    assert index_state(job(failedIndexes="0"), 0, NOW).state == "failed"
    failed = job(
        conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
    )
    assert index_state(failed, 1, NOW).reason == "BackoffLimitExceeded"
    leaky = {"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}
    leaky["message"] = "exit 1: could not reach postgresql://ops:s3cret@db:5432/warehouse"
    shown = index_state(job(conditions=[leaky]), 1, NOW).reason
    assert "s3cret" not in shown and shown.startswith("PodFailurePolicy: exit 1: could not")
    not_yet = job(conditions=[{"type": "Failed", "status": "False"}])
    assert index_state(not_yet, 1, NOW).state == "pending"
    running_pod = {"status": {"phase": "Running"}}
    assert index_state(job(), 1, NOW, running_pod).state == "running"
    late = datetime(2030, 1, 2, 1, 0, tzinfo=UTC)
    assert index_state(job(), 1, late, running_pod).reason.startswith("DeadlineExceeded")


def test_pod_summary_shows_the_containers_reason() -> None:
    waiting = {
        "status": {
            "phase": "Pending",
            "containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}],
        }
    }
    assert pod_summary(waiting) == "Pending/ImagePullBackOff"
    killed = {"status": {"phase": "Failed", "containerStatuses": [
        {"state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}}  # fmt: skip
    assert pod_summary(killed) == "Failed/OOMKilled (exit 137)"
    assert pod_summary(None) == "-"
