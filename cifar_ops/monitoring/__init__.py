"""Live metrics of a training run: a Prometheus exporter in a Keras callback, and the Pushgateway.

`MetricsCallback` serves /metrics from the run's own registry (and pushes it to a Pushgateway when
configured); `delete_run_metrics` / `forget_run_metrics` remove finished runs' Pushgateway groups.
`MetricsCallback` loads lazily, so the Pushgateway tools do not import Keras. The chart ships the
Grafana dashboard and the alerting/recording rules built on these names
(charts/cifar-ops/files/dashboards, charts/cifar-ops/files/rules).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cifar_ops.monitoring.forget import ForgetResult, forget_run_metrics
from cifar_ops.monitoring.metrics import STATUSES, RunMetrics
from cifar_ops.monitoring.pushgateway import JOB, delete_run_metrics, push_run_metrics

if TYPE_CHECKING:
    from cifar_ops.monitoring.callback import MetricsCallback


def __getattr__(name: str) -> Any:
    if name == "MetricsCallback":
        from cifar_ops.monitoring.callback import MetricsCallback

        return MetricsCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "JOB",
    "STATUSES",
    "ForgetResult",
    "MetricsCallback",
    "RunMetrics",
    "delete_run_metrics",
    "forget_run_metrics",
    "push_run_metrics",
]
