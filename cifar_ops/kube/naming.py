"""Names and labels shared by the chart and the CLI: one release per experiment, one Job per
submission. They mirror charts/cifar-ops/templates/_helpers.tpl (a test renders both and compares).
"""

from __future__ import annotations

import re

CHART_NAME = "cifar-ops"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_INSTANCE = "app.kubernetes.io/instance"  # the Helm release
LABEL_EXPERIMENT = "cifar-ops/experiment"
LABEL_RUN_ID = "cifar-ops/run-id"
LABEL_SCORING = "cifar-ops/scoring"  # a scoring Job's name (`kube.score.ScoringPlan.name`)
LABEL_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
LABEL_JOB_NAME = "batch.kubernetes.io/job-name"
ANNOTATION_RUN_IDS = "cifar-ops/run-ids"

_RELEASE_MAX = 53  # helm's limit on release names


def release_name(experiment: str) -> str:
    """The Helm release of an experiment: `cifar-ops-<experiment as a DNS label>`."""
    slug = re.sub(r"[^a-z0-9-]+", "-", experiment.lower()).strip("-")
    return f"{CHART_NAME}-{slug}"[:_RELEASE_MAX].rstrip("-")


def job_name(release: str, submission: str) -> str:
    """The Job (and ConfigMap) name the chart gives a submission of a release."""
    fullname = release if CHART_NAME in release else f"{release}-{CHART_NAME}"
    return f"{fullname[:63].rstrip('-')[:43].rstrip('-')}-{submission[:8]}"


def training_selector(experiment: str | None = None) -> str:
    """Label selector of every training Job and pod, or those of one experiment."""
    parts = [f"{LABEL_NAME}={CHART_NAME}", f"{LABEL_COMPONENT}=training"]
    if experiment:
        parts.append(f"{LABEL_EXPERIMENT}={experiment}")
    return ",".join(parts)


def scoring_selector() -> str:
    """Label selector of every scoring Job and pod (`submit --score`): they have no experiment."""
    return f"{LABEL_NAME}={CHART_NAME},{LABEL_COMPONENT}=scoring"


def storage_selector(experiment: str | None = None) -> str:
    """Label selector of the PersistentVolumeClaims the chart made, or those of one experiment."""
    parts = [f"{LABEL_NAME}={CHART_NAME}", f"{LABEL_COMPONENT}=storage"]
    if experiment:
        parts.append(f"{LABEL_EXPERIMENT}={experiment}")
    return ",".join(parts)


def release_selector(release: str) -> str:
    """Label selector of the training Jobs of one release: the ones `helm upgrade` can delete."""
    return f"{training_selector()},{LABEL_INSTANCE}={release}"
