"""Push a run's registry to a Prometheus Pushgateway, one group per run, and delete that group.

Batch jobs whose pods may end between two scrapes push instead: at each epoch end and at the run's
end, replacing the whole group {job="cifar-ops", run_id=...} (PUT), so the group always holds the
run's latest state. The Pushgateway never forgets a group (pushgateway #117), so once Prometheus
has read the final push, `delete_run_metrics` removes it.

A gateway behind basic auth gets its user and password from the environment
(`settings.pushgateway_credentials`), never from the URL, which is printed and stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.error import URLError

from prometheus_client import CollectorRegistry, delete_from_gateway, push_to_gateway
from prometheus_client.exposition import basic_auth_handler, default_handler

from cifar_ops import settings
from cifar_ops.errors import MonitoringError
from cifar_ops.redaction import redact_url

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
            handler=auth_handler(),
        )
    except (URLError, OSError, ValueError) as exc:
        raise MonitoringError(
            f"monitoring.pushgateway {redact_url(gateway)!r} refused or did not answer the push "
            f"of run {run_id}: {_reason(exc)}"
        ) from None


def delete_run_metrics(gateway: str, run_id: str) -> None:
    """Delete the run's group from the Pushgateway (a missing group is not an error)."""
    try:
        delete_from_gateway(
            gateway,
            job=JOB,
            grouping_key=grouping_key(run_id),
            timeout=PUSH_TIMEOUT_SECONDS,
            handler=auth_handler(),
        )
    except (URLError, OSError, ValueError) as exc:
        raise MonitoringError(
            f"Pushgateway {redact_url(gateway)!r} refused or did not answer deleting run "
            f"{run_id}'s metrics: {_reason(exc)}"
        ) from None


def auth_handler() -> Callable[..., Any]:
    """prometheus_client's request handler: basic auth when the environment gives a user."""
    credentials = settings.pushgateway_credentials()
    if credentials is None:
        return default_handler
    username, password = credentials

    def handler(url: str, method: str, timeout: float | None, headers: Any, data: bytes) -> Any:
        return basic_auth_handler(url, method, timeout, headers, data, username, password)

    return handler


def _reason(exc: Exception) -> str:
    return redact_url(str(getattr(exc, "reason", None) or exc))
