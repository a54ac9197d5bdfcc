"""Matplotlib figures (Agg backend) returned as inline SVG markup, so the report needs no network.

Text stays text (`svg.fonttype = none`) so the page stays small and searchable, and each figure
gets its own hash salt so the clip-path ids of several inline SVGs never collide.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

_COUNTER = itertools.count()
_STYLE: dict[str, Any] = {
    "svg.fonttype": "none",
    "text.parse_math": False,  # class names and parameters are user text: `$x$` is not math
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
TRAIN_COLOUR, VAL_COLOUR, THIRD_COLOUR = "#2563eb", "#ea580c", "#16a34a"


@contextmanager
def _figure(width: float, height: float, *, ncols: int = 1) -> Iterator[tuple[Figure, list]]:
    rc: dict[Any, Any] = {**_STYLE, "svg.hashsalt": f"cifar-ops-{next(_COUNTER)}"}
    with plt.rc_context(rc):
        fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
        try:
            yield fig, list(axes[0])
        finally:
            plt.close(fig)


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE for inline use


def learning_curves(epochs: pd.DataFrame) -> str:
    """Train and validation accuracy and loss by epoch, side by side."""
    with _figure(9, 3.2, ncols=2) as (fig, (acc_ax, loss_ax)):
        x = epochs["epoch"]
        for ax, metric, label in ((acc_ax, "accuracy", "Accuracy"), (loss_ax, "loss", "Loss")):
            ax.plot(x, epochs[metric], marker="o", color=TRAIN_COLOUR, label="train")
            if epochs[f"val_{metric}"].notna().any():
                ax.plot(
                    x, epochs[f"val_{metric}"], marker="o", color=VAL_COLOUR, label="validation"
                )
            ax.set_title(f"{label} by epoch")
            ax.set_xlabel("epoch")
            ax.set_ylabel(label.lower())
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.legend(frameon=False)
        return _svg(fig)


def class_metrics_bars(metrics: pd.DataFrame) -> str:
    """Precision, recall and F1 of each class as grouped bars."""
    with _figure(9, 3.2) as (fig, (ax,)):
        x = np.arange(len(metrics))
        width = 0.27
        for offset, (column, colour) in zip(
            (-width, 0.0, width),
            (("precision", TRAIN_COLOUR), ("recall", VAL_COLOUR), ("f1", THIRD_COLOUR)),
            strict=True,
        ):
            ax.bar(x + offset, metrics[column], width, label=column, color=colour)
        ax.set_xticks(x, metrics["class_name"], rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_title("Per-class precision, recall and F1")
        ax.legend(frameon=False, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.25))
        return _svg(fig)


def _heatmap(
    ax, values: np.ndarray, xlabels: list[str], ylabels: list[str], fmt: str, cmap: str
) -> None:
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size else 1.0
    image = ax.imshow(values, cmap=cmap, aspect="auto", vmin=0, vmax=top or 1.0)
    ax.grid(False)
    ax.set_xticks(range(len(xlabels)), xlabels, rotation=30, ha="right")
    ax.set_yticks(range(len(ylabels)), ylabels)
    for (row, col), value in np.ndenumerate(values):
        if not np.isfinite(value):
            continue
        red, green, blue, _ = image.cmap(image.norm(value))
        dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5  # text contrasts with the cell
        ax.text(col, row, format(value, fmt), ha="center", va="center",
                color="white" if dark else "#111827", fontsize=8)  # fmt: skip
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


def confusion_heatmap(confusion: pd.DataFrame) -> str:
    """Counts of true (rows) against predicted (columns) classes."""
    size = max(4.0, 0.45 * len(confusion) + 2.5)
    with _figure(size + 1, size) as (fig, (ax,)):
        values = confusion.to_numpy(dtype=float)
        labels = [str(c) for c in confusion.columns]
        _heatmap(ax, values, labels, [str(i) for i in confusion.index], ".0f", "Blues")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title("Confusion matrix")
        return _svg(fig)


def reliability_diagram(calibration: pd.DataFrame) -> str:
    """Accuracy against confidence per bin; the diagonal is a perfectly calibrated model."""
    with _figure(4.6, 4.2) as (fig, (ax,)):
        filled = calibration[calibration["count"] > 0]
        centres = (calibration["lower"] + calibration["upper"]) / 2
        widths = calibration["upper"] - calibration["lower"]
        ax.bar(centres, calibration["accuracy"].fillna(0), widths, color=TRAIN_COLOUR,
               edgecolor="white", alpha=0.85, label="accuracy")  # fmt: skip
        ax.plot([0, 1], [0, 1], linestyle="--", color="#6b7280", label="perfect calibration")
        ax.plot(filled["mean_confidence"], filled["accuracy"], marker="o", linestyle="",
                color=VAL_COLOUR, label="mean confidence")  # fmt: skip
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.04)  # room for a dot at accuracy 1
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title("Reliability diagram")
        ax.legend(frameon=False, loc="upper left")
        return _svg(fig)


def comparison_bars(comparison: pd.DataFrame) -> str:
    """Test accuracy and overfitting gap of each compared run."""
    with _figure(9, 3.4, ncols=2) as (fig, (acc_ax, gap_ax)):
        labels = comparison["label"].tolist()
        y = np.arange(len(labels))
        acc_ax.barh(y, comparison["test_accuracy"].fillna(0), color=TRAIN_COLOUR)
        acc_ax.set_yticks(y, labels)
        acc_ax.invert_yaxis()
        acc_ax.set_xlim(0, 1)
        acc_ax.set_title("Test accuracy")
        gaps = comparison["overfitting_gap"].fillna(0)
        gap_ax.barh(y, gaps, color=[VAL_COLOUR if g > 0 else THIRD_COLOUR for g in gaps])
        gap_ax.set_yticks(y, [""] * len(labels))
        gap_ax.invert_yaxis()
        gap_ax.axvline(0, color="#111827", linewidth=0.8)
        gap_ax.set_title("Overfitting gap (train - test)")
        return _svg(fig)


def _axis_order(values: pd.Series) -> list:
    distinct = list(dict.fromkeys(values.tolist()))
    try:
        return sorted(distinct)
    except TypeError:
        return sorted(distinct, key=str)


def search_pivot(
    leaderboard: pd.DataFrame, x: str, y: str, metric: str = "val_accuracy"
) -> pd.DataFrame:
    """Best `metric` at each (y, x) point over the other parameters: what the heatmap shows."""
    frame = leaderboard[[x, y, metric]].copy()
    for column in (x, y):
        frame[column] = frame[column].map(_label)
    pivot = frame.pivot_table(index=y, columns=x, values=metric, aggfunc="max", dropna=False)
    xs = [_label(v) for v in _axis_order(leaderboard[x])]
    ys = [_label(v) for v in _axis_order(leaderboard[y])]
    return pivot.reindex(index=list(dict.fromkeys(ys)), columns=list(dict.fromkeys(xs)))


def _label(value: object) -> str:
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:g}"
    return str(value)


def search_heatmap(pivot: pd.DataFrame, x: str, y: str) -> str:
    """Validation accuracy over two hyperparameters (best over the others)."""
    width = max(4.5, 0.9 * len(pivot.columns) + 2.5)
    height = max(3.0, 0.5 * len(pivot.index) + 1.8)
    with _figure(width, height) as (fig, (ax,)):
        values = pivot.to_numpy(dtype=float)
        _heatmap(ax, values, list(pivot.columns), list(pivot.index), ".3f", "viridis")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title("Best validation accuracy")
        return _svg(fig)


def trial_curves(curves: pd.DataFrame) -> str:
    """Validation accuracy by epoch of every trial on one plot; pruned trials dashed, ending
    with a cross where they were stopped."""
    with _figure(7, 3.4) as (fig, (ax,)):
        for _run, frame in curves.groupby("run_id", sort=False):
            pruned = (frame["status"] == "pruned").any()
            ax.plot(
                frame["epoch"],
                frame["val_accuracy"],
                linestyle="--" if pruned else "-",
                color=VAL_COLOUR if pruned else TRAIN_COLOUR,
                alpha=0.55 if pruned else 0.9,
                linewidth=1.2,
                label=None,
            )
            if pruned:
                last = frame.iloc[-1]
                ax.plot([last["epoch"]], [last["val_accuracy"]], "x", color=VAL_COLOUR)
        ax.plot([], [], "-", color=TRAIN_COLOUR, label="ran to the end")
        ax.plot([], [], "--x", color=VAL_COLOUR, label="pruned")
        ax.set_xlabel("Epoch")
        ax.set_ylabel("Validation accuracy")
        ax.legend(loc="lower right")
        return _svg(fig)


def epochs_against_grid(spent: int, full: int) -> str:
    """The epochs the search trained against the same trials each run to the end."""
    with _figure(6, 1.4) as (fig, (ax,)):
        ax.barh(
            ["all to the end", "this search"], [full, spent], color=[THIRD_COLOUR, TRAIN_COLOUR]
        )
        for y, value in enumerate((full, spent)):
            ax.text(value, y, f" {value}", va="center")
        ax.set_xlabel("Epochs trained")
        ax.grid(axis="y", visible=False)
        return _svg(fig)


def importance_bars(importances: dict[str, float]) -> str:
    """Each parameter's share of the validation accuracy's variance (Optuna's fANOVA)."""
    keys = list(importances)[::-1]  # largest on top
    with _figure(6, 0.5 + 0.35 * len(keys)) as (fig, (ax,)):
        ax.barh(keys, [importances[k] for k in keys], color=TRAIN_COLOUR)
        ax.set_xlabel("Importance for validation accuracy")
        ax.set_xlim(0, 1)
        ax.grid(axis="y", visible=False)
        return _svg(fig)
