"""`cifar-ops submit` through the CLI with the real helm: dry runs, the warehouse rows it registers
(and skips), and each error path (bad config, no helm, no kubeconfig, cluster down)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cifar_ops.cli import app
from cifar_ops.config import load_config
from cifar_ops.kube import helm
from cifar_ops.warehouse.store import open_store
from tests.conftest import REPO

GRID = str(REPO / "jobs" / "configs" / "grids" / "conv4_sgd.yaml")
SECRET_URL = "postgresql+psycopg2://trainer:hunter2@db.internal:5432/cifar"


@pytest.fixture(autouse=True)
def _tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{REPO / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def closed_port_kubeconfig(path: Path) -> Path:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


def test_dry_run_prints_manifests_and_changes_nothing(
    cli_runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", f"sqlite:///{tmp_path / 'wh.db'}")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))  # no cluster needed
    args = ["submit", "--config", GRID, "--dry-run", "--set", "resources.gpus=2", "-n", "ml"]
    result = cli_runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    docs = [doc for doc in yaml.safe_load_all(result.output) if doc]
    (job,) = [doc for doc in docs if doc["kind"] == "Job"]
    assert job["spec"]["completions"] == 24
    limits = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "2"
    assert "hunter2" not in result.output
    assert not (tmp_path / "wh.db").exists() and not Path("cifar-ops.db").exists()


def test_dry_run_json_lists_runs_and_manifests(cli_runner: CliRunner) -> None:
    result = cli_runner.invoke(app, ["submit", "--config", GRID, "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["release"] == "cifar-ops-conv4-sgd-grid" and payload["dry_run"] is True
    assert [run["trial_index"] for run in payload["runs"]] == list(range(24))
    assert payload["job"] in payload["manifests"]
    assert all(run["run_id"] in payload["manifests"] for run in payload["runs"])


def test_bad_config_exits_2_before_helm(cli_runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\nmodel: {name: vgg10}\nresources: {gpus: -1}\n")
    result = cli_runner.invoke(app, ["submit", "--config", str(bad), "--dry-run"])
    assert result.exit_code == 2
    assert "resources.gpus" in result.output and "Traceback" not in result.output


def test_missing_helm_exits_5(
    cli_runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no helm here
    monkeypatch.setattr(helm, "TOOLS_BIN", tmp_path)  # nor in a .tools/bin
    for extra in (["--dry-run"], []):
        result = cli_runner.invoke(app, ["submit", "--config", GRID, *extra])
        assert result.exit_code == 5
        assert "the helm binary is not on PATH" in result.output
    assert not Path("cifar-ops.db").exists()


def test_missing_kubeconfig_exits_5_and_writes_nothing(
    cli_runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    result = cli_runner.invoke(app, ["submit", "--config", GRID])
    assert result.exit_code == 5
    assert "no kubeconfig found" in result.output and "--dry-run" in result.output
    assert not Path("cifar-ops.db").exists()


@pytest.mark.postgres
def test_unreachable_cluster_exits_5_before_registering_the_rest_of_a_search(
    cli_runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """`submit` asks the cluster whether the release's Job still runs before it writes a row."""
    from cifar_ops.kube.values import build_plan, build_run_starts
    from cifar_ops.warehouse.migrate import upgrade_database

    upgrade_database(database_url)  # what the chart's hook Job does
    store = open_store(database_url)
    earlier = build_plan(load_config(GRID))
    store.register_queued(build_run_starts(earlier))
    for run in earlier.runs[:20]:
        store.set_status(run.run_id, "succeeded")
    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", database_url)
    monkeypatch.setenv("KUBECONFIG", str(closed_port_kubeconfig(tmp_path / "kubeconfig")))

    result = cli_runner.invoke(app, ["submit", "--config", GRID, "--namespace", "ml"])
    assert result.exit_code == 5
    assert "cannot reach the Kubernetes API to list Jobs" in result.output
    runs = store.list_runs(experiment="conv4-sgd-grid", limit=None)
    assert sorted(run.run_id for run in runs) == sorted(run.run_id for run in earlier.runs)


def test_nothing_left_to_submit(
    cli_runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    from cifar_ops.kube.values import build_plan, build_run_starts

    store = open_store(sqlite_url)
    earlier = build_plan(load_config(GRID))
    store.register_queued(build_run_starts(earlier))
    for run in earlier.runs:
        store.set_status(run.run_id, "succeeded")
    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("KUBECONFIG", str(closed_port_kubeconfig(tmp_path / "kubeconfig")))
    result = cli_runner.invoke(app, ["submit", "--config", GRID])
    assert result.exit_code == 0, result.output
    assert "every trial of conv4-sgd-grid already succeeded" in result.output
    assert len(store.list_runs(experiment="conv4-sgd-grid", limit=None)) == 24
