"""Initial tables: seed 000's five, plus experiments, evaluations and calibration bins.

Revision ID: 0001
Revises:
Create Date: 2026-11-24 22:26:52.139089
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# JSON on SQLite, JSONB on PostgreSQL (as schema.Json)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("search_method", sa.String(length=16), nullable=True),
        sa.Column("search_parameters", JSON_DOC, nullable=True),
        sa.Column("trial_count", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "search_method IN ('grid', 'random')", name=op.f("ck_experiments_search_method")
        ),
        sa.CheckConstraint(
            "trial_count >= 0", name=op.f("ck_experiments_trial_count_non_negative")
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_experiments")),
    )
    op.create_table(
        "model_info",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("experiment", sa.String(length=63), nullable=False),
        sa.Column("trial_index", sa.Integer(), nullable=True),
        sa.Column("trial_params", JSON_DOC, nullable=True),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("param_count", sa.Integer(), nullable=True),
        sa.Column("config", JSON_DOC, nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("git_sha", sa.String(length=64), nullable=True),
        sa.Column("dataset_fingerprint", sa.String(length=128), nullable=True),
        sa.Column("executor", sa.String(length=16), nullable=False),
        sa.Column("job_name", sa.String(length=253), nullable=True),
        sa.Column("hardware", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("best_epoch", sa.Integer(), nullable=True),
        sa.Column("train_accuracy", sa.Float(), nullable=True),
        sa.Column("train_loss", sa.Float(), nullable=True),
        sa.Column("val_accuracy", sa.Float(), nullable=True),
        sa.Column("val_loss", sa.Float(), nullable=True),
        sa.Column("test_accuracy", sa.Float(), nullable=True),
        sa.Column("test_loss", sa.Float(), nullable=True),
        sa.Column("overfitting_gap", sa.Float(), nullable=True),
        sa.Column("artifact_uri", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "executor IN ('local', 'kubernetes')", name=op.f("ck_model_info_executor")
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'preempted')",
            name=op.f("ck_model_info_status"),
        ),
        sa.CheckConstraint("best_epoch >= 1", name=op.f("ck_model_info_best_epoch_positive")),
        sa.CheckConstraint(
            "overfitting_gap BETWEEN -1 AND 1", name=op.f("ck_model_info_overfitting_gap_range")
        ),
        sa.CheckConstraint("param_count >= 0", name=op.f("ck_model_info_param_count_non_negative")),
        sa.CheckConstraint(
            "test_accuracy BETWEEN 0 AND 1", name=op.f("ck_model_info_test_accuracy_fraction")
        ),
        sa.CheckConstraint(
            "train_accuracy BETWEEN 0 AND 1", name=op.f("ck_model_info_train_accuracy_fraction")
        ),
        sa.CheckConstraint("trial_index >= 0", name=op.f("ck_model_info_trial_index_non_negative")),
        sa.CheckConstraint(
            "val_accuracy BETWEEN 0 AND 1", name=op.f("ck_model_info_val_accuracy_fraction")
        ),
        sa.ForeignKeyConstraint(
            ["experiment"],
            ["experiments.name"],
            name=op.f("fk_model_info_experiment_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_model_info")),
    )
    op.create_index("ix_model_info_config_hash", "model_info", ["config_hash"], unique=False)
    op.create_index("ix_model_info_created_at", "model_info", ["created_at"], unique=False)
    op.create_index(
        "ix_model_info_experiment_status", "model_info", ["experiment", "status"], unique=False
    )
    op.create_index("ix_model_info_model_name", "model_info", ["model_name"], unique=False)
    op.create_table(
        "epoch_stats",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("loss", sa.Float(), nullable=True),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("val_loss", sa.Float(), nullable=True),
        sa.Column("val_accuracy", sa.Float(), nullable=True),
        sa.Column("learning_rate", sa.Float(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("images_per_second", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "accuracy BETWEEN 0 AND 1", name=op.f("ck_epoch_stats_accuracy_fraction")
        ),
        sa.CheckConstraint("epoch >= 1", name=op.f("ck_epoch_stats_epoch_positive")),
        sa.CheckConstraint(
            "images_per_second >= 0", name=op.f("ck_epoch_stats_images_per_second_non_negative")
        ),
        sa.CheckConstraint(
            "learning_rate >= 0", name=op.f("ck_epoch_stats_learning_rate_non_negative")
        ),
        sa.CheckConstraint("seconds >= 0", name=op.f("ck_epoch_stats_seconds_non_negative")),
        sa.CheckConstraint(
            "val_accuracy BETWEEN 0 AND 1", name=op.f("ck_epoch_stats_val_accuracy_fraction")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["model_info.run_id"],
            name=op.f("fk_epoch_stats_run_id_model_info"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "epoch", name=op.f("pk_epoch_stats")),
    )
    op.create_table(
        "evaluations",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("split", sa.String(length=16), nullable=False),
        sa.Column("loss", sa.Float(), nullable=True),
        sa.Column("accuracy", sa.Float(), nullable=False),
        sa.Column("expected_calibration_error", sa.Float(), nullable=True),
        sa.Column("class_names", JSON_DOC, nullable=False),
        sa.Column("prediction_count", sa.Integer(), nullable=False),
        sa.Column(
            "evaluated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "accuracy BETWEEN 0 AND 1", name=op.f("ck_evaluations_accuracy_fraction")
        ),
        sa.CheckConstraint(
            "expected_calibration_error BETWEEN 0 AND 1",
            name=op.f("ck_evaluations_expected_calibration_error_fraction"),
        ),
        sa.CheckConstraint(
            "prediction_count >= 0", name=op.f("ck_evaluations_prediction_count_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["model_info.run_id"],
            name=op.f("fk_evaluations_run_id_model_info"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "split", name=op.f("pk_evaluations")),
    )
    op.create_table(
        "calibration_bins",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("split", sa.String(length=16), nullable=False),
        sa.Column("bin_index", sa.Integer(), nullable=False),
        sa.Column("lower", sa.Float(), nullable=False),
        sa.Column("upper", sa.Float(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("mean_confidence", sa.Float(), nullable=True),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "accuracy BETWEEN 0 AND 1", name=op.f("ck_calibration_bins_accuracy_fraction")
        ),
        sa.CheckConstraint(
            "bin_index >= 0", name=op.f("ck_calibration_bins_bin_index_non_negative")
        ),
        sa.CheckConstraint("count >= 0", name=op.f("ck_calibration_bins_count_non_negative")),
        sa.CheckConstraint(
            "lower >= 0 AND upper <= 1 AND lower <= upper", name=op.f("ck_calibration_bins_bounds")
        ),
        sa.CheckConstraint(
            "mean_confidence BETWEEN 0 AND 1",
            name=op.f("ck_calibration_bins_mean_confidence_fraction"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id", "split"],
            ["evaluations.run_id", "evaluations.split"],
            name="fk_calibration_bins_evaluation",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "split", "bin_index", name=op.f("pk_calibration_bins")),
    )
    op.create_table(
        "class_metrics",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("split", sa.String(length=16), nullable=False),
        sa.Column("class_index", sa.Integer(), nullable=False),
        sa.Column("class_name", sa.String(length=128), nullable=False),
        sa.Column("precision", sa.Float(), nullable=False),
        sa.Column("recall", sa.Float(), nullable=False),
        sa.Column("f1", sa.Float(), nullable=False),
        sa.Column("support", sa.Integer(), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=False),
        sa.CheckConstraint(
            "accuracy BETWEEN 0 AND 1", name=op.f("ck_class_metrics_accuracy_fraction")
        ),
        sa.CheckConstraint(
            "class_index >= 0", name=op.f("ck_class_metrics_class_index_non_negative")
        ),
        sa.CheckConstraint("f1 BETWEEN 0 AND 1", name=op.f("ck_class_metrics_f1_fraction")),
        sa.CheckConstraint(
            "precision BETWEEN 0 AND 1", name=op.f("ck_class_metrics_precision_fraction")
        ),
        sa.CheckConstraint("recall BETWEEN 0 AND 1", name=op.f("ck_class_metrics_recall_fraction")),
        sa.CheckConstraint("support >= 0", name=op.f("ck_class_metrics_support_non_negative")),
        sa.ForeignKeyConstraint(
            ["run_id", "split"],
            ["evaluations.run_id", "evaluations.split"],
            name="fk_class_metrics_evaluation",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "split", "class_index", name=op.f("pk_class_metrics")),
    )
    op.create_table(
        "confusion_matrix",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("split", sa.String(length=16), nullable=False),
        sa.Column("true_class", sa.Integer(), nullable=False),
        sa.Column("predicted_class", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.CheckConstraint("count >= 0", name=op.f("ck_confusion_matrix_count_non_negative")),
        sa.CheckConstraint(
            "predicted_class >= 0", name=op.f("ck_confusion_matrix_predicted_class_non_negative")
        ),
        sa.CheckConstraint(
            "true_class >= 0", name=op.f("ck_confusion_matrix_true_class_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["run_id", "split"],
            ["evaluations.run_id", "evaluations.split"],
            name="fk_confusion_matrix_evaluation",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "split", "true_class", "predicted_class", name=op.f("pk_confusion_matrix")
        ),
    )
    op.create_table(
        "predictions_log",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("split", sa.String(length=16), nullable=False),
        sa.Column("image_index", sa.Integer(), nullable=False),
        sa.Column("true_class", sa.Integer(), nullable=False),
        sa.Column("predicted_class", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("image_ref", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "confidence BETWEEN 0 AND 1", name=op.f("ck_predictions_log_confidence_fraction")
        ),
        sa.CheckConstraint(
            "image_index >= 0", name=op.f("ck_predictions_log_image_index_non_negative")
        ),
        sa.CheckConstraint(
            "predicted_class >= 0", name=op.f("ck_predictions_log_predicted_class_non_negative")
        ),
        sa.CheckConstraint(
            "true_class >= 0", name=op.f("ck_predictions_log_true_class_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["run_id", "split"],
            ["evaluations.run_id", "evaluations.split"],
            name="fk_predictions_log_evaluation",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "split", "image_index", name=op.f("pk_predictions_log")),
    )


def downgrade() -> None:
    op.drop_table("predictions_log")
    op.drop_table("confusion_matrix")
    op.drop_table("class_metrics")
    op.drop_table("calibration_bins")
    op.drop_table("evaluations")
    op.drop_table("epoch_stats")
    op.drop_index("ix_model_info_model_name", table_name="model_info")
    op.drop_index("ix_model_info_experiment_status", table_name="model_info")
    op.drop_index("ix_model_info_created_at", table_name="model_info")
    op.drop_index("ix_model_info_config_hash", table_name="model_info")
    op.drop_table("model_info")
    op.drop_table("experiments")
