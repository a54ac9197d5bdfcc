"""Rendering a `ReportData` to HTML: self-contained, every number machine-readable, atomic write."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cifar_ops.report import plots, render
from cifar_ops.report.model import Kpis, ReportData, RunReport, SearchReport
from cifar_ops.report.thumbnails import thumbnail_data_uri

CLASSES = ["airplane", "car", "bird"]


def _run(run_id: str, image_ref: str | None = None) -> RunReport:
    epochs = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "phase": ["train"] * 3,
            "loss": [1.2, 0.9, 0.7],
            "accuracy": [0.41, 0.55, 0.63],
            "val_loss": [1.3, 1.0, 0.95],
            "val_accuracy": [0.38, 0.5, 0.49],
        }
    )
    confusion = pd.DataFrame([[5, 1, 0], [2, 4, 1], [0, 1, 6]], index=CLASSES, columns=CLASSES)
    class_metrics = pd.DataFrame(
        {
            "class_index": [0, 1, 2],
            "class_name": CLASSES,
            "precision": [0.714, 0.667, 0.857],
            "recall": [0.833, 0.571, 0.857],
            "f1": [0.769, 0.615, 0.857],
            "support": [6, 7, 7],
        }
    )
    calibration = pd.DataFrame(
        {
            "bin_index": [0, 1, 2, 3],
            "lower": [0.0, 0.25, 0.5, 0.75],
            "upper": [0.25, 0.5, 0.75, 1.0],
            "count": [0, 4, 7, 9],
            "mean_confidence": [np.nan, 0.4, 0.61, 0.88],
            "accuracy": [np.nan, 0.25, 0.57, 0.89],
        }
    )
    mistakes = pd.DataFrame(
        {
            "image_index": [12, 3],
            "true_class_name": ["car", "bird"],
            "predicted_class_name": ["airplane", "car"],
            "confidence": [0.93, 0.71],
            "image_ref": [image_ref, None],
        }
    )
    return RunReport(
        run_id=run_id,
        experiment="unit",
        model_name="simple_cnn",
        status="succeeded",
        kpis=Kpis(0.5, 2, 0.476, 0.154, 316_234, 83.5),
        summary={},
        epochs=epochs,
        class_metrics=class_metrics,
        confusion=confusion,
        calibration=calibration,
        mistakes=mistakes,
    )


def _search() -> SearchReport:
    board = pd.DataFrame(
        {
            "rank": [1, 2, 3, 4, 5],
            "run_id": [f"{i:032x}" for i in range(5)],
            "trial_index": [4, 0, 1, 2, 3],
            "lr": [0.1, 0.01, 0.01, 0.1, 0.1],
            "batch": [32, 32, 64, 32, 64],
            "val_accuracy": [0.61, 0.55, 0.52, 0.47, 0.3],
            "test_accuracy": [0.6, 0.54, 0.5, 0.45, 0.31],
            "overfitting_gap": [0.02, 0.05, 0.04, 0.1, -0.01],
            "status": ["succeeded"] * 5,
        }
    )
    return SearchReport(board, ["lr", "batch"], ["lr", "batch"], ("lr", "batch"))


def _payload(html: str) -> dict:
    match = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S
    )
    assert match, "the report carries its numbers as JSON"
    return json.loads(match.group(1))


def test_page_is_self_contained_and_numbers_are_machine_readable(tmp_path: Path) -> None:
    png = tmp_path / "plane.png"
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(png)
    run = _run("a" * 32, image_ref=str(png))
    data = ReportData("Unit report", [run], None, _search(), notes=["one note"])

    html = render.render_html(data)

    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "no network fetches"
    assert "<link" not in html
    payload = _payload(html)
    assert payload["runs"][0]["kpis"] == {
        "best_accuracy": 0.5,
        "best_epoch": 2,
        "test_accuracy": 0.476,
        "overfitting_gap": 0.154,
        "param_count": 316_234,
        "training_seconds": 83.5,
    }
    assert payload["runs"][0]["confusion"]["counts"] == [[5, 1, 0], [2, 4, 1], [0, 1, 6]]
    assert payload["runs"][0]["calibration"][0]["accuracy"] is None  # NaN is null, not NaN
    assert 'data-kpi="best_accuracy" data-value="0.5"' in html
    assert ">50.00%<" in html and ">+15.40 pp<" in html and ">316K<" in html
    assert ">1 m 24 s<" in html
    assert html.count('<figure class="mistake"') == 2
    assert html.count('src="data:image/png;base64,') == 1  # the readable file; the other is a label
    assert 'class="placeholder"' in html
    assert 'data-plot="search-heatmap"' in html and 'id="heatmap-axes"' in html


def test_a_string_from_the_warehouse_cannot_break_out_of_the_page(tmp_path: Path) -> None:
    run = _run("b" * 32)
    hostile = "</script><script>alert(1)</script>"
    data = ReportData(hostile, [run])
    html = render.render_html(data)
    assert "<script>alert(1)" not in html
    assert _payload(html)["title"] == hostile


def test_write_is_atomic_and_leaves_nothing_when_rendering_fails(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.html"
    render.write_report(ReportData("ok", [_run("c" * 32)]), target)
    before = target.read_text()
    broken = ReportData("broken", [_run("d" * 32)], comparison=pd.DataFrame({"x": [1, 2]}))
    with pytest.raises(KeyError):
        render.write_report(broken, target)
    assert target.read_text() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]


def test_the_report_file_follows_the_umask_like_any_written_file(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        target = render.write_report(ReportData("ok", [_run("c" * 32)]), tmp_path / "r.html")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not mkstemp's owner-only 0600


def test_search_heatmap_shows_the_best_trial_at_each_point() -> None:
    pivot = plots.search_pivot(_search().leaderboard, "lr", "batch")
    assert list(pivot.columns) == ["0.01", "0.1"] and list(pivot.index) == ["32", "64"]
    assert pivot.loc["32", "0.1"] == pytest.approx(0.61)  # max of 0.61 and 0.47
    assert pivot.loc["64", "0.1"] == pytest.approx(0.3)
    assert pivot.loc["64", "0.01"] == pytest.approx(0.52)


def test_thumbnail_of_a_missing_or_corrupt_file_is_none(tmp_path: Path) -> None:
    corrupt = tmp_path / "bad.png"
    corrupt.write_bytes(b"not a png")
    assert thumbnail_data_uri(None) is None
    assert thumbnail_data_uri(str(tmp_path / "gone.png")) is None
    assert thumbnail_data_uri(str(corrupt)) is None
    grey = tmp_path / "grey.png"
    Image.fromarray(np.zeros((100, 50), np.uint8)).save(grey)  # mode L, larger than a thumbnail
    uri = thumbnail_data_uri(str(grey))
    assert uri is not None and uri.startswith("data:image/png;base64,")


def test_class_names_with_dollar_signs_are_labels_not_math_text() -> None:
    names = ["$x^2$", "$\\frac{", "cost $5 and $6", "plain"]
    metrics = pd.DataFrame({"class_name": names, "precision": 0.5, "recall": 0.5, "f1": 0.5})
    svg = plots.class_metrics_bars(metrics)
    for name in ("$x^2$", "$\\frac{", "cost $5 and $6"):
        assert f">{name}<" in svg, name
    confusion = pd.DataFrame(np.eye(4), index=names, columns=names)
    assert ">$x^2$<" in plots.confusion_heatmap(confusion)
