"""The pod entrypoint, in-process: which run it resolves from the ConfigMap the chart renders and
JOB_COMPLETION_INDEX, and which exit code each failure gives the Job's podFailurePolicy."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.exc import OperationalError

from cifar_ops.config import load_config
from cifar_ops.errors import (
    ConfigError,
    DataError,
    ModelError,
    MonitoringError,
    Preempted,
    StorageError,
    SubmitError,
    WarehouseError,
)
from cifar_ops.kube import helm
from cifar_ops.kube.values import build_plan, build_run_starts, build_values
from jobs import entrypoint
from tests.conftest import REPO

GRID = REPO / "jobs" / "configs" / "grids" / "conv4_sgd.yaml"


@pytest.fixture(autouse=True)
def _helm_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{REPO / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}")


def mount_config_map(plan: Any, run_dir: Path) -> Path:
    """Write the ConfigMap helm renders for the plan as the pod's mounted files."""
    rendered = helm.template(plan.release, build_values(plan), "ml")
    (config_map,) = [
        doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "ConfigMap"
    ]
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, content in config_map["data"].items():
        (run_dir / name).write_text(content)
    return run_dir


def test_search_pod_resolves_its_trial_from_the_completion_index(tmp_path: Path) -> None:
    search = load_config(GRID)
    plan = build_plan(search)
    run_dir = mount_config_map(plan, tmp_path / "run")
    env = {"JOB_COMPLETION_INDEX": "5", "CIFAR_OPS_JOB_NAME": plan.job_name}
    pod_run = entrypoint.resolve_run(run_dir, env)
    assert pod_run.run_id == plan.runs[5].run_id
    assert pod_run.completion_index == 5 and pod_run.job_name == plan.job_name
    trial = pod_run.trial
    assert trial is not None and trial.index == 5 and trial.params == search.trials[5].params
    # the pod trains exactly the recipe submit registered
    assert pod_run.config.config_hash() == build_run_starts(plan)[5].config_hash
    assert pod_run.config.executor.kind == "kubernetes"
    assert pod_run.config.monitoring.port == 9400  # the chart's metrics port, for the PodMonitor


def test_resumed_search_maps_completion_indexes_to_the_remaining_trials(tmp_path: Path) -> None:
    search = load_config(GRID)
    done = {trial.config.config_hash() for trial in search.trials[:20]}
    plan = build_plan(search, done)
    run_dir = mount_config_map(plan, tmp_path / "run")
    pod_run = entrypoint.resolve_run(run_dir, {"JOB_COMPLETION_INDEX": "1"})
    assert pod_run.trial is not None and pod_run.trial.index == 21
    assert plan.skipped == list(range(20))


def test_single_run_pod_uses_index_zero_and_no_trial(tmp_path: Path) -> None:
    plan = build_plan(load_config(REPO / "jobs/configs/resnet20.yaml"))
    pod_run = entrypoint.resolve_run(mount_config_map(plan, tmp_path / "run"), {})
    assert pod_run.run_id == plan.runs[0].run_id
    assert pod_run.trial is None and pod_run.config.model.name == "resnet20"


@pytest.mark.parametrize(
    ("env", "edit", "message"),
    [
        ({"JOB_COMPLETION_INDEX": "x"}, None, "JOB_COMPLETION_INDEX must be an integer"),
        ({"JOB_COMPLETION_INDEX": "-1"}, None, "must be 0 or more"),
        ({"JOB_COMPLETION_INDEX": "7"}, None, "no run for completion index 7 (indexes: 0)"),
        ({}, ("runs.json", None), "runs.json: missing from the run ConfigMap"),
        ({}, ("trial-0.json", "{not json"), "trial-0.json: invalid JSON"),
        ({}, ("train.epochs", -3), "train.epochs: got -3"),
    ],
)
def test_bad_run_config_map_is_a_config_error(
    tmp_path: Path, env: dict[str, str], edit: tuple[str, Any] | None, message: str
) -> None:
    run_dir = mount_config_map(build_plan(load_config(REPO / "jobs/configs/fast.yaml")), tmp_path)
    if edit and edit[0] == "train.epochs":
        document = json.loads((run_dir / "trial-0.json").read_text())
        document["config"]["train"]["epochs"] = edit[1]
        (run_dir / "trial-0.json").write_text(json.dumps(document))
    elif edit and edit[1] is None:
        (run_dir / edit[0]).unlink()
    elif edit:
        (run_dir / edit[0]).write_text(edit[1])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        entrypoint.resolve_run(run_dir, env)
    assert entrypoint.main(["--run-dir", str(run_dir)], env) == 2


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("bad"), 2),
        (DataError("unreadable"), 3),
        (ModelError("bad weights"), 6),
        (WarehouseError("unreachable"), 75),
        (MonitoringError("pushgateway down"), 75),
        (ConnectionRefusedError("db"), 75),
        (OperationalError("SELECT 1", {}, Exception("server closed")), 75),
        (Preempted("signal SIGTERM"), 143),
        (StorageError("runs/x: cannot write (No space left on device)"), 75),
        (SubmitError("not in a pod"), 1),
        (RuntimeError("CUDA error"), 1),
    ],
)
def test_exit_codes_separate_permanent_from_retryable(error: BaseException, code: int) -> None:
    assert entrypoint.exit_code_for(error) == code


def test_permanent_exit_codes_are_the_charts() -> None:
    values = yaml.safe_load((REPO / "charts/cifar-ops/values.yaml").read_text())
    assert values["job"]["podFailurePolicy"]["permanentExitCodes"] == list(
        entrypoint.PERMANENT_EXIT_CODES
    )


def test_missing_database_url_is_permanent(tmp_path: Path) -> None:
    run_dir = mount_config_map(build_plan(load_config(REPO / "jobs/configs/fast.yaml")), tmp_path)
    assert entrypoint.main(["--run-dir", str(run_dir)], {}) == 2


def test_unreachable_warehouse_is_retryable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run_dir = mount_config_map(build_plan(load_config(REPO / "jobs/configs/fast.yaml")), tmp_path)
    url = f"postgresql+psycopg2://cifar:secret@127.0.0.1:{port}/cifar?connect_timeout=2"
    code = entrypoint.main(["--run-dir", str(run_dir)], {"CIFAR_OPS_DATABASE_URL": url})
    assert code == 75
    err = capsys.readouterr().err
    assert "cannot reach the warehouse" in err and "secret" not in err


TINY = """\
experiment: tiny-k8s
data: {source: synthetic, synthetic_images: 120, image_size: 16, num_classes: 3}
model: {name: simple_cnn, filters: [4], dense_units: 8}
train: {epochs: 1, batch_size: 32}
evaluation: {log_predictions: false}
"""


@pytest.mark.slow
def test_pod_trains_the_submitted_run_under_its_queued_id(tmp_path: Path, sqlite_url: str) -> None:
    from cifar_ops.warehouse.store import open_store

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY + "monitoring: {port: 0}\n")
    plan = build_plan(load_config(config))
    store = open_store(sqlite_url)
    store.register_queued(build_run_starts(plan))  # what submit does before helm
    run_dir = mount_config_map(plan, tmp_path / "run")
    env = {"CIFAR_OPS_DATABASE_URL": sqlite_url, "CIFAR_OPS_JOB_NAME": plan.job_name}
    assert entrypoint.main(["--run-dir", str(run_dir)], env) == 0
    (run,) = store.list_runs(experiment="tiny-k8s")
    assert (run.run_id, run.status, run.executor) == (
        plan.runs[0].run_id,
        "succeeded",
        "kubernetes",
    )
    assert run.job_name == plan.job_name and run.epochs_logged == 1


def test_unreadable_data_is_permanent(tmp_path: Path, sqlite_url: str) -> None:
    config = tmp_path / "folder.yaml"
    config.write_text(TINY.replace("source: synthetic", f"source: folder, dir: {tmp_path}/none"))
    run_dir = mount_config_map(build_plan(load_config(config)), tmp_path / "run")
    env = {"CIFAR_OPS_DATABASE_URL": sqlite_url}
    assert entrypoint.main(["--run-dir", str(run_dir)], env) == 3


def test_diverged_run_exits_with_its_own_permanent_code(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A NaN loss is not retried: the retry would resume from the checkpoint's NaN weights."""
    from cifar_ops.warehouse.store import open_store

    config = tmp_path / "diverges.yaml"
    config.write_text(
        TINY.replace("epochs: 1", "epochs: 2")
        + "optimizer: {name: sgd, learning_rate: 1.0e12}\nmonitoring: {port: 0}\n"
    )
    plan = build_plan(load_config(config))
    store = open_store(sqlite_url)
    store.register_queued(build_run_starts(plan))
    run_dir = mount_config_map(plan, tmp_path / "run")
    env = {"CIFAR_OPS_DATABASE_URL": sqlite_url}
    assert entrypoint.main(["--run-dir", str(run_dir)], env) == entrypoint.EXIT_DIVERGED == 65
    assert 65 in entrypoint.PERMANENT_EXIT_CODES
    (run,) = store.list_runs(experiment="tiny-k8s")
    assert run.status == "failed" and "loss became nan" in (run.status_reason or "").lower()
    assert f"run {plan.runs[0].run_id} diverged" in capsys.readouterr().err


def test_only_a_diverged_outcome_gets_the_permanent_code() -> None:
    from cifar_ops.records import RunFinish
    from cifar_ops.runner import RunOutcome

    ok = RunOutcome("a" * 32, "succeeded", RunFinish(status="succeeded"), None)
    diverged = RunOutcome("b" * 32, "failed", RunFinish(status="failed"), None, diverged=True)
    other = RunOutcome("c" * 32, "failed", RunFinish(status="failed", reason="odd"), None)
    assert entrypoint.exit_code_of(ok) == entrypoint.EXIT_SUCCEEDED
    assert entrypoint.exit_code_of(diverged) == entrypoint.EXIT_DIVERGED
    assert entrypoint.exit_code_of(other) == entrypoint.EXIT_RUN_FAILED  # retried, not permanent


TPE_SEARCH = """
search:
  method: tpe
  trials: 2
  parallelism: 2
  pruner: asha
  parameters:
    optimizer.learning_rate: {log_uniform: [0.001, 0.1]}
    model.dense_units: {int_uniform: [4, 16]}
"""


def test_submit_dry_run_of_a_tpe_search_renders_an_indexed_job_of_study_workers(
    tmp_path: Path, cli_runner: Any
) -> None:
    from cifar_ops.cli import app

    config = tmp_path / "tpe.yaml"
    # parallel pods need storage they can share: checkpoints on an object store
    config.write_text(TINY + TPE_SEARCH)
    shared = "executor.values.artifacts.uri=s3://ml-bucket/searches"
    result = cli_runner.invoke(
        app, ["submit", "-c", str(config), "--dry-run", "--json", "--set", shared]
    )
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(json.loads(result.output)["manifests"]) if d]
    (job,) = [d for d in docs if d["kind"] == "Job" and "completionMode" in d["spec"]]
    assert job["spec"]["completionMode"] == "Indexed"
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (2, 2)
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    for index in (0, 1):
        document = json.loads(config_map["data"][f"trial-{index}.json"])
        assert document["study"]["search"]["method"] == "tpe"  # the pod asks the study
        assert document["trial_index"] is None and document["params"] == {}


@pytest.mark.slow
def test_study_worker_pods_each_ask_the_study_for_a_trial(tmp_path: Path, sqlite_url: str) -> None:
    from cifar_ops.search import worker
    from cifar_ops.warehouse.store import open_store

    config = tmp_path / "tpe.yaml"
    config.write_text(TINY + TPE_SEARCH.replace("parallelism: 2", "parallelism: 1"))
    loaded = load_config(config)
    plan = build_plan(loaded)
    assert build_run_starts(plan) == []  # a trial's run is registered when a pod asks
    store = open_store(sqlite_url)
    worker.prepare(loaded, sqlite_url, store)  # what submit does before helm
    run_dir = mount_config_map(plan, tmp_path / "run")
    env = {"CIFAR_OPS_DATABASE_URL": sqlite_url, "CIFAR_OPS_JOB_NAME": plan.job_name}
    for index in ("0", "1", "0"):  # the third: index 0's pod run again, nothing left to ask
        assert (
            entrypoint.main(["--run-dir", str(run_dir)], {**env, "JOB_COMPLETION_INDEX": index})
            == 0
        )
    runs = store.list_runs(experiment="tiny-k8s")
    assert sorted((r.trial_index, r.trial_number, r.executor) for r in runs) == [
        (0, 0, "kubernetes"),
        (1, 1, "kubernetes"),
    ]
    assert {r.status for r in runs} <= {"succeeded", "pruned"}
    assert {r.job_name for r in runs} == {plan.job_name}
