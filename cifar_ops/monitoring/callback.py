"""The Keras callback that exports a run's live metrics while it trains.

The runner adds `MetricsCallback.from_config(config.monitoring, start)` to `model.fit` when
`monitoring.port` or `monitoring.pushgateway` is set, and calls `finish(status)` once the run ends,
whatever the outcome. Monitoring never stops a run: a failed push is logged and training goes on;
only a port that cannot be bound is an error, raised before training starts.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import keras

from cifar_ops import settings
from cifar_ops.config import MonitoringConfig
from cifar_ops.errors import MonitoringError
from cifar_ops.monitoring.metrics import EpochMetrics, RunMetrics, as_float
from cifar_ops.monitoring.pushgateway import push_run_metrics
from cifar_ops.monitoring.server import MetricsServer
from cifar_ops.records import RunStart

log = logging.getLogger(__name__)

FINAL_SCRAPE_MAX_SECONDS = 60.0  # longest a finished run waits for Prometheus to read its status


class MetricsCallback(keras.callbacks.Callback):
    """Serves (and/or pushes) one run's metrics; `port` is the bound port when serving."""

    def __init__(
        self,
        start: RunStart,
        *,
        port: int | None = None,
        address: str | None = None,
        pushgateway: str | None = None,
        batch_size: int | None = None,
        train_images: int | None = None,
        final_scrape_max_seconds: float = FINAL_SCRAPE_MAX_SECONDS,
    ) -> None:
        super().__init__()
        self.run_id = start.run_id
        self.metrics = RunMetrics(start)
        self.registry = self.metrics.registry
        self.pushgateway = pushgateway
        self.batch_size = batch_size
        self.train_images = train_images
        self.final_scrape_max_seconds = final_scrape_max_seconds
        self.finished_status: str | None = None
        self.server: MetricsServer | None = None
        if port is not None:
            self.server = MetricsServer(
                self.registry, port=port, address=address or settings.metrics_address()
            )
        self._epoch_started = 0.0
        self._last_batch_end = 0.0
        self._batches_in_epoch = 0
        self._epoch_rate: float | None = None
        self._push()

    @classmethod
    def from_config(
        cls, monitoring: MonitoringConfig, start: RunStart, *, train_images: int | None = None
    ) -> MetricsCallback:
        """The callback a run's `monitoring` section asks for (port and/or Pushgateway).

        The batch size comes from the run's config; pass `train_images` (the training split's
        size) for an exact throughput, else it is batches x batch size.
        """
        batch_size = start.config.get("train", {}).get("batch_size")
        return cls(
            start,
            port=monitoring.port,
            pushgateway=monitoring.pushgateway,
            batch_size=batch_size,
            train_images=train_images,
        )

    @property
    def port(self) -> int | None:
        return self.server.port if self.server else None

    # --- Keras hooks -----------------------------------------------------------------------------

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_started = self._last_batch_end = time.perf_counter()
        self._batches_in_epoch = 0
        self._epoch_rate = self._optimizer_rate()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.metrics.count_batch()
        self._batches_in_epoch += 1
        self._last_batch_end = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        seconds = time.perf_counter() - self._epoch_started
        self.metrics.record_epoch(
            EpochMetrics(
                epoch=epoch + 1,
                loss=as_float(logs.get("loss")),
                accuracy=as_float(logs.get("accuracy", logs.get("sparse_categorical_accuracy"))),
                val_loss=as_float(logs.get("val_loss")),
                val_accuracy=as_float(
                    logs.get("val_accuracy", logs.get("val_sparse_categorical_accuracy"))
                ),
                learning_rate=self._epoch_rate,
                seconds=seconds,
                images_per_second=self._throughput(),
            )
        )
        self._push()

    # --- end of run ------------------------------------------------------------------------------

    def finish(self, status: str) -> None:
        """Export the terminal status, push it, let a scraper read it, then stop serving.

        Idempotent: a second call does nothing.
        """
        if self.finished_status is not None:
            return
        self.metrics.set_status(status)
        self.finished_status = status
        self._push()
        if self.server is not None:
            self.server.wait_for_scrape(max_seconds=self.final_scrape_max_seconds)
            self.server.close()

    # --- helpers ---------------------------------------------------------------------------------

    def _push(self) -> None:
        if not self.pushgateway:
            return
        try:
            if self.server is not None:
                with self.server.watcher.muted():
                    push_run_metrics(self.pushgateway, self.run_id, self.registry)
            else:
                push_run_metrics(self.pushgateway, self.run_id, self.registry)
        except MonitoringError as exc:
            log.warning("%s; training goes on", exc)

    def _throughput(self) -> float | None:
        seconds = self._last_batch_end - self._epoch_started
        if self._batches_in_epoch == 0 or seconds <= 0:
            return None
        if self.train_images is not None:
            images = self.train_images
        elif self.batch_size is not None:
            images = self._batches_in_epoch * self.batch_size
        else:
            return None
        return images / seconds

    def _optimizer_rate(self) -> float | None:
        """The rate in force now (schedules included), as the warehouse's epoch logger reads it."""
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return None
        try:
            return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        except (AttributeError, TypeError, ValueError):
            return None
