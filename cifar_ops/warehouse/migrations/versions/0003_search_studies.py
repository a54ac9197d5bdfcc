"""Searches run through an Optuna study: status `pruned`, methods tpe and cmaes, the sampler and
pruner of a search, a run's Optuna trial number and the epoch it was pruned at, and a leaderboard
that shows them with the epochs each trial used.

PostgreSQL also gets the `optuna` schema, where Optuna keeps its own tables (and its own
`alembic_version`) for the studies; Optuna creates those tables, `cifar-ops db upgrade` asks it to.
SQLite rebuilds no table (a rebuild drops it, and with foreign keys on the drop would cascade to
the runs' rows): columns are added in place and the CHECK lists rewritten in the stored table SQL.
The SQL below is this revision's own frozen copy, never imported from cifar_ops.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 20:10:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SCHEMA = "reporting"
_READER = "cifar_ops_reader"
_OPTUNA_SCHEMA = "optuna"

_STATUSES_0002 = ("queued", "running", "succeeded", "failed", "cancelled", "preempted")
_STATUSES = (*_STATUSES_0002, "pruned")
_METHODS_0002 = ("grid", "random")
_METHODS = (*_METHODS_0002, "tpe", "cmaes")
_PRUNERS = ("none", "median", "asha", "hyperband")

_DURATION = {
    "postgresql": "EXTRACT(EPOCH FROM (m.finished_at - m.started_at))",
    "sqlite": "((julianday(m.finished_at) - julianday(m.started_at)) * 86400.0)",
}

_LEADERBOARD = """
SELECT m.experiment, x.search_method, x.search_sampler, x.search_pruner, x.trial_count,
       m.trial_index, m.trial_number,
       CAST(m.trial_params AS TEXT) AS trial_params, m.run_id, m.model_name, m.status,
       m.config_hash, m.best_epoch, m.pruned_epoch,
       (SELECT COUNT(*) FROM epoch_stats e WHERE e.run_id = m.run_id) AS epochs_used,
       m.train_accuracy, m.val_accuracy, m.test_accuracy,
       m.overfitting_gap, {duration_m} AS duration_seconds,
       RANK() OVER (
         PARTITION BY m.experiment
         ORDER BY CASE m.status WHEN 'succeeded' THEN 0 WHEN 'pruned' THEN 1 ELSE 2 END,
                  (m.val_accuracy IS NULL), m.val_accuracy DESC
       ) AS rank
FROM model_info m JOIN experiments x ON x.name = m.experiment
WHERE m.trial_index IS NOT NULL"""

_LEADERBOARD_0002 = """
SELECT m.experiment, x.search_method, x.trial_count, m.trial_index,
       CAST(m.trial_params AS TEXT) AS trial_params, m.run_id, m.model_name, m.status,
       m.config_hash, m.best_epoch, m.train_accuracy, m.val_accuracy, m.test_accuracy,
       m.overfitting_gap, {duration_m} AS duration_seconds,
       RANK() OVER (
         PARTITION BY m.experiment
         ORDER BY (m.status <> 'succeeded'), (m.val_accuracy IS NULL), m.val_accuracy DESC
       ) AS rank
FROM model_info m JOIN experiments x ON x.name = m.experiment
WHERE m.trial_index IS NOT NULL"""


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


_COLUMNS = (  # (table, column, type, CHECK name, CHECK condition)
    ("experiments", "search_sampler", sa.String(length=32), None, None),
    (
        "experiments",
        "search_pruner",
        sa.String(length=16),
        "search_pruner",
        _in("search_pruner", _PRUNERS),
    ),
    ("model_info", "trial_number", sa.Integer(), "trial_number_non_negative", "trial_number >= 0"),
    ("model_info", "pruned_epoch", sa.Integer(), "pruned_epoch_positive", "pruned_epoch >= 1"),
)
_CHECKS = (  # (table, CHECK name, column, values before, values after)
    ("experiments", "search_method", "search_method", _METHODS_0002, _METHODS),
    ("model_info", "status", "status", _STATUSES_0002, _STATUSES),
)


def _leaderboard_name(dialect: str) -> str:
    if dialect == "postgresql":
        return f"{_SCHEMA}.search_leaderboard"
    return f"{_SCHEMA}_search_leaderboard"


def _replace_leaderboard(sql: str) -> None:
    dialect = op.get_bind().dialect.name
    name = _leaderboard_name(dialect)
    op.execute(f"DROP VIEW IF EXISTS {name}")
    key = "postgresql" if dialect == "postgresql" else "sqlite"
    op.execute(f"CREATE VIEW {name} AS{sql.format(duration_m=_DURATION[key])}")
    if dialect == "postgresql":
        op.execute(f"GRANT SELECT ON {name} TO {_READER}")


def _add_columns() -> None:
    dialect = op.get_bind().dialect
    for table, column, type_, check, condition in _COLUMNS:
        if dialect.name == "postgresql":
            op.add_column(table, sa.Column(column, type_, nullable=True))
            if check:
                op.create_check_constraint(check, table, cast(str, condition))  # set with `check`
            continue
        ddl = str(type_.compile(dialect=dialect))
        if check:  # a column constraint: SQLite adds no table constraint in place
            ddl += f" CONSTRAINT ck_{table}_{check} CHECK ({condition})"
        op.execute(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")


def _drop_columns() -> None:
    dialect = op.get_bind().dialect.name
    for table, column, _, check, _ in reversed(_COLUMNS):
        if check and dialect == "postgresql":
            op.drop_constraint(op.f(f"ck_{table}_{check}"), table, type_="check")
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")


def _rewrite_checks(before: int, after: int) -> None:
    """Each vocabulary CHECK from one list of values (0: 0002's, 1: this one's) to the other."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table, name, column, *lists in _CHECKS:
            op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
            op.create_check_constraint(name, table, _in(column, lists[after]))
        return
    # SQLite cannot alter a constraint. Its documented way for a change no stored row violates (a
    # value added; or removed once no row holds it) is to edit the stored table SQL and bump the
    # schema cookie, inside this migration's transaction.
    version = bind.execute(sa.text("PRAGMA schema_version")).scalar_one()
    op.execute("PRAGMA writable_schema = ON")
    for table, _, column, *lists in _CHECKS:
        bind.execute(
            sa.text(
                "UPDATE sqlite_master SET sql = replace(sql, :old, :new) "
                "WHERE type = 'table' AND name = :table"
            ),
            {"old": _in(column, lists[before]), "new": _in(column, lists[after]), "table": table},
        )
    op.execute(f"PRAGMA schema_version = {int(version) + 1}")
    op.execute("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE SCHEMA IF NOT EXISTS {_OPTUNA_SCHEMA}")
    _rewrite_checks(0, 1)
    _add_columns()
    _replace_leaderboard(_LEADERBOARD)


def downgrade() -> None:
    op.execute(
        "UPDATE model_info SET status = 'failed', status_reason = 'pruned' WHERE status = 'pruned'"
    )
    op.execute(
        "UPDATE experiments SET search_method = NULL WHERE search_method IN ('tpe', 'cmaes')"
    )
    _replace_leaderboard(_LEADERBOARD_0002)
    _drop_columns()
    _rewrite_checks(1, 0)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP SCHEMA IF EXISTS {_OPTUNA_SCHEMA} CASCADE")
