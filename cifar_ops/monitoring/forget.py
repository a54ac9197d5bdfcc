"""Delete finished runs' groups from the Pushgateway, which otherwise keeps them forever.

A run pushes its final state when it ends; once Prometheus has scraped that, the group is only
noise (and a dead run's `cifar_ops_run_status` would stay visible). Each run's gateway is read
from the config it ran with; only runs in a terminal state are touched, never a live one.
Gateways are reported redacted; a user and password stored in an old run's URL are dropped from
the request (basic auth comes from the environment, see `pushgateway.auth_handler`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cifar_ops.errors import CifarOpsError
from cifar_ops.monitoring.pushgateway import delete_run_metrics
from cifar_ops.records import TERMINAL_STATUSES
from cifar_ops.redaction import redact_url, without_userinfo


@dataclass
class ForgetResult:
    deleted: list[tuple[str, str]] = field(default_factory=list)  # (run id, gateway redacted)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (run id, why)


def forget_run_metrics(
    store: Any,
    run_ids: Sequence[str] = (),
    *,
    experiment: str | None = None,
    gateway: str | None = None,
) -> ForgetResult:
    """Delete the Pushgateway group of each finished run named, or of every run of `experiment`.

    `gateway` overrides the `monitoring.pushgateway` each run was configured with. A gateway that
    does not answer raises `MonitoringError` after the groups already deleted.
    """
    if not run_ids and experiment is None:
        raise CifarOpsError("name run ids or --experiment")
    named = [store.get_run(run_id) for run_id in run_ids]
    configs: dict[str, dict[str, Any]] = {d.summary.run_id: d.config or {} for d in named}
    summaries = [detail.summary for detail in named]
    if experiment is not None:
        summaries += store.list_runs(experiment=experiment, limit=None)
    result = ForgetResult()
    for run in {summary.run_id: summary for summary in summaries}.values():
        if run.status not in TERMINAL_STATUSES:
            result.skipped.append((run.run_id, f"still {run.status}"))
            continue
        if gateway is None and run.run_id not in configs:
            configs[run.run_id] = store.get_run(run.run_id).config or {}
        target = gateway or _configured_gateway(configs.get(run.run_id, {}))
        if not target:
            result.skipped.append((run.run_id, "ran without monitoring.pushgateway"))
            continue
        delete_run_metrics(without_userinfo(target), run.run_id)
        result.deleted.append((run.run_id, redact_url(target)))
    return result


def _configured_gateway(config: dict[str, Any]) -> str | None:
    return (config.get("monitoring") or {}).get("pushgateway")
