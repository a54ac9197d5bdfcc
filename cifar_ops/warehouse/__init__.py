"""The run warehouse: SQLAlchemy tables under Alembic, idempotent bulk writes, reporting views.

`open_store()` is the entry point; it returns a `Store` (a `cifar_ops.records.RunSink`).
"""

from cifar_ops.warehouse.results import (
    EvaluationResult,
    ExperimentSummary,
    PredictionRow,
    RunDetail,
    RunSummary,
)
from cifar_ops.warehouse.store import Store, open_store

__all__ = [
    "EvaluationResult",
    "ExperimentSummary",
    "PredictionRow",
    "RunDetail",
    "RunSummary",
    "Store",
    "open_store",
]
