"""Every copy of a closed vocabulary agrees with its enum in `cifar_ops.vocabulary`.

The database is migrated the way a user does it (`alembic upgrade head` from the repo root) and
its CHECK constraints are read back from the database itself, so a migration that spells a
status list of its own fails here, as does any other copy that drifts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import CheckConstraint, create_engine, inspect
from typer.testing import CliRunner

from cifar_ops import records
from cifar_ops.cli import app
from cifar_ops.commands.runs_cmds import STATUS_STYLES
from cifar_ops.config import ExecutorConfig, SearchSpec
from cifar_ops.monitoring.metrics import STATUSES, RunMetrics
from cifar_ops.vocabulary import (
    HEADLINE_METRICS,
    TERMINAL_STATUSES,
    ExecutorKind,
    RunStatus,
    SearchMethod,
    SearchPruner,
    values,
)
from cifar_ops.warehouse import schema, synthetic
from tests.conftest import REPO

# (table, CHECK constraint name, the enum its IN list must spell)
CHECKED = [
    ("model_info", "ck_model_info_status", RunStatus),
    ("model_info", "ck_model_info_executor", ExecutorKind),
    ("experiments", "ck_experiments_search_method", SearchMethod),
    ("experiments", "ck_experiments_search_pruner", SearchPruner),
]


def _quoted(sql: str) -> tuple[str, ...]:
    """The string literals of a CHECK's SQL, in order (SQLite keeps the text, PostgreSQL
    rewrites IN (...) to `= ANY (ARRAY['a'::character varying, ...])`: both keep the literals)."""
    return tuple(re.findall(r"'([^']*)'", sql))


def _alembic_upgrade_head(url: str) -> None:
    exe = Path(sys.executable).with_name("alembic")
    env = {**os.environ, "CIFAR_OPS_DATABASE_URL": url}
    done = subprocess.run(
        [str(exe), "upgrade", "head"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_migrated_database_checks_exactly_the_enums(database_url: str) -> None:
    _alembic_upgrade_head(database_url)
    engine = create_engine(database_url)
    try:
        found = inspect(engine)
        for table, name, enum in CHECKED:
            checks = {c["name"]: c["sqltext"] for c in found.get_check_constraints(table)}
            assert name in checks, f"{table} has no CHECK {name}: {sorted(checks)}"
            assert _quoted(str(checks[name])) == values(enum), (table, name)
    finally:
        engine.dispose()


def test_the_schema_module_derives_its_checks_from_the_enums() -> None:
    assert values(RunStatus) == schema.RUN_STATUSES
    assert values(ExecutorKind) == schema.EXECUTORS
    for table, name, enum in CHECKED:
        [check] = [
            c
            for c in schema.metadata.tables[table].constraints
            if isinstance(c, CheckConstraint) and c.name == name
        ]
        assert _quoted(str(check.sqltext)) == values(enum), name


def test_records_speak_the_enums() -> None:
    assert records.RunStatus is RunStatus and records.TERMINAL_STATUSES is TERMINAL_STATUSES
    assert set(RunStatus) >= TERMINAL_STATUSES
    assert not TERMINAL_STATUSES & {RunStatus.QUEUED, RunStatus.RUNNING}
    assert set(HEADLINE_METRICS) <= {f for f in records.RunFinish.__dataclass_fields__}
    assert set(HEADLINE_METRICS) <= set(schema.model_info.c.keys())


def _status_series(registry: CollectorRegistry) -> dict[str, float]:
    return {
        sample.labels["status"]: sample.value
        for family in registry.collect()
        if family.name == "cifar_ops_run_status"
        for sample in family.samples
    }


def test_the_prometheus_state_set_is_the_run_statuses() -> None:
    assert values(RunStatus) == STATUSES
    metrics = RunMetrics(synthetic.run_start("vocabulary"))
    for status in RunStatus:
        metrics.set_status(status)
        series = _status_series(metrics.registry)
        assert set(series) == set(values(RunStatus))
        assert {s for s, v in series.items() if v == 1} == {status.value}


def test_the_cli_status_choices_and_colours_cover_every_status(cli_runner: CliRunner) -> None:
    for status in RunStatus:  # each is accepted (an empty SQLite warehouse in the test's cwd)
        accepted = cli_runner.invoke(app, ["runs", "list", "--status", status.value])
        assert accepted.exit_code == 0, accepted.output
    refused = cli_runner.invoke(app, ["runs", "list", "--status", "bogus"])
    assert refused.exit_code == 2
    offered = re.search(r"is not one of (.*)", refused.output.replace("\n", " "))
    assert offered is not None, refused.output
    assert _quoted(offered.group(1)) == values(RunStatus)
    assert set(STATUS_STYLES) == set(RunStatus) and all(STATUS_STYLES.values())


def _allowed(model: Any, field: str) -> tuple[str, ...]:
    """The allowed values of a config field, as the published JSON schema states them."""
    schema_ = model.model_json_schema()
    prop = schema_["properties"][field]
    if "$ref" in prop:
        prop = schema_["$defs"][prop["$ref"].rsplit("/", 1)[-1]]
    return tuple(prop["enum"])


@pytest.mark.parametrize(
    ("model", "field", "enum"),
    [
        (ExecutorConfig, "kind", ExecutorKind),
        (SearchSpec, "method", SearchMethod),
        (SearchSpec, "pruner", SearchPruner),
    ],
)
def test_the_config_schema_allows_exactly_the_enums(model: Any, field: str, enum: Any) -> None:
    assert _allowed(model, field) == values(enum)
