"""`cifar-ops submit --score`: a batch scoring as one Job of its own release of the chart.

The chart's `score` values carry the scoring (the same `ScoringRequest` as `cifar-ops score`, as
JSON the pod's entrypoint reads); resources, image and scheduling are the chart's `job` values,
CPU unless `job.gpus` says otherwise. Names derive from what is scored, so the same scoring
renders the same release and Job, and a resubmitted one resumes (the warehouse skips the images
already written).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from cifar_ops.kube.chartvalues import merge
from cifar_ops.kube.naming import CHART_NAME, release_name
from cifar_ops.scoring.run import ScoringRequest

#: Scoring on CPU unless the values ask for GPUs: decoding and a forward pass need little.
DEFAULT_JOB = {
    "gpus": 0,
    "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}},
}


@dataclass(frozen=True)
class ScoringPlan:
    request: ScoringRequest
    model_claim: str = ""
    chart_values: dict[str, Any] = field(default_factory=dict)  # --values files and --gpus

    @cached_property
    def name(self) -> str:
        """The scoring's label value and release suffix: a digest of what it scores."""
        digest = hashlib.sha256(self.spec.encode()).hexdigest()
        return f"score-{digest[:10]}"

    @property
    def spec(self) -> str:
        return json.dumps(asdict(self.request), sort_keys=True)

    @property
    def release(self) -> str:
        return release_name(self.name)

    @cached_property
    def submission(self) -> str:
        canonical = json.dumps(_values_without_submission(self), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:10]

    @property
    def job_name(self) -> str:
        """As the chart's `cifar-ops.scoreJobName` names it."""
        release = self.release
        fullname = release if CHART_NAME in release else f"{release}-{CHART_NAME}"
        return f"{fullname[:63].rstrip('-')[:43].rstrip('-')}-score-{self.submission[:8]}"


def build_score_values(plan: ScoringPlan) -> dict[str, Any]:
    """Helm values of the scoring's release."""
    values = _values_without_submission(plan)
    values["score"]["submission"] = plan.submission
    return values


def _values_without_submission(plan: ScoringPlan) -> dict[str, Any]:
    values: dict[str, Any] = {
        "platform": {"enabled": False},
        "score": {"name": plan.name, "spec": plan.spec, "modelClaim": plan.model_claim},
        "job": json.loads(json.dumps(DEFAULT_JOB)),
    }
    return merge(values, plan.chart_values)


@dataclass(frozen=True)
class ScoreSubmitResult:
    plan: ScoringPlan
    namespace: str | None
    dry_run: bool
    manifests: str = ""  # `helm template` output (dry run)


def pinned(request: ScoringRequest) -> ScoringRequest:
    """A `models:/NAME@ALIAS` model as the version the alias names now, so the Job scores the
    model that was asked for even if the alias moves before its pod starts."""
    from dataclasses import replace

    from cifar_ops.storage.models import MODELS_SCHEME

    if not request.model.startswith(MODELS_SCHEME) or "@" not in request.model:
        return request
    from cifar_ops.warehouse.registry import resolve_reference

    return replace(request, model=resolve_reference(request.model).reference)


def submit_scoring(
    plan: ScoringPlan, *, namespace: str | None = None, dry_run: bool = False
) -> ScoreSubmitResult:
    """Render (dry run) or install the scoring's release. A finished Job of the same submission
    is deleted first, so helm creates it again and the scoring resumes."""
    from dataclasses import replace

    from cifar_ops.kube import cluster, helm
    from cifar_ops.kube.submit import remove_finished_job

    if dry_run:
        manifests = helm.template(plan.release, build_score_values(plan), namespace)
        return ScoreSubmitResult(plan, namespace, dry_run=True, manifests=manifests)
    helm.find_helm()
    helm.chart_dir()
    cluster.require_kubeconfig(", or use --dry-run to only print the manifests")
    plan = replace(plan, request=pinned(plan.request))
    values = build_score_values(plan)
    helm.template(plan.release, values, namespace)  # bad values fail here, before the cluster
    connected = cluster.connect(namespace)
    remove_finished_job(connected, plan.job_name)
    helm.upgrade_install(plan.release, values, namespace)
    return ScoreSubmitResult(plan, connected.namespace, dry_run=False)
