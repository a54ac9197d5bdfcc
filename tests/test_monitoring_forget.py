"""`cifar-ops forget-metrics` against a real Pushgateway and a real warehouse."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge
from typer.testing import CliRunner

from cifar_ops.cli import app
from cifar_ops.monitoring import push_run_metrics
from cifar_ops.records import RunFinish, RunStart
from cifar_ops.warehouse.store import open_store
from tests.monitoring_support import GATEWAY_PASSWORD, GATEWAY_USER, http_get, pushgateway


def pushed_run_ids(gateway: str) -> set[str]:
    data = json.loads(http_get(f"{gateway}/api/v1/metrics"))["data"]
    return {group["labels"]["run_id"] for group in data}


def log_run(store, experiment: str, gateway: str | None, status: str | None) -> str:
    run_id = uuid.uuid4().hex
    config = {"monitoring": {"pushgateway": gateway, "port": None}}
    store.start_run(RunStart(run_id, experiment, "tiny", config, "0" * 64))
    if status is not None:
        store.finish_run(run_id, RunFinish(status=status))
    return run_id


def push(gateway: str, run_id: str) -> None:
    registry = CollectorRegistry()
    Gauge("cifar_ops_epoch", "epochs finished", registry=registry).set(3)
    push_run_metrics(gateway, run_id, registry)


def test_forget_deletes_finished_runs_groups_and_leaves_live_ones(
    tmp_path: Path, sqlite_url: str, cli_runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", sqlite_url)
    with pushgateway(tmp_path) as gateway, open_store(sqlite_url) as store:
        done = log_run(store, "exp", gateway, "succeeded")
        failed = log_run(store, "exp", gateway, "failed")
        live = log_run(store, "exp", gateway, None)
        unmonitored = log_run(store, "exp", None, "succeeded")
        elsewhere = log_run(store, "other", gateway, "succeeded")
        for run_id in (done, failed, live, elsewhere):
            push(gateway, run_id)

        result = cli_runner.invoke(app, ["forget-metrics", "--experiment", "exp", "--json"])
        assert result.exit_code == 0, result.output
        payload = json.loads(result.output)
        assert {d["run_id"] for d in payload["deleted"]} == {done, failed}
        skipped = {s["run_id"]: s["reason"] for s in payload["skipped"]}
        assert skipped == {live: "still running", unmonitored: "ran without monitoring.pushgateway"}
        assert pushed_run_ids(gateway) == {live, elsewhere}

        by_id = cli_runner.invoke(app, ["forget-metrics", elsewhere[:10]])
        assert by_id.exit_code == 0, by_id.output
        assert f"deleted {elsewhere}" in by_id.output
        assert pushed_run_ids(gateway) == {live}


def test_forget_needs_runs_and_reports_an_unreachable_gateway(
    sqlite_url: str, cli_runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", sqlite_url)
    nothing = cli_runner.invoke(app, ["forget-metrics"])
    assert nothing.exit_code == 1 and "name run ids or --experiment" in nothing.output
    with open_store(sqlite_url) as store:
        run_id = log_run(store, "exp", "http://127.0.0.1:9", "succeeded")
    result = cli_runner.invoke(app, ["forget-metrics", run_id])
    assert result.exit_code == 7
    assert "127.0.0.1:9" in result.output and run_id in result.output


def test_forget_never_prints_a_gateway_password(
    tmp_path: Path, sqlite_url: str, cli_runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("CIFAR_OPS_PUSHGATEWAY_USERNAME", GATEWAY_USER)
    monkeypatch.setenv("CIFAR_OPS_PUSHGATEWAY_PASSWORD", GATEWAY_PASSWORD)
    with pushgateway(tmp_path, basic_auth=True) as gateway, open_store(sqlite_url) as store:
        # stored before credentials in monitoring.pushgateway were refused
        stored = gateway.replace("http://", f"http://{GATEWAY_USER}:{GATEWAY_PASSWORD}@")
        done = log_run(store, "exp", stored, "succeeded")
        push(gateway, done)

        for extra in ([], ["--json"]):
            result = cli_runner.invoke(app, ["forget-metrics", done, *extra])
            assert result.exit_code == 0, result.output
            assert GATEWAY_PASSWORD not in result.output
        assert f"{GATEWAY_USER}:***@127.0.0.1" in result.output
        auth = (GATEWAY_USER, GATEWAY_PASSWORD)
        assert json.loads(http_get(f"{gateway}/api/v1/metrics", auth=auth))["data"] == []

        result = cli_runner.invoke(app, ["forget-metrics", done, "--pushgateway", stored])
        assert result.exit_code == 2, result.output
        assert GATEWAY_PASSWORD not in result.output
        assert "CIFAR_OPS_PUSHGATEWAY_PASSWORD" in result.output
