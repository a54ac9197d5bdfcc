"""Reporting views for Power BI and `cifar-ops export`: flat, named, read-only.

On PostgreSQL they live in the `reporting` schema (the read-only role may read nothing else); on
SQLite, which has no schemas, the same views are `reporting_<name>` in the main database. The SQL
is written once, with the few dialect differences (durations) filled in per dialect. Migrations
carry their own frozen copy of this SQL: a change to a view needs a new migration that drops and
re-creates it with the new text (a test compares the migrated views with this module).
"""

from __future__ import annotations

REPORTING_SCHEMA = "reporting"
READER_ROLE = "cifar_ops_reader"

_DURATION = {
    "postgresql": "EXTRACT(EPOCH FROM ({end} - {start}))",
    "sqlite": "((julianday({end}) - julianday({start})) * 86400.0)",
}

# a model version's aliases, comma-separated in name order (SQLite orders in a subquery)
_ALIASES = {
    "postgresql": "(SELECT string_agg(a.alias, ',' ORDER BY a.alias) FROM model_aliases a "
    "WHERE a.name = {v}.name AND a.version = {v}.version)",
    "sqlite": "(SELECT group_concat(o.alias, ',') FROM (SELECT a.alias FROM model_aliases a "
    "WHERE a.name = {v}.name AND a.version = {v}.version ORDER BY a.alias) o)",
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
WHERE m.trial_index IS NOT NULL""",
    "model_registry": """
SELECT v.name, v.version, {aliases_v} AS aliases, v.run_id, m.experiment, m.model_name,
       v.model_uri, v.config_hash, v.dataset_fingerprint, v.test_accuracy, v.test_loss,
       v.registered_by, v.registered_at
FROM model_versions v JOIN model_info m ON m.run_id = v.run_id""",
    "batch_scores": """
SELECT r.scoring_id, s.registered_name, s.registered_version, s.model_ref, s.model_sha256,
       s.data_location, r.path, r.predicted_class, r.class_index, r.confidence, r.top_k,
       r.width, r.height, r.mode, s.started_at, s.finished_at, s.images_per_second
FROM score_rows r JOIN scorings s ON s.scoring_id = r.scoring_id""",
}

VIEW_NAMES: tuple[str, ...] = tuple(_VIEWS)


def qualified_name(name: str, dialect: str) -> str:
    """`reporting.<name>` on PostgreSQL, `reporting_<name>` on SQLite."""
    if dialect == "postgresql":
        return f"{REPORTING_SCHEMA}.{name}"
    return f"{REPORTING_SCHEMA}_{name}"


def view_sql(name: str, dialect: str) -> str:
    """The SELECT behind one view, for this dialect."""
    key = "postgresql" if dialect == "postgresql" else "sqlite"
    return _VIEWS[name].format(
        duration_m=_DURATION[key].format(start="m.started_at", end="m.finished_at"),
        score_b=_SCORE.format(m="b"),
        aliases_v=_ALIASES[key].format(v="v"),
    )


def create_statements(dialect: str) -> list[str]:
    """DDL that creates the reporting schema (PostgreSQL) and every view, as this module has them.

    What a migration that changes a view copies into itself; the migrated views are compared with
    it by the tests.
    """
    statements = []
    if dialect == "postgresql":
        statements.append(f"CREATE SCHEMA IF NOT EXISTS {REPORTING_SCHEMA}")
    for name in VIEW_NAMES:
        view = qualified_name(name, dialect)
        statements.append(f"CREATE VIEW {view} AS{view_sql(name, dialect)}")
    return statements
