"""The metric families of one run, in a registry of its own (never the process-global one).

Each run gets its own `CollectorRegistry`, so two runs in one process (a local search) never mix
their series, and a Pushgateway push carries exactly one run. Names follow Prometheus conventions:
`cifar_ops_` prefix, base units (seconds, ratios in [0, 1]), `_total` for counters. Every series
carries the labels run_id, experiment and model, whose values are bounded by the runs themselves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from cifar_ops.records import RunStart
from cifar_ops.vocabulary import RunStatus, values

RUN_LABELS = ("run_id", "experiment", "model")
STATUSES = values(RunStatus)  # the state set's members, one series each
# Epochs last from seconds (tiny CPU smoke runs) to an hour (a transfer model at 224 px).
EPOCH_SECONDS_BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)


@dataclass(frozen=True)
class EpochMetrics:
    """What the exporter shows for one finished epoch; None means "not measured" (no series)."""

    epoch: int  # 1-based
    loss: float | None
    accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    learning_rate: float | None
    seconds: float
    images_per_second: float | None


class RunMetrics:
    """The registry and metric families of one run, and the few ways a run moves them."""

    def __init__(self, start: RunStart, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.labels = {
            "run_id": start.run_id,
            "experiment": start.experiment,
            "model": start.model_name,
        }
        reg = self.registry

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, (*RUN_LABELS, *extra), registry=reg)

        self.info = Info(
            "cifar_ops_run",
            "A run's identity: config hash, executor, job, trial.",
            RUN_LABELS,
            registry=reg,
        )
        self.status = gauge(
            "cifar_ops_run_status",
            "State set: 1 for the run's current status, else 0.",
            ("status",),
        )
        self.start_time = gauge(
            "cifar_ops_run_start_timestamp_seconds", "Unix time the run (this process) started."
        )
        self.progress_time = gauge(
            "cifar_ops_last_progress_timestamp_seconds",
            "Unix time of the run's last progress: its start, then each epoch end.",
        )
        self.epoch = gauge("cifar_ops_epoch", "Epochs finished (1-based, across both phases).")
        self.train_loss = gauge("cifar_ops_train_loss", "Training loss of the last epoch.")
        self.train_accuracy = gauge(
            "cifar_ops_train_accuracy", "Training accuracy of the last epoch, ratio 0-1."
        )
        self.val_loss = gauge("cifar_ops_val_loss", "Validation loss of the last epoch.")
        self.val_accuracy = gauge(
            "cifar_ops_val_accuracy", "Validation accuracy of the last epoch, ratio 0-1."
        )
        self.learning_rate = gauge(
            "cifar_ops_learning_rate", "Learning rate in force at the start of the last epoch."
        )
        self.images_per_second = gauge(
            "cifar_ops_images_per_second", "Training throughput of the last epoch, images/s."
        )
        self.epoch_duration = Histogram(
            "cifar_ops_epoch_duration_seconds",
            "Wall time of each epoch, training and validation.",
            RUN_LABELS,
            buckets=EPOCH_SECONDS_BUCKETS,
            registry=reg,
        )
        self.batches = Counter(
            "cifar_ops_batches",
            "Training batches done (moves within an epoch).",
            RUN_LABELS,
            registry=reg,
        )
        self.info.labels(**self.labels).info(_info_labels(start))
        self.batches.labels(**self.labels)  # exported as 0 from the start, so rate() works
        now = time.time()
        self.start_time.labels(**self.labels).set(now)
        self.progress_time.labels(**self.labels).set(now)
        self.epoch.labels(**self.labels).set(0)
        self.set_status(start.status)

    def set_status(self, status: str) -> None:
        """Move the state set to `status` (one of STATUSES)."""
        if status not in STATUSES:
            raise ValueError(f"run status {status!r} is not one of {', '.join(STATUSES)}")
        for state in STATUSES:
            self.status.labels(**self.labels, status=state).set(1 if state == status else 0)

    def count_batches(self, count: int = 1) -> None:
        self.batches.labels(**self.labels).inc(count)

    def record_epoch(self, epoch: EpochMetrics) -> None:
        """Export a finished epoch. NaN stays NaN (a diverged run must show, not vanish)."""
        optional = (
            (self.train_loss, epoch.loss),
            (self.train_accuracy, epoch.accuracy),
            (self.val_loss, epoch.val_loss),
            (self.val_accuracy, epoch.val_accuracy),
            (self.learning_rate, epoch.learning_rate),
            (self.images_per_second, epoch.images_per_second),
        )
        for family, value in optional:
            if value is not None:
                family.labels(**self.labels).set(value)
        self.epoch_duration.labels(**self.labels).observe(epoch.seconds)
        # The epoch moves last, and is collected before the values: a scrape that reads epoch E
        # also reads epoch E's values.
        self.epoch.labels(**self.labels).set(epoch.epoch)
        self.progress_time.labels(**self.labels).set(time.time())


def _info_labels(start: RunStart) -> dict[str, str]:
    info = {"config_hash": start.config_hash, "executor": start.executor}
    if start.job_name:
        info["job_name"] = start.job_name
    if start.trial_index is not None:
        info["trial_index"] = str(start.trial_index)
    return info
