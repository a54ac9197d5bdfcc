"""The project's closed vocabularies, each defined once.

Everything else that spells one of these sets (the warehouse CHECK constraints, the Prometheus
state set, the CLI's `--status` choices and colours, the config schema) is derived from the enums
here; `tests/test_vocabulary.py` fails when a copy drifts. Adding a value is one line here plus what
docs/module-contracts.md lists for it (a migration for the CHECK constraint, for instance).
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Where a run stands. Terminal ones never change again except by a resume."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"
    PRUNED = "pruned"  # a search's pruner stopped it early: a result, not a failure

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES: frozenset[RunStatus] = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
        RunStatus.PREEMPTED,
        RunStatus.PRUNED,
    }
)


class ExecutorKind(StrEnum):
    """Where a run executes; `executor.kind` picks the implementation in `cifar_ops.executors`."""

    LOCAL = "local"
    KUBERNETES = "kubernetes"


class SearchMethod(StrEnum):
    """How a search picks its trials: grid and random list them up front, tpe and cmaes (Optuna's
    samplers) pick each from the results so far."""

    GRID = "grid"
    RANDOM = "random"
    TPE = "tpe"
    CMAES = "cmaes"


class SearchPruner(StrEnum):
    """What stops a search's losing trials early (Optuna's pruners); none runs every epoch."""

    NONE = "none"
    MEDIAN = "median"
    ASHA = "asha"
    HYPERBAND = "hyperband"


#: The headline numbers of a finished run: `records.RunFinish` fields, `model_info` columns, and
#: what `cifar-ops run --json` reports under "metrics".
HEADLINE_METRICS: tuple[str, ...] = (
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
    "overfitting_gap",
)


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    """The enum's values in definition order, as plain strings (for SQL, CLI choices, labels)."""
    return tuple(member.value for member in enum)
