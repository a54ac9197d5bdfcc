"""Push a run's registry to a Prometheus Pushgateway, one group per run, and delete that group.

Batch jobs whose pods may end between two scrapes push instead: at each epoch end and at the run's
end, replacing the whole group {job="cifar-ops", run_id=...} (PUT), so the group always holds the
run's latest state. The Pushgateway never forgets a group (pushgateway #117), so once Prometheus
has read the final push, `delete_run_metrics` removes it.
"""

from __future__ import annotations

import logging
from urllib.error import URLError

from prometheus_client import CollectorRegistry, delete_from_gateway, push_to_gateway

from cifar_ops.errors import MonitoringError

JOB = "cifar-ops"
PUSH_TIMEOUT_SECONDS = 5.0

log = logging.getLogger(__name__)


def grouping_key(run_id: str) -> dict[str, str]:
    """The Pushgateway group of one run: with job="cifar-ops", its URL path."""
    return {"run_id": run_id}


def push_run_metrics(gateway: str, run_id: str, registry: CollectorRegistry) -> None:
    """Replace the run's group with the registry's current state; raises MonitoringError."""
    try:
        push_to_gateway(
            gateway,
            job=JOB,
            registry=registry,
            grouping_key=grouping_key(run_id),
            timeout=PUSH_TIMEOUT_SECONDS,
        )
    except (URLError, OSError, ValueError) as exc:
        raise MonitoringError(
            f"monitoring.pushgateway {gateway!r} refused or did not answer the push of run "
            f"{run_id}: {_reason(exc)}"
        ) from None


def delete_run_metrics(gateway: str, run_id: str) -> None:
    """Delete the run's group from the Pushgateway (a missing group is not an error)."""
    try:
        delete_from_gateway(
            gateway, job=JOB, grouping_key=grouping_key(run_id), timeout=PUSH_TIMEOUT_SECONDS
        )
    except (URLError, OSError, ValueError) as exc:
        raise MonitoringError(
            f"Pushgateway {gateway!r} refused or did not answer deleting run {run_id}'s "
            f"metrics: {_reason(exc)}"
        ) from None


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", None) or exc)
