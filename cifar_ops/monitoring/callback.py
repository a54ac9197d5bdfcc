"""The Keras callback that exports a run's live metrics while it trains.

The runner adds `MetricsCallback.from_config(config.monitoring, start)` to the run's callbacks
when `monitoring.port` or `monitoring.pushgateway` is set, and calls `finish(status)` once the run
ends, whatever the outcome. It counts batches as Keras runs them; each finished epoch arrives as
the run's own `EpochRecord` (`on_epoch_record`, from the engine's epoch recorder), the one the
warehouse stores, so the exporter never measures or reads anything on its own. Monitoring never
stops a run: a failed push is logged and training goes on; only a port that cannot be bound is an
error, raised before training starts.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import keras

from cifar_ops import settings
from cifar_ops.callbacks import batches_done
from cifar_ops.config import MonitoringConfig
from cifar_ops.errors import MonitoringError
from cifar_ops.monitoring.metrics import EpochMetrics, RunMetrics
from cifar_ops.monitoring.pushgateway import push_run_metrics
from cifar_ops.monitoring.server import MetricsServer
from cifar_ops.records import EpochRecord, RunStart

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
        final_scrape_max_seconds: float = FINAL_SCRAPE_MAX_SECONDS,
        push_at_start: bool = True,
    ) -> None:
        """`push_at_start=False` leaves the first push to `start()` (after the run is
        registered): a process the warehouse refuses must push nothing under that run id."""
        super().__init__()
        self.run_id = start.run_id
        self.metrics = RunMetrics(start)
        self.registry = self.metrics.registry
        self.pushgateway = pushgateway
        self.final_scrape_max_seconds = final_scrape_max_seconds
        self.finished_status: str | None = None
        self._counted = 0  # batches of the current epoch already counted
        self.server: MetricsServer | None = None
        if port is not None:
            self.server = MetricsServer(
                self.registry, port=port, address=address or settings.metrics_address()
            )
        if push_at_start:
            self._push()

    @classmethod
    def from_config(
        cls, monitoring: MonitoringConfig, start: RunStart, *, push_at_start: bool = True
    ) -> MetricsCallback:
        """The callback a run's `monitoring` section asks for (port and/or Pushgateway)."""
        return cls(
            start,
            port=monitoring.port,
            pushgateway=monitoring.pushgateway,
            push_at_start=push_at_start,
        )

    @property
    def port(self) -> int | None:
        return self.server.port if self.server else None

    # --- Keras hook and the engine's epoch record -----------------------------------------------

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._counted = 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Count the batches done since the last call: a group of them under
        `train.steps_per_execution`."""
        done = batches_done(batch, self.params)
        self.metrics.count_batches(done - self._counted)
        self._counted = done

    def on_epoch_record(self, record: EpochRecord) -> None:
        """Export a finished epoch as the warehouse records it, and push it."""
        self.metrics.record_epoch(
            EpochMetrics(
                epoch=record.epoch,
                loss=record.loss,
                accuracy=record.accuracy,
                val_loss=record.val_loss,
                val_accuracy=record.val_accuracy,
                learning_rate=_measured(record.learning_rate),
                seconds=record.seconds,
                images_per_second=_measured(record.images_per_second),
            )
        )
        self._push()

    # --- end of run ------------------------------------------------------------------------------

    def start(self) -> None:
        """Push the running status, once the run is registered (see `push_at_start`)."""
        self._push()

    def close(self) -> None:
        """Stop serving without exporting or pushing a status: the run never started here (the
        warehouse refused it), and its id may belong to a live process elsewhere."""
        self.finished_status = self.finished_status or "closed"
        if self.server is not None:
            self.server.close()

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


def _measured(value: float) -> float | None:
    """NaN stands for "not measured" in a record's rate and throughput: no series then."""
    return None if math.isnan(value) else value
