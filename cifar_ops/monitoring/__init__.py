"""Live metrics of a training run: a Prometheus exporter in a Keras callback, and the Pushgateway.

`MetricsCallback` serves /metrics from the run's own registry (and pushes it to a Pushgateway when
configured); `delete_run_metrics` removes a finished run's Pushgateway group. The chart ships the
Grafana dashboard and the alerting/recording rules built on these names
(charts/cifar-ops/files/dashboards, charts/cifar-ops/files/rules).
"""

from __future__ import annotations

from cifar_ops.monitoring.callback import MetricsCallback
from cifar_ops.monitoring.metrics import STATUSES, RunMetrics
from cifar_ops.monitoring.pushgateway import JOB, delete_run_metrics, push_run_metrics

__all__ = [
    "JOB",
    "STATUSES",
    "MetricsCallback",
    "RunMetrics",
    "delete_run_metrics",
    "push_run_metrics",
]
