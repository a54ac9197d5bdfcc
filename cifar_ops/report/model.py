"""What a report shows, as plain frames read from the warehouse views: nothing here computes.

The loader fills these from the reporting views and the renderer only formats them, so every
number in the HTML is a number of a view (the report test checks exactly that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Kpis:
    """The headline numbers of one run, as the run summary view states them."""

    best_accuracy: float | None  # best validation accuracy over the epochs
    best_epoch: int | None
    test_accuracy: float | None
    overfitting_gap: float | None  # train accuracy minus test (else validation) accuracy
    param_count: int | None
    training_seconds: float | None


@dataclass(frozen=True)
class RunReport:
    """Everything the report shows about one run."""

    run_id: str
    experiment: str
    model_name: str
    status: str
    kpis: Kpis
    summary: dict[str, Any]  # the run's row of the run summary view, for the details table
    epochs: pd.DataFrame  # epoch, loss, accuracy, val_loss, val_accuracy
    class_metrics: pd.DataFrame  # class_index, class_name, precision, recall, f1, support
    confusion: pd.DataFrame  # square counts: index = true class name, columns = predicted
    calibration: pd.DataFrame  # bin_index, lower, upper, count, mean_confidence, accuracy
    mistakes: pd.DataFrame  # image_index, true/predicted class names, confidence, image_ref

    @property
    def short_id(self) -> str:
        return self.run_id[:8]


@dataclass(frozen=True)
class SearchReport:
    """The trials of a search: their leaderboard and the hyperparameters that vary."""

    leaderboard: pd.DataFrame  # rank, run_id, trial_index, one column per parameter, metrics
    parameters: list[str]  # dotted config keys, most distinct values first
    varying: list[str]  # those of `parameters` with more than one value: heatmap axis candidates
    heatmap_axes: tuple[str, str] | None  # (x, y) shown first; None with fewer than two
    curves: pd.DataFrame | None = None  # run_id, trial_index, status, epoch, val_accuracy
    epochs_spent: int | None = None  # epochs the trials trained (pruned ones stop early)
    epochs_full: int | None = None  # the same trials, each to a finished trial's length
    importances: dict[str, float] = field(default_factory=dict)  # parameter -> share (fANOVA)


@dataclass(frozen=True)
class ReportData:
    """One report: a title, runs in detail, and a comparison / search section where they apply."""

    title: str
    runs: list[RunReport]  # shown in detail, best first
    # one row per run: test accuracy, loss, overfitting gap, parameters
    comparison: pd.DataFrame | None = None
    search: SearchReport | None = None
    notes: list[str] = field(default_factory=list)  # e.g. which runs were left out of details
