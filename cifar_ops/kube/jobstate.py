"""A run's state from its Job's terminal conditions plus a deadline (pure; plain API dicts).

Never from whether metrics arrived: a pod that died without a word still ends its Job's index as
failed, and a Job past its activeDeadlineSeconds counts as failed before the controller says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cifar_ops.kube.naming import ANNOTATION_RUN_IDS, LABEL_COMPLETION_INDEX, LABEL_RUN_ID
from cifar_ops.redaction import redact_text


@dataclass(frozen=True)
class IndexState:
    """What Kubernetes says about one completion index (one run) of a Job."""

    state: str  # pending | running | succeeded | failed
    reason: str | None = None


def run_ids_of(job: dict[str, Any]) -> dict[int, str]:
    """Completion index -> run id, from the annotation the chart writes (or the run-id label)."""
    metadata = job.get("metadata") or {}
    raw = (metadata.get("annotations") or {}).get(ANNOTATION_RUN_IDS)
    if raw:
        try:
            return {int(index): run_id for index, run_id in json.loads(raw).items()}
        except (ValueError, AttributeError):
            pass
    run_id = (metadata.get("labels") or {}).get(LABEL_RUN_ID)
    return {0: run_id} if run_id else {}


def parse_indexes(ranges: str | None) -> set[int]:
    """Kubernetes' index ranges ("0-3,5,7-8") as a set of ints."""
    found: set[int] = set()
    for part in (ranges or "").split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        found.update(range(int(low), int(high or low) + 1))
    return found


def _condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def job_finished(job: dict[str, Any]) -> bool:
    """The Job ended (Complete or Failed) or is being deleted: its pods are done or going.

    SuccessCriteriaMet and FailureTarget do not count: pods may still be running or terminating.
    """
    deleting = bool((job.get("metadata") or {}).get("deletionTimestamp"))
    return deleting or bool(_condition(job, "Complete") or _condition(job, "Failed"))


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def deadline_passed(job: dict[str, Any], now: datetime) -> bool:
    """The Job has run longer than its activeDeadlineSeconds (whatever the controller says yet)."""
    deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
    started = _parse_time((job.get("status") or {}).get("startTime"))
    return bool(deadline and started and now > started + timedelta(seconds=int(deadline)))


def index_state(
    job: dict[str, Any], index: int, now: datetime, pod: dict[str, Any] | None = None
) -> IndexState:
    """State of one completion index of a Job: terminal conditions first, then the deadline,
    then (an Indexed Job runs only `parallelism` indexes at once) the index's newest pod."""
    status = job.get("status") or {}
    indexed = (job.get("spec") or {}).get("completionMode") == "Indexed"
    if indexed and index in parse_indexes(status.get("completedIndexes")):
        return IndexState("succeeded")
    if indexed and index in parse_indexes(status.get("failedIndexes")):
        return IndexState("failed", "the index failed (permanent error or retries used up)")
    if _condition(job, "Complete") or (not indexed and _condition(job, "SuccessCriteriaMet")):
        return IndexState("succeeded")
    failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
    if failed:
        reason = failed.get("reason") or "Failed"
        message = failed.get("message")  # may quote a pod's error output: shown and stored
        return IndexState("failed", redact_text(f"{reason}: {message}" if message else reason))
    if deadline_passed(job, now):
        deadline = job["spec"]["activeDeadlineSeconds"]
        return IndexState("failed", f"DeadlineExceeded: ran past activeDeadlineSeconds={deadline}")
    if indexed:
        phase = ((pod or {}).get("status") or {}).get("phase")
        return IndexState("running" if phase == "Running" else "pending")
    if (status.get("active") or 0) > 0 or (status.get("ready") or 0) > 0:
        return IndexState("running")
    return IndexState("pending")


def pod_index(pod: dict[str, Any]) -> int:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    raw = labels.get(LABEL_COMPLETION_INDEX) or annotations.get(
        "batch.kubernetes.io/job-completion-index"
    )
    return int(raw) if raw is not None else 0


def latest_pod(pods: list[dict[str, Any]], index: int) -> dict[str, Any] | None:
    """The newest pod of a completion index (a retried index has several)."""
    candidates = [pod for pod in pods if pod_index(pod) == index]
    if not candidates:
        return None
    return max(candidates, key=lambda pod: str(pod["metadata"].get("creationTimestamp") or ""))


def pod_summary(pod: dict[str, Any] | None) -> str:
    """The pod's phase, with a waiting or terminated container's reason (ImagePullBackOff, ...)."""
    if pod is None:
        return "-"
    status = pod.get("status") or {}
    phase = status.get("phase") or "Unknown"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        for key in ("waiting", "terminated"):
            detail = state.get(key)
            if detail and detail.get("reason"):
                code = detail.get("exitCode")
                suffix = f" (exit {code})" if code is not None else ""
                return f"{phase}/{detail['reason']}{suffix}"
    return phase
