"""The warehouse tables, named explicitly for Alembic: a run's model info, epoch stats, class
metrics, confusion matrix and predictions, plus experiments, evaluations and calibration bins.

Every table has a natural key, so a retried pod or a re-sent batch upserts the same rows instead
of adding new ones. Ranges are checked in the database, every run foreign key cascades on delete
and is indexed (as the leading column of a key or by its own index) from the first migration.
The migrations in migrations/versions must match this module: `alembic check` (and a test) says so.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from cifar_ops.vocabulary import ExecutorKind, RunStatus, SearchMethod, SearchPruner, values

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

RUN_STATUSES = values(RunStatus)
EXECUTORS = values(ExecutorKind)
SEARCH_METHODS = values(SearchMethod)
SEARCH_PRUNERS = values(SearchPruner)

Json = JSON().with_variant(JSONB(), "postgresql")
RUN_ID = String(32)  # uuid4 hex
SPLIT = String(16)


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _fraction(column: str) -> CheckConstraint:
    """`column` is NULL or in [0, 1] (accuracies, probabilities, precision/recall/F1)."""
    return CheckConstraint(f"{column} BETWEEN 0 AND 1", name=f"{column}_fraction")


def _non_negative(column: str) -> CheckConstraint:
    return CheckConstraint(f"{column} >= 0", name=f"{column}_non_negative")


def _run_fk() -> ForeignKey:
    return ForeignKey("model_info.run_id", ondelete="CASCADE")


experiments = Table(
    "experiments",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("description", Text),
    Column("search_method", String(16)),  # a SearchMethod; NULL for a single run's experiment
    Column("search_parameters", Json),  # dotted key -> values or range, as configured
    Column("trial_count", Integer),
    Column("search_sampler", String(32)),  # Optuna's sampler class; NULL without a study
    Column("search_pruner", String(16)),  # a SearchPruner; NULL for a single run's experiment
    Column(
        "created_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=text("CURRENT_TIMESTAMP"),
    ),
    CheckConstraint(f"search_method IN ({_quoted(SEARCH_METHODS)})", name="search_method"),
    CheckConstraint(f"search_pruner IN ({_quoted(SEARCH_PRUNERS)})", name="search_pruner"),
    _non_negative("trial_count"),
)

model_info = Table(
    "model_info",
    metadata,
    Column("run_id", RUN_ID, primary_key=True),
    Column(
        "experiment",
        String(63),
        ForeignKey("experiments.name", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("trial_index", Integer),
    Column("trial_params", Json),
    Column("trial_number", Integer),  # the Optuna trial number (searches run through a study)
    Column("model_name", String(64), nullable=False),
    Column("param_count", Integer),
    Column("config", Json, nullable=False),
    Column("config_hash", String(64), nullable=False),
    Column("git_sha", String(64)),
    Column("dataset_fingerprint", String(128)),
    Column("executor", String(16), nullable=False),
    Column("job_name", String(253)),
    Column("hardware", Text),
    Column("status", String(16), nullable=False),
    Column("status_reason", Text),
    Column(
        "created_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=text("CURRENT_TIMESTAMP"),
    ),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("best_epoch", Integer),
    Column("train_accuracy", Float),
    Column("train_loss", Float),
    Column("val_accuracy", Float),
    Column("val_loss", Float),
    Column("test_accuracy", Float),
    Column("test_loss", Float),
    Column("overfitting_gap", Float),
    Column("artifact_uri", Text),
    Column("pruned_epoch", Integer),  # status pruned: the last epoch it trained
    CheckConstraint(f"status IN ({_quoted(RUN_STATUSES)})", name="status"),
    CheckConstraint(f"executor IN ({_quoted(EXECUTORS)})", name="executor"),
    _non_negative("trial_index"),
    _non_negative("param_count"),
    CheckConstraint("best_epoch >= 1", name="best_epoch_positive"),
    CheckConstraint("pruned_epoch >= 1", name="pruned_epoch_positive"),
    _non_negative("trial_number"),
    _fraction("train_accuracy"),
    _fraction("val_accuracy"),
    _fraction("test_accuracy"),
    CheckConstraint("overfitting_gap BETWEEN -1 AND 1", name="overfitting_gap_range"),
    Index("ix_model_info_experiment_status", "experiment", "status"),
    Index("ix_model_info_model_name", "model_name"),
    Index("ix_model_info_config_hash", "config_hash"),
    Index("ix_model_info_created_at", "created_at"),
)

epoch_stats = Table(
    "epoch_stats",
    metadata,
    Column("run_id", RUN_ID, _run_fk(), primary_key=True),
    Column("epoch", Integer, primary_key=True),
    Column("phase", String(16), nullable=False),
    Column("loss", Float),
    Column("accuracy", Float),
    Column("val_loss", Float),
    Column("val_accuracy", Float),
    Column("learning_rate", Float),
    Column("seconds", Float),
    Column("images_per_second", Float),
    CheckConstraint("epoch >= 1", name="epoch_positive"),
    _fraction("accuracy"),
    _fraction("val_accuracy"),
    _non_negative("learning_rate"),
    _non_negative("seconds"),
    _non_negative("images_per_second"),
)

evaluations = Table(
    "evaluations",
    metadata,
    Column("run_id", RUN_ID, _run_fk(), primary_key=True),
    Column("split", SPLIT, primary_key=True),
    Column("loss", Float),
    Column("accuracy", Float, nullable=False),
    Column("expected_calibration_error", Float),
    Column("class_names", Json, nullable=False),
    Column("prediction_count", Integer, nullable=False),
    Column(
        "evaluated_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=text("CURRENT_TIMESTAMP"),
    ),
    _fraction("accuracy"),
    _fraction("expected_calibration_error"),
    _non_negative("prediction_count"),
)


def _evaluation_fk(table: str) -> ForeignKeyConstraint:
    """Evaluation rows hang off their `evaluations` row, which hangs off the run: both cascade."""
    return ForeignKeyConstraint(
        ["run_id", "split"],
        ["evaluations.run_id", "evaluations.split"],
        ondelete="CASCADE",
        name=f"fk_{table}_evaluation",
    )


class_metrics = Table(
    "class_metrics",
    metadata,
    Column("run_id", RUN_ID, primary_key=True),
    Column("split", SPLIT, primary_key=True),
    Column("class_index", Integer, primary_key=True),
    Column("class_name", String(128), nullable=False),
    Column("precision", Float, nullable=False),
    Column("recall", Float, nullable=False),
    Column("f1", Float, nullable=False),
    Column("support", Integer, nullable=False),
    Column("accuracy", Float, nullable=False),
    _evaluation_fk("class_metrics"),
    _non_negative("class_index"),
    _fraction("precision"),
    _fraction("recall"),
    _fraction("f1"),
    _non_negative("support"),
    _fraction("accuracy"),
)

confusion_matrix = Table(
    "confusion_matrix",
    metadata,
    Column("run_id", RUN_ID, primary_key=True),
    Column("split", SPLIT, primary_key=True),
    Column("true_class", Integer, primary_key=True),
    Column("predicted_class", Integer, primary_key=True),
    Column("count", Integer, nullable=False),
    _evaluation_fk("confusion_matrix"),
    _non_negative("true_class"),
    _non_negative("predicted_class"),
    _non_negative("count"),
)

calibration_bins = Table(
    "calibration_bins",
    metadata,
    Column("run_id", RUN_ID, primary_key=True),
    Column("split", SPLIT, primary_key=True),
    Column("bin_index", Integer, primary_key=True),
    Column("lower", Float, nullable=False),
    Column("upper", Float, nullable=False),
    Column("count", Integer, nullable=False),
    Column("mean_confidence", Float),
    Column("accuracy", Float),
    _evaluation_fk("calibration_bins"),
    _non_negative("bin_index"),
    CheckConstraint("lower >= 0 AND upper <= 1 AND lower <= upper", name="bounds"),
    _non_negative("count"),
    _fraction("mean_confidence"),
    _fraction("accuracy"),
)

predictions_log = Table(
    "predictions_log",
    metadata,
    Column("run_id", RUN_ID, primary_key=True),
    Column("split", SPLIT, primary_key=True),
    Column("image_index", Integer, primary_key=True),
    Column("true_class", Integer, nullable=False),
    Column("predicted_class", Integer, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("correct", Boolean(create_constraint=False), nullable=False),
    Column("image_ref", Text),
    _evaluation_fk("predictions_log"),
    _non_negative("image_index"),
    _non_negative("true_class"),
    _non_negative("predicted_class"),
    _fraction("confidence"),
)

# --- model registry: named models, their immutable versions, movable aliases --------------------

registered_models = Table(
    "registered_models",
    metadata,
    Column("name", String(63), primary_key=True),
    Column(
        "created_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=text("CURRENT_TIMESTAMP"),
    ),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column(
        "name",
        String(63),
        ForeignKey("registered_models.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("version", Integer, primary_key=True),
    # a registered version outlives nothing it points at: deleting its run is refused
    Column("run_id", RUN_ID, ForeignKey("model_info.run_id"), nullable=False, index=True),
    Column("model_uri", Text, nullable=False),
    Column("config_hash", String(64), nullable=False),
    Column("dataset_fingerprint", String(128)),
    Column("test_accuracy", Float),
    Column("test_loss", Float),
    Column("registered_by", String(128), nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("version >= 1", name="version_positive"),
    _fraction("test_accuracy"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("alias", String(63), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("set_by", String(128), nullable=False),
    Column("set_at", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(
        ["name", "version"],
        ["model_versions.name", "model_versions.version"],
        ondelete="CASCADE",
        name="fk_model_aliases_version",
    ),
)

# --- batch scoring: one scoring per (model file, data location, k); one row per image -----------

scorings = Table(
    "scorings",
    metadata,
    Column("scoring_id", String(32), primary_key=True),
    Column("model_ref", Text, nullable=False),  # as given: a path, URL, run id or models:/ name
    Column("model_sha256", String(64), nullable=False),
    Column("registered_name", String(63)),
    Column("registered_version", Integer),
    Column("data_location", Text, nullable=False),
    Column("class_names", Json, nullable=False),
    Column("top_k", Integer, nullable=False),
    Column("image_count", Integer, nullable=False),
    Column("images_per_second", Float),
    Column("output_uri", Text),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    CheckConstraint("top_k >= 1", name="top_k_positive"),
    _non_negative("image_count"),
    _non_negative("images_per_second"),
)

score_rows = Table(
    "score_rows",
    metadata,
    Column(
        "scoring_id",
        String(32),
        ForeignKey("scorings.scoring_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("path", Text, primary_key=True),  # relative to the scoring's data location
    Column("predicted_class", String(128), nullable=False),
    Column("class_index", Integer, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("top_k", Text, nullable=False),  # JSON list of [class, probability], best first
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("mode", String(16), nullable=False),
    _non_negative("class_index"),
    _fraction("confidence"),
    _non_negative("width"),
    _non_negative("height"),
)
