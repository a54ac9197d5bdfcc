"""Batch scoring in the warehouse: a scoring's header row and one row per image.

Rows are keyed by (scoring id, image path) and written with the bulk upsert (COPY on PostgreSQL),
one transaction per batch: a retried or resumed scoring rewrites the same rows, never adds copies,
and skips the paths already written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update

from cifar_ops.warehouse import bulk
from cifar_ops.warehouse.schema import score_rows, scorings
from cifar_ops.warehouse.store import Store

ROW_COLUMNS = (
    "scoring_id",
    "path",
    "predicted_class",
    "class_index",
    "confidence",
    "top_k",
    "width",
    "height",
    "mode",
)


@dataclass(frozen=True)
class ScoringHeader:
    """What a scoring scored with: the model (as given, its file's sha256, its registered name
    and version when it had one) and the data location."""

    scoring_id: str
    model_ref: str
    model_sha256: str
    registered_name: str | None
    registered_version: int | None
    data_location: str
    class_names: list[str]
    top_k: int
    image_count: int


def begin(store: Store, header: ScoringHeader) -> set[str]:
    """Record (or re-open) the scoring; returns the paths a previous attempt already wrote."""
    row = {**header.__dict__, "started_at": datetime.now(UTC), "finished_at": None}
    with store.transaction(f"starting scoring {header.scoring_id}") as conn:
        bulk.upsert(conn, scorings, row)
        query = select(score_rows.c.path).where(score_rows.c.scoring_id == header.scoring_id)
        return set(conn.execute(query).scalars())


def write_rows(store: Store, rows: Sequence[Sequence[Any]]) -> None:
    """One batch of rows in `ROW_COLUMNS` order, all or none."""
    if not rows:
        return
    with store.transaction(f"writing {len(rows)} score rows") as conn:
        bulk.bulk_upsert(conn, score_rows, ROW_COLUMNS, rows)


def finish(
    store: Store, scoring_id: str, *, images_per_second: float | None, output_uri: str | None
) -> None:
    """Mark the scoring finished with this attempt's throughput and where its files went."""
    values = {
        "finished_at": datetime.now(UTC),
        "images_per_second": images_per_second,
        "output_uri": output_uri,
    }
    with store.transaction(f"finishing scoring {scoring_id}") as conn:
        conn.execute(update(scorings).where(scorings.c.scoring_id == scoring_id).values(**values))


def row_count(store: Store, scoring_id: str) -> int:
    with store.transaction(f"counting the rows of scoring {scoring_id}") as conn:
        query = select(func.count()).where(score_rows.c.scoring_id == scoring_id)
        return int(conn.execute(query).scalar_one())


def rows(store: Store, scoring_id: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Every row of the scoring, by path (the CSV/Parquet files are written from these)."""
    columns = [c for c in ROW_COLUMNS if c != "scoring_id"]
    query = (
        select(*(score_rows.c[c] for c in columns))
        .where(score_rows.c.scoring_id == scoring_id)
        .order_by(score_rows.c.path)
    )
    with store.transaction(f"reading scoring {scoring_id}") as conn:
        return columns, [tuple(r) for r in conn.execute(query)]
