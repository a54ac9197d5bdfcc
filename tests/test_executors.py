"""The executor seam: a module per ExecutorKind; `run` is local, `submit` the cluster kind names."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cifar_ops.cli import app
from cifar_ops.executors import DEFAULT_CLUSTER, cluster_kind, executor_for
from cifar_ops.executors.kubernetes import KubernetesExecutor
from cifar_ops.executors.local import LocalExecutor
from cifar_ops.vocabulary import ExecutorKind
from tests.conftest import REPO

GRID = str(REPO / "jobs/configs/grids/conv4_sgd.yaml")


@pytest.mark.parametrize("kind", list(ExecutorKind))
def test_each_kind_has_its_module_and_the_registry_picks_it(kind: ExecutorKind) -> None:
    module = importlib.import_module(f"cifar_ops.executors.{kind.value}")
    executor = executor_for(kind)
    assert executor is module.EXECUTOR and executor.kind is kind
    assert executor_for(kind.value) is executor  # the config's plain string picks the same


def test_the_registry_returns_the_implementations() -> None:
    assert isinstance(executor_for(ExecutorKind.LOCAL), LocalExecutor)
    assert executor_for(ExecutorKind.LOCAL).in_process
    assert isinstance(executor_for(ExecutorKind.KUBERNETES), KubernetesExecutor)
    assert not executor_for(ExecutorKind.KUBERNETES).in_process


def test_an_unknown_kind_cannot_be_named() -> None:
    with pytest.raises(ValueError, match="slurm"):
        executor_for("slurm")
    with pytest.raises(ValueError):
        cluster_kind("ray")


def test_submit_sends_a_local_config_to_the_default_cluster() -> None:
    assert cluster_kind(ExecutorKind.LOCAL) is DEFAULT_CLUSTER is ExecutorKind.KUBERNETES
    assert cluster_kind("kubernetes") is ExecutorKind.KUBERNETES


@pytest.fixture
def _helm_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{REPO / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.usefixtures("_helm_on_path")
@pytest.mark.parametrize("kind", ["local", "kubernetes"])
def test_submit_renders_the_same_release_whatever_the_kind_says(
    cli_runner: CliRunner, kind: str
) -> None:
    args = ["submit", "-c", GRID, "--dry-run", "--json", "--set", f"executor.kind={kind}"]
    result = cli_runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["release"] == "cifar-ops-conv4-sgd-grid" and len(payload["runs"]) == 24
    assert '\\"kind\\": \\"kubernetes\\"' in payload["manifests"]  # pods record kubernetes


def test_a_bad_kind_is_a_config_error_before_any_executor(
    cli_runner: CliRunner, tmp_path: Path
) -> None:
    result = cli_runner.invoke(app, ["submit", "-c", GRID, "--set", "executor.kind=slurm"])
    assert result.exit_code == 2
    assert "executor.kind" in result.output and "'local' or 'kubernetes'" in result.output
