"""The chart's Prometheus rules and Grafana dashboard: valid, and built on names that exist.

Rules: `promtool check rules`, and `promtool test rules` with input series that must (and must
not) fire each alert and give each recorded value. Dashboard: its structure, its variables, every
metric it queries is exported by the exporter (or recorded by the rules), and every SQL panel runs
on a real PostgreSQL warehouse as the read-only reporting role.
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from cifar_ops.monitoring.metrics import EpochMetrics, RunMetrics
from cifar_ops.records import EpochRecord, RunFinish
from tests.monitoring_support import (
    RULES,
    binary,
    dashboard,
    dashboard_targets,
    fill_variables,
    run_start,
)

GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__timeFilter", "__timeFrom"}
RUN = {"run_id": "r1", "experiment": "e1", "model": "m1"}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


# --- rules --------------------------------------------------------------------------------------


def test_rules_pass_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    selector = ", ".join(f'{k}="{v}"' for k, v in {**RUN, **labels}.items())
    return {"series": f"{name}{{{selector}}}", "values": values}


def _alert(name: str, at: str, labels: dict[str, str] | None, annotations: dict[str, str]) -> dict:
    expected = [{"exp_labels": {**RUN, "severity": "warning"}, "exp_annotations": annotations}]
    return {"eval_time": at, "alertname": name, "exp_alerts": expected if labels else []}


def test_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    stalled_text = {
        "summary": "Run r1 (e1) made no epoch progress for 30 minutes",
        "description": "Run r1 of experiment e1 (model m1) is running but finished no epoch for "
        "35m 0s. Check its pod: `cifar-ops logs r1`.",
    }
    nan_text = {
        "summary": "Run r1 (e1) has a NaN loss",
        "description": "The loss of run r1 (model m1) is NaN: the run diverged. Lower the "
        "learning rate or add warm-up, then run it again.",
    }
    failed_text = {
        "summary": "Run r1 (e1) failed",
        "description": "Run r1 of experiment e1 (model m1) ended with status failed. "
        "`cifar-ops runs show r1` has its reason.",
    }
    running = _series("cifar_ops_run_status", "1x60", status="running")
    tests = [
        {  # started at t=0, never finished an epoch: stalled once 30 min (+ 2 min `for`) passed
            "interval": "1m",
            "input_series": [running, _series("cifar_ops_last_progress_timestamp_seconds", "0x60")],
            "alert_rule_test": [
                _alert("CifarOpsRunStalled", "31m", None, {}),
                _alert("CifarOpsRunStalled", "35m", RUN, stalled_text),
            ],
        },
        {  # an epoch every 10 minutes: never stalled
            "interval": "1m",
            "input_series": [
                running,
                _series(
                    "cifar_ops_last_progress_timestamp_seconds", "0x9 600x9 1200x9 1800x9 2400x20"
                ),
            ],
            "alert_rule_test": [_alert("CifarOpsRunStalled", "55m", None, {})],
        },
        {  # no progress for an hour, but the run is over: not stalled, and failed fires
            "interval": "1m",
            "input_series": [
                _series("cifar_ops_run_status", "0x60", status="running"),
                _series("cifar_ops_run_status", "1x60", status="failed"),
                _series("cifar_ops_last_progress_timestamp_seconds", "0x60"),
            ],
            "alert_rule_test": [
                _alert("CifarOpsRunStalled", "59m", None, {}),
                _alert("CifarOpsRunFailed", "59m", RUN, failed_text),
            ],
        },
        {  # a finite loss, then NaN from minute 3
            "interval": "1m",
            "input_series": [
                running,
                _series("cifar_ops_train_loss", "2.3 2.1 1.9 NaN NaN NaN"),
                _series("cifar_ops_val_loss", "2.4 2.2 2.0 2.0 2.0 2.0"),
            ],
            "alert_rule_test": [
                _alert("CifarOpsNaNLoss", "2m", None, {}),
                _alert("CifarOpsNaNLoss", "4m", RUN, nan_text),
                _alert("CifarOpsRunFailed", "4m", None, {}),
            ],
        },
        {  # recording rules over two runs of one experiment
            "interval": "1m",
            "input_series": [
                _series("cifar_ops_val_accuracy", "0.4 0.6 0.5"),
                _series("cifar_ops_val_accuracy", "0.3 0.55", run_id="r2"),
                _series("cifar_ops_run_status", "1 1 1", status="running"),
                _series("cifar_ops_run_status", "1 1 1", status="running", run_id="r2"),
                _series("cifar_ops_images_per_second", "100 100 100"),
                _series("cifar_ops_images_per_second", "50 50 50", run_id="r2"),
            ],
            "promql_expr_test": [
                {
                    "expr": "experiment:cifar_ops_val_accuracy:max1d",
                    "eval_time": "2m",
                    "exp_samples": [
                        {
                            "labels": 'experiment:cifar_ops_val_accuracy:max1d{experiment="e1"}',
                            "value": 0.6,
                        }
                    ],
                },
                {
                    "expr": "experiment:cifar_ops_images_per_second:sum",
                    "eval_time": "2m",
                    "exp_samples": [
                        {
                            "labels": 'experiment:cifar_ops_images_per_second:sum{experiment="e1"}',
                            "value": 150,
                        }
                    ],
                },
            ],
        },
    ]
    unit = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "rules_test.yaml").write_text(yaml.safe_dump(unit, sort_keys=False))
    result = promtool("test", "rules", "rules_test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- dashboard ----------------------------------------------------------------------------------


def exported_names() -> set[str]:
    """Every sample name a run exports once it has finished an epoch (as Prometheus stores it)."""
    metrics = RunMetrics(run_start())
    metrics.record_epoch(EpochMetrics(1, 2.0, 0.2, 2.1, 0.25, 0.01, 3.0, 100.0))
    metrics.count_batches()
    text_ = generate_latest(metrics.registry).decode()
    return {s.name for f in text_string_to_metric_families(text_) for s in f.samples}


def recorded_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def promql_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: our prefix, bare or inside a recording rule's name."""
    return set(re.findall(r"[a-zA-Z_:]*cifar_ops_[a-zA-Z0-9_:]*", expr))


def test_dashboard_has_the_datasource_and_filter_variables() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["warehouse"]["type"] == "datasource"
    assert variables["warehouse"]["query"] == "grafana-postgresql-datasource"
    for name in ("experiment", "run_id"):
        assert variables[name]["datasource"]["uid"] == "${datasource}"
        assert "cifar_ops_run_info" in variables[name]["definition"]
    for name in ("warehouse_experiment", "warehouse_run"):
        assert variables[name]["datasource"]["uid"] == "${warehouse}"
        assert "reporting." in variables[name]["query"]


def test_every_panel_queries_a_datasource_variable_and_only_known_variables() -> None:
    board = dashboard()
    variables = {v["name"] for v in board["templating"]["list"]}
    uids = {"prometheus": "${datasource}", "grafana-postgresql-datasource": "${warehouse}"}
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    assert len(panels) >= 10
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["gridPos"]["x"] >= 0 and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel["targets"]:
            kind = target["datasource"]["type"]
            assert target["datasource"]["uid"] == uids[kind], panel["title"]
            query = target["expr"] if kind == "prometheus" else target["rawSql"]
            assert query.strip(), panel["title"]
            used = set(re.findall(r"\$\{?(\w+)", query))
            assert used <= variables | GRAFANA_BUILTINS, (panel["title"], used - variables)


def test_every_promql_name_in_the_dashboard_and_rules_is_exported_or_recorded() -> None:
    known = exported_names() | recorded_names()
    exprs = [t["expr"] for _, t in dashboard_targets("prometheus")]
    exprs += [v["definition"] for v in dashboard()["templating"]["list"] if "definition" in v]
    groups = yaml.safe_load(RULES.read_text())["groups"]
    exprs += [rule["expr"] for group in groups for rule in group["rules"]]
    used = set().union(*(promql_names(e) for e in exprs))
    assert used, "no cifar_ops metric found in the dashboard"
    assert used <= known, f"not exported nor recorded: {sorted(used - known)}"
    # The live curves the issue asks for are all on the dashboard.
    wanted = {
        "cifar_ops_train_loss",
        "cifar_ops_val_loss",
        "cifar_ops_train_accuracy",
        "cifar_ops_val_accuracy",
        "cifar_ops_epoch_duration_seconds_sum",
        "cifar_ops_images_per_second",
        "cifar_ops_run_status",
        "cifar_ops_batches_total",
        "cifar_ops_learning_rate",
        "cifar_ops_epoch",
    }
    assert wanted <= used, sorted(wanted - used)


@pytest.mark.postgres
def test_every_sql_panel_runs_on_the_warehouse_as_the_reporting_role(postgres_url: str) -> None:
    from cifar_ops.warehouse.migrate import upgrade_database
    from cifar_ops.warehouse.store import open_store
    from cifar_ops.warehouse.views import READER_ROLE

    upgrade_database(postgres_url)
    start = run_start(experiment="grafana-sql")
    with open_store(postgres_url) as store:
        store.start_run(start)
        for epoch, val in ((1, 0.31), (2, 0.47)):
            store.log_epoch(start.run_id, EpochRecord(epoch, 2.0, 0.3, 1.9, val, 0.01, 3.0, 90.0))
        store.finish_run(
            start.run_id,
            RunFinish(
                status="succeeded", best_epoch=2, val_accuracy=0.47, finished_at=datetime.now(UTC)
            ),
        )
        values = {
            "warehouse_experiment": "'grafana-sql'",
            "warehouse_run": start.run_id,
        }
        queries = [
            (title, t["rawSql"]) for title, t in dashboard_targets("grafana-postgresql-datasource")
        ]
        queries += [
            (v["name"], v["query"])
            for v in dashboard()["templating"]["list"]
            if v.get("datasource", {}).get("type") == "grafana-postgresql-datasource"
        ]
        answers = {}
        with store.engine.connect() as conn:
            conn.execute(text(f"SET ROLE {READER_ROLE}"))
            for title, sql in queries:
                answers[title] = conn.execute(text(fill_variables(sql, values))).fetchall()
    assert [row[0] for row in answers["Runs"]] == [start.run_id]
    curve = answers["Validation accuracy by epoch (warehouse)"]
    assert [(row[0], row[2]) for row in curve] == [(1, 0.31), (2, 0.47)]
    assert answers["warehouse_experiment"] == [("grafana-sql",)]
    assert answers["warehouse_run"] == [(start.run_id,)]
