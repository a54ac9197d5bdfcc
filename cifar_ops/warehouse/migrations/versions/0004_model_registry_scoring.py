"""The model registry (named models, immutable versions, movable aliases) and batch scoring (one
scoring per model file, data location and k; one row per image), with a reporting view of each.

The SQL below is this revision's own frozen copy, never imported from cifar_ops.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 20:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SCHEMA = "reporting"
_READER = "cifar_ops_reader"

_ALIASES = {
    "postgresql": "(SELECT string_agg(a.alias, ',' ORDER BY a.alias) FROM model_aliases a "
    "WHERE a.name = {v}.name AND a.version = {v}.version)",
    "sqlite": "(SELECT group_concat(o.alias, ',') FROM (SELECT a.alias FROM model_aliases a "
    "WHERE a.name = {v}.name AND a.version = {v}.version ORDER BY a.alias) o)",
}

_VIEWS: dict[str, str] = {
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


def _qualified(name: str, dialect: str) -> str:
    return f"{_SCHEMA}.{name}" if dialect == "postgresql" else f"{_SCHEMA}_{name}"


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _now() -> sa.TextClause:
    return sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_registered_models")),
    )
    op.create_table(
        "model_versions",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("model_uri", sa.Text(), nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("dataset_fingerprint", sa.String(length=128), nullable=True),
        sa.Column("test_accuracy", sa.Float(), nullable=True),
        sa.Column("test_loss", sa.Float(), nullable=True),
        sa.Column("registered_by", sa.String(length=128), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "test_accuracy BETWEEN 0 AND 1", name=op.f("ck_model_versions_test_accuracy_fraction")
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_model_versions_version_positive")),
        sa.ForeignKeyConstraint(
            ["name"],
            ["registered_models.name"],
            name=op.f("fk_model_versions_name_registered_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["model_info.run_id"], name=op.f("fk_model_versions_run_id_model_info")
        ),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_model_versions")),
    )
    op.create_index(op.f("ix_model_versions_run_id"), "model_versions", ["run_id"], unique=False)
    op.create_table(
        "model_aliases",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("alias", sa.String(length=63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("set_by", sa.String(length=128), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["name", "version"],
            ["model_versions.name", "model_versions.version"],
            name="fk_model_aliases_version",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("name", "alias", name=op.f("pk_model_aliases")),
    )
    op.create_table(
        "scorings",
        sa.Column("scoring_id", sa.String(length=32), nullable=False),
        sa.Column("model_ref", sa.Text(), nullable=False),
        sa.Column("model_sha256", sa.String(length=64), nullable=False),
        sa.Column("registered_name", sa.String(length=63), nullable=True),
        sa.Column("registered_version", sa.Integer(), nullable=True),
        sa.Column("data_location", sa.Text(), nullable=False),
        sa.Column("class_names", _json(), nullable=False),
        sa.Column("top_k", sa.Integer(), nullable=False),
        sa.Column("image_count", sa.Integer(), nullable=False),
        sa.Column("images_per_second", sa.Float(), nullable=True),
        sa.Column("output_uri", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("image_count >= 0", name=op.f("ck_scorings_image_count_non_negative")),
        sa.CheckConstraint(
            "images_per_second >= 0", name=op.f("ck_scorings_images_per_second_non_negative")
        ),
        sa.CheckConstraint("top_k >= 1", name=op.f("ck_scorings_top_k_positive")),
        sa.PrimaryKeyConstraint("scoring_id", name=op.f("pk_scorings")),
    )
    op.create_table(
        "score_rows",
        sa.Column("scoring_id", sa.String(length=32), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("predicted_class", sa.String(length=128), nullable=False),
        sa.Column("class_index", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("top_k", sa.Text(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.CheckConstraint("class_index >= 0", name=op.f("ck_score_rows_class_index_non_negative")),
        sa.CheckConstraint(
            "confidence BETWEEN 0 AND 1", name=op.f("ck_score_rows_confidence_fraction")
        ),
        sa.CheckConstraint("height >= 0", name=op.f("ck_score_rows_height_non_negative")),
        sa.CheckConstraint("width >= 0", name=op.f("ck_score_rows_width_non_negative")),
        sa.ForeignKeyConstraint(
            ["scoring_id"],
            ["scorings.scoring_id"],
            name=op.f("fk_score_rows_scoring_id_scorings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("scoring_id", "path", name=op.f("pk_score_rows")),
    )
    dialect = op.get_bind().dialect.name
    key = "postgresql" if dialect == "postgresql" else "sqlite"
    for name, sql in _VIEWS.items():
        view = _qualified(name, dialect)
        op.execute(f"CREATE VIEW {view} AS{sql.format(aliases_v=_ALIASES[key].format(v='v'))}")
        if dialect == "postgresql":
            op.execute(f"GRANT SELECT ON {view} TO {_READER}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in _VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {_qualified(name, dialect)}")
    op.drop_table("score_rows")
    op.drop_table("scorings")
    op.drop_table("model_aliases")
    op.drop_index(op.f("ix_model_versions_run_id"), table_name="model_versions")
    op.drop_table("model_versions")
    op.drop_table("registered_models")
