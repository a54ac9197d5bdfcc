"""Choosing what a report shows, from runs written through the real store (no training needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cifar_ops.errors import CifarOpsError, WarehouseError
from cifar_ops.report import build_report
from cifar_ops.report.loader import load_report_data
from cifar_ops.report.render import render_html
from cifar_ops.warehouse import Store, open_store
from cifar_ops.warehouse import synthetic as fake
from cifar_ops.warehouse.engine import create_warehouse_engine


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    with open_store(sqlite_url) as opened:
        yield opened


@pytest.fixture
def engine(store: Store, sqlite_url: str) -> Iterator[Engine]:
    engine = create_warehouse_engine(sqlite_url)
    yield engine
    engine.dispose()


def _log_run(
    store: Store, experiment: str, *, run_id: str | None = None, test_accuracy: float = 0.7,
    status: str = "succeeded", evaluate: bool = True, split: str = "test", **start: object,
) -> str:  # fmt: skip
    begin = fake.run_start(experiment, run_id=run_id, **start)
    store.start_run(begin)
    store.log_epochs(begin.run_id, [fake.epoch(n, accuracy=0.5 + n / 20) for n in (1, 2, 3)])
    if evaluate:
        store.log_evaluation(begin.run_id, fake.evaluation(200, seed=len(experiment), split=split))
    store.finish_run(begin.run_id, fake.finish(status, test_accuracy=test_accuracy))
    return begin.run_id


def _log_search(store: Store) -> list[str]:
    points = [
        {"optimizer.learning_rate": lr, "train.batch_size": bs, "model.dropout": 0.1}
        for lr in (0.001, 0.01, 0.1)
        for bs in (32, 64)
    ]
    return [
        _log_run(store, "grid", trial_index=i, trial_params=p, test_accuracy=0.4 + i / 20)
        for i, p in enumerate(points)
    ]


def test_search_parameters_rank_by_variety_and_axes_are_selectable(
    store: Store, engine: Engine
) -> None:
    ids = _log_search(store)

    data = load_report_data(engine, experiment="grid")
    assert data.search is not None
    assert data.search.parameters == [
        "optimizer.learning_rate",
        "train.batch_size",
        "model.dropout",
    ]
    assert data.search.varying == ["optimizer.learning_rate", "train.batch_size"]
    assert data.search.heatmap_axes == ("optimizer.learning_rate", "train.batch_size")
    assert [r.run_id for r in data.runs] == ids[::-1][:3]  # best three, best first
    assert data.notes and "3 of 6 runs" in data.notes[0]
    assert len(data.comparison) == 6

    flipped = load_report_data(
        engine, experiment="grid", heatmap_axes=("train.batch_size", "optimizer.learning_rate")
    )
    assert flipped.search.heatmap_axes == ("train.batch_size", "optimizer.learning_rate")
    with pytest.raises(CifarOpsError, match="train.batch_size, model.dropout"):
        load_report_data(engine, experiment="grid", heatmap_axes=("seed", "train.batch_size"))


def test_a_failed_run_without_evaluation_still_reports(store: Store, engine: Engine) -> None:
    good = _log_run(store, "mixed")
    bad = _log_run(store, "mixed", status="failed", evaluate=False)

    data = load_report_data(engine, run_ids=[bad[:12], good])
    assert [r.run_id for r in data.runs] == [bad, good]  # named runs keep the order given
    assert data.search is None and len(data.comparison) == 2
    failed = data.runs[0]
    assert failed.class_metrics.empty and failed.confusion.empty and failed.mistakes.empty
    html = render_html(data)
    for block in ("class-metrics", "confusion", "calibration", "mistakes"):
        assert f'data-empty="{block}"' in html


def test_a_run_evaluated_on_validation_only_shows_that_split(store: Store, engine: Engine) -> None:
    run_id = _log_run(store, "no-test", split="validation")
    (run,) = load_report_data(engine, run_ids=[run_id]).runs
    assert len(run.class_metrics) == 10 and int(run.confusion.to_numpy().sum()) == 200
    assert len(run.mistakes) == 24
    assert run.mistakes["confidence"].is_monotonic_decreasing


def test_prefixes_must_be_unique_and_runs_must_exist(
    store: Store, sqlite_url: str, tmp_path: Path
) -> None:
    _log_run(store, "p", run_id="abc" + "1" * 29)
    _log_run(store, "p", run_id="abc" + "2" * 29)
    out = tmp_path / "report.html"
    with pytest.raises(WarehouseError, match="matches 2 runs"):
        build_report(out, run_ids=["abc"], url=sqlite_url)
    with pytest.raises(WarehouseError, match="not a run id"):
        build_report(out, run_ids=["not-hex!"], url=sqlite_url)
    assert not out.exists()
    build_report(out, run_ids=["ABC1"], url=sqlite_url)  # case and a unique prefix are fine
    assert "Run abc11111" in out.read_text()
