"""Reporting views for Power BI, and the read-only role that may read them and nothing else.

PostgreSQL: views in the `reporting` schema and `cifar_ops_reader` (NOLOGIN, created once per
cluster) with SELECT on them. SQLite: the same views as `reporting_<name>`, no roles.
The view SQL below is this revision's own frozen copy, never imported from cifar_ops: a later
change to cifar_ops.warehouse.views comes with its own migration and cannot alter this one.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 22:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SCHEMA = "reporting"
_READER = "cifar_ops_reader"

_DURATION = {
    "postgresql": "EXTRACT(EPOCH FROM ({end} - {start}))",
    "sqlite": "((julianday({end}) - julianday({start})) * 86400.0)",
}

# score of a run for ranking: test accuracy when it was measured, else validation accuracy
_SCORE = "COALESCE({m}.test_accuracy, {m}.val_accuracy)"

_VIEWS: dict[str, str] = {
    "run_summary": """
SELECT m.run_id, m.experiment, m.trial_index, CAST(m.trial_params AS TEXT) AS trial_params,
       m.model_name, m.param_count, m.config_hash, m.git_sha, m.dataset_fingerprint,
       m.executor, m.job_name, m.hardware, m.status, m.status_reason,
       m.created_at, m.started_at, m.finished_at, {duration_m} AS duration_seconds,
       (SELECT COUNT(*) FROM epoch_stats e WHERE e.run_id = m.run_id) AS epochs_logged,
       m.best_epoch, m.train_accuracy, m.train_loss, m.val_accuracy, m.val_loss,
       m.test_accuracy, m.test_loss, m.overfitting_gap, m.artifact_uri
FROM model_info m""",
    "epoch_curves": """
SELECT e.run_id, m.experiment, m.model_name, m.trial_index, m.status, e.epoch, e.phase,
       e.loss, e.accuracy, e.val_loss, e.val_accuracy,
       e.accuracy - e.val_accuracy AS generalisation_gap,
       e.learning_rate, e.seconds, e.images_per_second
FROM epoch_stats e JOIN model_info m ON m.run_id = e.run_id""",
    "class_metrics": """
SELECT c.run_id, m.experiment, m.model_name, c.split, c.class_index, c.class_name,
       c.precision, c.recall, c.f1, c.support, c.accuracy
FROM class_metrics c JOIN model_info m ON m.run_id = c.run_id""",
    "confusion": """
SELECT x.run_id, m.experiment, m.model_name, x.split,
       x.true_class, t.class_name AS true_class_name,
       x.predicted_class, p.class_name AS predicted_class_name,
       x.count,
       CAST(x.count AS DOUBLE PRECISION)
         / NULLIF(SUM(x.count) OVER (PARTITION BY x.run_id, x.split, x.true_class), 0)
         AS row_share,
       CASE WHEN x.true_class = x.predicted_class THEN 0 ELSE 1 END AS is_error
FROM confusion_matrix x
JOIN model_info m ON m.run_id = x.run_id
LEFT JOIN class_metrics t
  ON t.run_id = x.run_id AND t.split = x.split AND t.class_index = x.true_class
LEFT JOIN class_metrics p
  ON p.run_id = x.run_id AND p.split = x.split AND p.class_index = x.predicted_class""",
    "calibration": """
SELECT b.run_id, m.experiment, m.model_name, b.split, b.bin_index, b.lower, b.upper,
       b.count, b.mean_confidence, b.accuracy, v.expected_calibration_error
FROM calibration_bins b
JOIN evaluations v ON v.run_id = b.run_id AND v.split = b.split
JOIN model_info m ON m.run_id = b.run_id""",
    "model_comparison": """
SELECT m.model_name,
       COUNT(*) AS runs,
       MAX(m.param_count) AS param_count,
       MAX(m.test_accuracy) AS best_test_accuracy,
       AVG(m.test_accuracy) AS mean_test_accuracy,
       MAX(m.val_accuracy) AS best_val_accuracy,
       AVG(m.train_accuracy) AS mean_train_accuracy,
       AVG(m.overfitting_gap) AS mean_overfitting_gap,
       AVG({duration_m}) AS mean_duration_seconds,
       (SELECT b.run_id FROM model_info b
         WHERE b.model_name = m.model_name AND b.status = 'succeeded'
         ORDER BY ({score_b} IS NULL), {score_b} DESC, b.run_id LIMIT 1) AS best_run_id
FROM model_info m
WHERE m.status = 'succeeded'
GROUP BY m.model_name""",
    "misclassifications": """
SELECT p.run_id, m.experiment, m.model_name, p.split, p.image_index, p.image_ref,
       p.true_class, t.class_name AS true_class_name,
       p.predicted_class, q.class_name AS predicted_class_name, p.confidence
FROM predictions_log p
JOIN model_info m ON m.run_id = p.run_id
LEFT JOIN class_metrics t
  ON t.run_id = p.run_id AND t.split = p.split AND t.class_index = p.true_class
LEFT JOIN class_metrics q
  ON q.run_id = p.run_id AND q.split = p.split AND q.class_index = p.predicted_class
WHERE NOT p.correct""",
    "search_leaderboard": """
SELECT m.experiment, x.search_method, x.trial_count, m.trial_index,
       CAST(m.trial_params AS TEXT) AS trial_params, m.run_id, m.model_name, m.status,
       m.config_hash, m.best_epoch, m.train_accuracy, m.val_accuracy, m.test_accuracy,
       m.overfitting_gap, {duration_m} AS duration_seconds,
       RANK() OVER (
         PARTITION BY m.experiment
         ORDER BY (m.status <> 'succeeded'), (m.val_accuracy IS NULL), m.val_accuracy DESC
       ) AS rank
FROM model_info m JOIN experiments x ON x.name = m.experiment
WHERE m.trial_index IS NOT NULL""",
}


def _qualified(name: str, dialect: str) -> str:
    return f"{_SCHEMA}.{name}" if dialect == "postgresql" else f"{_SCHEMA}_{name}"


def _view_sql(name: str, dialect: str) -> str:
    duration = _DURATION["postgresql" if dialect == "postgresql" else "sqlite"]
    return _VIEWS[name].format(
        duration_m=duration.format(start="m.started_at", end="m.finished_at"),
        score_b=_SCORE.format(m="b"),
    )


def _grant_statements() -> list[str]:
    """The NOLOGIN role (created only when missing, cluster-wide) and this database's grants."""
    return [
        f"""DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{_READER}') THEN
    CREATE ROLE {_READER} NOLOGIN;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$""",
        f"""DO $$
BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO {_READER}', current_database());
END $$""",
        f"GRANT USAGE ON SCHEMA {_SCHEMA} TO {_READER}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {_SCHEMA} TO {_READER}",
    ]


def _revoke_statements() -> list[str]:
    """This database's grants back; the cluster-wide role itself stays."""
    return [
        f"REVOKE SELECT ON ALL TABLES IN SCHEMA {_SCHEMA} FROM {_READER}",
        f"REVOKE USAGE ON SCHEMA {_SCHEMA} FROM {_READER}",
        f"""DO $$
BEGIN
  EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM {_READER}', current_database());
END $$""",
    ]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(f"CREATE SCHEMA IF NOT EXISTS {_SCHEMA}")
    for name in _VIEWS:
        op.execute(f"CREATE VIEW {_qualified(name, dialect)} AS{_view_sql(name, dialect)}")
    if dialect == "postgresql":
        for statement in _grant_statements():
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for statement in _revoke_statements():
            op.execute(statement)
    for name in _VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {_qualified(name, dialect)}")
    if dialect == "postgresql":
        op.execute(f"DROP SCHEMA IF EXISTS {_SCHEMA}")
