"""The exporter of a run: its /metrics during a real `model.fit`, NaN, ports, and `finish`."""

from __future__ import annotations

import math
import socket
import subprocess
import threading
import time
import urllib.error
from typing import Any

import keras
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cifar_ops.config import MonitoringConfig
from cifar_ops.errors import MonitoringError
from cifar_ops.monitoring import MetricsCallback
from tests.monitoring_support import (
    BATCH_SIZE,
    TRAIN_IMAGES,
    binary,
    http_get,
    run_start,
    tiny_fit,
)


def scrape(callback: MetricsCallback) -> str:
    return http_get(f"http://127.0.0.1:{callback.port}/metrics").decode()


def samples(text: str, run_id: str) -> dict[str, float]:
    """Sample name (plus status or le) -> value, for one run's series."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.labels["run_id"] == run_id
            key = sample.name
            for extra in ("status", "le"):
                if extra in sample.labels:
                    key += f"{{{extra}={sample.labels[extra]}}}"
            values[key] = sample.value
    return values


class ScrapeAtEpochEnd(keras.callbacks.Callback):
    """Scrapes /metrics after the exporter has seen each epoch, keeping Keras's logs beside it."""

    def __init__(self, exporter: MetricsCallback) -> None:
        super().__init__()
        self.exporter = exporter
        self.scrapes: list[tuple[dict[str, Any], str]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.scrapes.append((dict(logs or {}), scrape(self.exporter)))


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CIFAR_OPS_METRICS_ADDRESS", "127.0.0.1")
    callback = MetricsCallback.from_config(MonitoringConfig(port=0), run_start())
    callback.final_scrape_max_seconds = 0.2  # tests scrape only when they ask: no linger
    yield callback
    callback.finish("failed")  # a no-op when the test finished it


def test_metrics_follow_each_epoch_of_a_real_fit(exporter: MetricsCallback) -> None:
    scraper = ScrapeAtEpochEnd(exporter)
    tiny_fit([exporter, scraper], epochs=2)

    steps = TRAIN_IMAGES // BATCH_SIZE
    for epoch, (logs, text) in enumerate(scraper.scrapes, start=1):
        got = samples(text, exporter.run_id)
        assert got["cifar_ops_epoch"] == epoch
        assert got["cifar_ops_train_loss"] == pytest.approx(logs["loss"], rel=1e-6)
        assert got["cifar_ops_train_accuracy"] == pytest.approx(logs["accuracy"], rel=1e-6)
        assert got["cifar_ops_val_loss"] == pytest.approx(logs["val_loss"], rel=1e-6)
        assert got["cifar_ops_val_accuracy"] == pytest.approx(logs["val_accuracy"], rel=1e-6)
        assert got["cifar_ops_learning_rate"] == pytest.approx(0.05)
        assert got["cifar_ops_batches_total"] == steps * epoch
        assert got["cifar_ops_epoch_duration_seconds_count"] == epoch
        assert got["cifar_ops_epoch_duration_seconds_bucket{le=+Inf}"] == epoch
        assert 0 < got["cifar_ops_epoch_duration_seconds_sum"] < 60
        assert got["cifar_ops_images_per_second"] > 0
        assert got["cifar_ops_run_status{status=running}"] == 1
        assert got["cifar_ops_run_status{status=succeeded}"] == 0
        assert got["cifar_ops_run_info"] == 1
        assert (
            got["cifar_ops_last_progress_timestamp_seconds"]
            >= (got["cifar_ops_run_start_timestamp_seconds"])
        )
    assert len(scraper.scrapes) == 2


def test_grouped_steps_count_every_batch_once(exporter: MetricsCallback) -> None:
    """Two steps per compiled call over three batches: Keras reports batch 1, then 3 (past the
    epoch's last batch, 2); the counter still rises by three an epoch."""
    scraper = ScrapeAtEpochEnd(exporter)
    tiny_fit([exporter, scraper], epochs=2, steps_per_execution=2)
    steps = TRAIN_IMAGES // BATCH_SIZE
    counted = [
        samples(text, exporter.run_id)["cifar_ops_batches_total"] for _, text in scraper.scrapes
    ]
    assert counted == [steps, 2 * steps]


def test_run_info_carries_identity_labels(exporter: MetricsCallback) -> None:
    (info,) = [
        f
        for f in text_string_to_metric_families(scrape(exporter))
        if f.name == "cifar_ops_run_info"
    ]
    labels = info.samples[0].labels
    assert labels["experiment"] == "monitoring-test"
    assert labels["model"] == "tiny_dense"
    assert labels["config_hash"] == "0" * 64
    assert labels["executor"] == "local"


def test_exported_text_passes_promtool_check_metrics(exporter: MetricsCallback) -> None:
    tiny_fit([exporter], epochs=1)
    text = scrape(exporter)
    result = subprocess.run(
        [binary("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


def test_a_nan_loss_is_exported_as_nan(exporter: MetricsCallback) -> None:
    tiny_fit([exporter], epochs=1, diverge=True)
    got = samples(scrape(exporter), exporter.run_id)
    assert math.isnan(got["cifar_ops_train_loss"])
    assert math.isnan(got["cifar_ops_val_loss"])
    assert got["cifar_ops_epoch"] == 1


def test_a_taken_port_is_a_monitoring_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            MonitoringError, match=rf"monitoring.port {port} .* in use.*0 for a free"
        ):
            MetricsCallback(run_start(), port=port, address="127.0.0.1")


def test_finish_sets_the_status_and_frees_the_port_without_waiting_when_unscraped() -> None:
    callback = MetricsCallback(run_start(), port=0, address="127.0.0.1")
    port = callback.port
    began = time.monotonic()
    callback.finish("cancelled")
    assert time.monotonic() - began < 1  # nobody ever scraped: no linger
    callback.finish("succeeded")  # a second call changes nothing
    assert callback.finished_status == "cancelled"
    with pytest.raises(urllib.error.URLError):
        http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    with socket.socket() as again:  # the port is free again
        again.bind(("127.0.0.1", port))


def test_one_get_of_metrics_does_not_hold_a_finished_run() -> None:
    callback = MetricsCallback(run_start(), port=0, address="127.0.0.1")
    assert callback.final_scrape_max_seconds == 60
    scrape(callback)  # one look with curl: no scrape interval to wait for
    began = time.monotonic()
    callback.finish("succeeded")
    assert time.monotonic() - began < 1


def test_the_exporter_listens_on_loopback_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CIFAR_OPS_METRICS_ADDRESS", raising=False)
    local = MetricsCallback(run_start(), port=0)
    assert local.server is not None and local.server.address == "127.0.0.1"
    local.finish("succeeded")
    monkeypatch.setenv("CIFAR_OPS_METRICS_ADDRESS", "0.0.0.0")
    pod = MetricsCallback(run_start(), port=0)
    assert pod.server is not None and pod.server.address == "0.0.0.0"
    pod.finish("succeeded")


def test_finish_lingers_until_a_scraper_has_read_the_terminal_status() -> None:
    callback = MetricsCallback(run_start(), port=0, address="127.0.0.1")
    scrape(callback)  # a scraper polls this run, so its end must reach them
    time.sleep(0.2)
    scrape(callback)
    finisher = threading.Thread(target=callback.finish, args=("failed",))
    finisher.start()
    time.sleep(0.3)
    assert finisher.is_alive()  # waiting for the next scrape
    got = samples(scrape(callback), callback.run_id)
    finisher.join(timeout=10)
    assert not finisher.is_alive()
    assert got["cifar_ops_run_status{status=failed}"] == 1
    assert got["cifar_ops_run_status{status=running}"] == 0


def test_an_unknown_status_is_refused() -> None:
    callback = MetricsCallback(run_start(), port=None)
    with pytest.raises(ValueError, match="not one of queued, running"):
        callback.finish("exploded")
