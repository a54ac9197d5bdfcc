"""A real Prometheus scrapes a training run; what it stored matches what the run logged.

Debian's Prometheus is started on loopback with a 1 s scrape interval and the chart's rules. The run
holds at each epoch boundary until Prometheus has scraped the epoch it just finished, so every epoch
is in the TSDB; then the scraped `cifar_ops_val_accuracy` of each epoch is compared with the run's
own record of it (Keras's logs for a plain fit; the warehouse's epoch_stats for `runner.execute`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import keras
import pytest

from cifar_ops.monitoring import MetricsCallback
from tests.monitoring_support import (
    PrometheusAPI,
    dashboard_targets,
    fill_variables,
    free_port,
    prometheus,
    run_start,
    tiny_fit,
    wait_until,
    with_rule_interval,
)

SCRAPE_WAIT_SECONDS = 20.0


class HoldUntilScraped(keras.callbacks.Callback):
    """Holds training at each epoch boundary until Prometheus has scraped the finished epoch.

    It waits in the next epoch's begin and at train end, so it works in any place of the callback
    list (the exporter has moved its gauges in `on_epoch_end` by then).
    """

    def __init__(self, prom: PrometheusAPI, run_id: str) -> None:
        super().__init__()
        self.prom, self.run_id = prom, run_id

    def _wait_for(self, epoch: int) -> None:
        selector = f'cifar_ops_epoch{{run_id="{self.run_id}"}} >= {epoch}'
        wait_until(
            lambda: self.prom.query(selector),
            timeout=SCRAPE_WAIT_SECONDS,
            what=f"Prometheus to scrape epoch {epoch}",
            every=0.2,
        )

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch > 0:
            self._wait_for(epoch)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._wait_for(len(self.model.history.history.get("loss", [])) or 1)


class KerasLogs(keras.callbacks.Callback):
    """The in-test sink: Keras's own per-epoch logs."""

    def __init__(self) -> None:
        super().__init__()
        self.val_accuracy: dict[int, float] = {}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.val_accuracy[epoch + 1] = float((logs or {})["val_accuracy"])


def scraped_val_accuracy_by_epoch(prom: PrometheusAPI, run_id: str) -> dict[int, set[float]]:
    """Every scraped val_accuracy sample, grouped by the epoch gauge of the same scrape.

    Both series come from one query, so one evaluation time: two queries could straddle a scrape
    and see a sample in one series that the other's window does not reach yet.
    """
    selector = f'{{__name__=~"cifar_ops_epoch|cifar_ops_val_accuracy", run_id="{run_id}"}}[10m]'
    series = {r["metric"]["__name__"]: r["values"] for r in prom.query(selector)}
    epochs = {float(t): float(v) for t, v in series.get("cifar_ops_epoch", [])}
    by_epoch: dict[int, set[float]] = defaultdict(set)
    for timestamp, value in series.get("cifar_ops_val_accuracy", []):
        by_epoch[int(epochs[float(timestamp)])].add(float(value))
    return dict(by_epoch)


def last_status(prom: PrometheusAPI, run_id: str) -> str:
    """The status whose state-set series was 1 in the last scrape."""
    last: dict[str, tuple[float, float]] = {}
    for status in ("running", "succeeded", "failed"):
        samples = prom.samples(f'cifar_ops_run_status{{run_id="{run_id}", status="{status}"}}')
        last[status] = samples[-1]
    return max(last, key=lambda s: (last[s][0], last[s][1]))


def test_prometheus_scrapes_every_epoch_of_a_fit_and_the_dashboard_queries_answer(
    tmp_path: Path,
) -> None:
    start = run_start(experiment="prom-fit")
    exporter = MetricsCallback(start, port=0, address="127.0.0.1", final_scrape_max_seconds=10)
    rules = with_rule_interval(tmp_path, "1s")
    with prometheus(tmp_path, [f"127.0.0.1:{exporter.port}"], [rules]) as prom:
        logs = KerasLogs()
        try:
            tiny_fit([exporter, logs, HoldUntilScraped(prom, start.run_id)], epochs=3)
        finally:
            exporter.finish("succeeded")  # lingers until Prometheus has read `succeeded`

        scraped = scraped_val_accuracy_by_epoch(prom, start.run_id)
        assert set(scraped) == {1, 2, 3}
        for epoch, value in logs.val_accuracy.items():
            assert sorted(scraped[epoch]) == pytest.approx([value], rel=1e-6), epoch
        assert last_status(prom, start.run_id) == "succeeded"

        # The chart's recording rule sees the best of the three epochs.
        best = max(logs.val_accuracy.values())
        recorded = wait_until(
            lambda: prom.query('experiment:cifar_ops_val_accuracy:max1d{experiment="prom-fit"}'),
            timeout=SCRAPE_WAIT_SECONDS,
            what="the recording rule",
        )
        assert float(recorded[0]["value"][1]) == pytest.approx(best, rel=1e-6)

        # Every PromQL panel of the dashboard answers for this run at its last scrape.
        at = prom.samples(f'cifar_ops_epoch{{run_id="{start.run_id}"}}')[-1][0]
        values = {"experiment": "prom-fit", "run_id": start.run_id, "__rate_interval": "1m"}
        for title, target in dashboard_targets("prometheus"):
            result = prom.query(fill_variables(target["expr"], values), at=at)
            assert result, f"panel {title!r} query {target['refId']} returned nothing"
            numbers = [float(r["value"][1]) for r in result]
            assert any(math.isfinite(n) for n in numbers), (title, target["refId"], numbers)

        # The dashboard's variables list this run.
        experiments = prom.get(
            "/api/v1/label/experiment/values", **{"match[]": "cifar_ops_run_info"}
        )
        assert "prom-fit" in experiments


def test_runner_execute_scraped_val_accuracy_matches_the_warehouse_epoch_stats(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cifar_ops import runner
    from cifar_ops.warehouse.store import open_store
    from tests.engine_helpers import tiny_config

    monkeypatch.setenv("CIFAR_OPS_METRICS_ADDRESS", "127.0.0.1")
    port = free_port()
    config = tiny_config(
        experiment="prom-runner", monitoring={"port": port}, train={"epochs": 3, "batch_size": 64}
    )
    with prometheus(tmp_path, [f"127.0.0.1:{port}"]) as prom, open_store(sqlite_url) as store:
        run_id = "a" * 32
        outcome = runner.execute(
            config, sink=store, run_id=run_id, callbacks=[HoldUntilScraped(prom, run_id)]
        )
        assert outcome.status == "succeeded"
        logged = {record.epoch: record.val_accuracy for record in store.epochs(run_id)}
        scraped = scraped_val_accuracy_by_epoch(prom, run_id)
        assert set(scraped) == set(logged) == {1, 2, 3}
        for epoch, value in logged.items():
            assert sorted(scraped[epoch]) == pytest.approx([value], rel=1e-6), epoch
        assert last_status(prom, run_id) == "succeeded"
