"""`cifar-ops runs`, `db` and `export` through CliRunner: output, --json, and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cifar_ops.cli import app
from cifar_ops.warehouse import open_store, synthetic
from cifar_ops.warehouse.migrate import upgrade_database
from cifar_ops.warehouse.views import VIEW_NAMES


@pytest.fixture
def runs(database_url: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Two logged runs of one experiment in the warehouse the CLI sees."""
    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", database_url)
    upgrade_database(database_url)
    ids = []
    with open_store(database_url) as store:
        for model, accuracy in (("vgg10", 0.61), ("resnet20", 0.83)):
            start = synthetic.run_start("cli", model_name=model)
            store.start_run(start)
            store.log_epoch(start.run_id, synthetic.epoch(1))
            store.log_evaluation(start.run_id, synthetic.evaluation(100))
            store.finish_run(start.run_id, synthetic.finish(test_accuracy=accuracy))
            ids.append(start.run_id)
    return ids


def test_runs_list_show_compare(cli_runner: CliRunner, runs: list[str]) -> None:
    listed = cli_runner.invoke(app, ["runs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert {r["run_id"] for r in json.loads(listed.output)} == set(runs)
    table = cli_runner.invoke(app, ["runs", "list", "--model", "resnet20"])
    assert table.exit_code == 0, table.output
    assert runs[1][:8] in table.output, (runs, table.output)
    assert runs[0][:8] not in table.output

    shown = cli_runner.invoke(app, ["runs", "show", runs[0][:8], "--json"])
    assert shown.exit_code == 0, shown.output
    payload = json.loads(shown.output)
    assert payload["summary"]["model_name"] == "vgg10"
    assert payload["evaluations"][0]["class_metrics"][0]["class_name"] == "airplane"
    text = cli_runner.invoke(app, ["runs", "show", runs[0]])
    assert text.exit_code == 0 and "airplane" in text.output and "61.00%" in text.output

    compared = cli_runner.invoke(app, ["runs", "compare", runs[1], runs[0][:6], "--json"])
    assert compared.exit_code == 0, compared.output
    assert [r["test_accuracy"] for r in json.loads(compared.output)] == [0.83, 0.61]


def test_unknown_run_and_bad_status_exit_with_their_codes(
    cli_runner: CliRunner, runs: list[str]
) -> None:
    missing = cli_runner.invoke(app, ["runs", "show", "deadbeef"])
    assert missing.exit_code == 4
    assert "no run 'deadbeef'" in missing.output and "Traceback" not in missing.output
    assert cli_runner.invoke(app, ["runs", "compare", runs[0], "0" * 32]).exit_code == 4
    assert cli_runner.invoke(app, ["runs", "list", "--status", "done"]).exit_code == 2


def test_export_writes_every_view(cli_runner: CliRunner, runs: list[str], tmp_path: Path) -> None:
    for fmt, read in (("csv", pd.read_csv), ("parquet", pd.read_parquet)):
        out = tmp_path / fmt
        result = cli_runner.invoke(app, ["export", "--format", fmt, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert sorted(p.name for p in out.iterdir()) == sorted(f"{v}.{fmt}" for v in VIEW_NAMES)
        summary = read(out / f"run_summary.{fmt}")
        assert set(summary["run_id"]) == set(runs)
        assert len(read(out / f"confusion.{fmt}")) == 200
    assert cli_runner.invoke(app, ["export", "--format", "xlsx"]).exit_code == 2


HOSTILE_CLASSES = ["=1+2*3", "@SUM(1+1)", "+cmd", "-2+3", "\tx", "\rx", "plain"]


def test_export_csv_cells_cannot_become_formulas(
    cli_runner: CliRunner, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", sqlite_url)
    with open_store(sqlite_url) as store:
        start = synthetic.run_start("csv", model_name="vgg10")
        store.start_run(start)
        store.log_evaluation(start.run_id, synthetic.evaluation(50, class_names=HOSTILE_CLASSES))
        store.finish_run(start.run_id, synthetic.finish(test_accuracy=0.5))
    result = cli_runner.invoke(app, ["export", "--format", "csv", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    metrics = pd.read_csv(tmp_path / "out" / "class_metrics.csv", keep_default_na=False)
    names = sorted(metrics["class_name"])
    assert names == sorted("'" + n if n != "plain" else n for n in HOSTILE_CLASSES)
    assert pd.api.types.is_float_dtype(metrics["precision"])  # numbers stay numbers
    for path in (tmp_path / "out").glob("*.csv"):
        for line in path.read_text().splitlines():
            for cell in line.split(","):
                assert not cell.strip('"').startswith(("=", "+", "@")), (path.name, line)


def test_db_commands_and_a_database_behind_head(
    cli_runner: CliRunner, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", postgres_url)
    history = cli_runner.invoke(app, ["db", "history", "--json"])
    assert history.exit_code == 0
    revisions = json.loads(history.output)
    head = revisions[0]["revision"]
    assert revisions[0]["is_head"] and revisions[-1]["down_revision"] is None

    assert cli_runner.invoke(app, ["db", "upgrade", revisions[-1]["revision"]]).exit_code == 0
    current = cli_runner.invoke(app, ["db", "current", "--json"])
    assert json.loads(current.output)["up_to_date"] is False
    behind = cli_runner.invoke(app, ["runs", "list"])
    assert behind.exit_code == 4
    assert "behind the migration head" in behind.output and "cifar-ops db upgrade" in behind.output

    upgraded = cli_runner.invoke(app, ["db", "upgrade"])
    assert upgraded.exit_code == 0 and f"at revision {head}" in upgraded.output
    assert "up to date" in cli_runner.invoke(app, ["db", "current"]).output
    assert cli_runner.invoke(app, ["runs", "list"]).exit_code == 0


def test_db_upgrade_to_an_unknown_revision_is_one_line_and_exit_4(
    cli_runner: CliRunner, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", sqlite_url)
    result = cli_runner.invoke(app, ["db", "upgrade", "bogus"])
    assert result.exit_code == 4, result.output
    assert "bogus" in result.output and "cifar-ops db history" in result.output
    assert "Traceback" not in result.output


def test_unreachable_database_exits_4(cli_runner: CliRunner, monkeypatch) -> None:
    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", "postgresql+psycopg2://u:pw@127.0.0.1:1/db")
    result = cli_runner.invoke(app, ["db", "current"])
    assert result.exit_code == 4
    assert "cannot reach the warehouse" in result.output and ":pw@" not in result.output
