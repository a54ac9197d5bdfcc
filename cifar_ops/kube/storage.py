"""Where a submission's pods keep checkpoints and models, and the claims the chart leaves behind.

Parallel pods of a search land on several nodes, and a ReadWriteOnce volume attaches to one node
at a time: the others would hang in ContainerCreating on a Multi-Attach error. So a search with
parallelism > 1 needs an object store (`artifacts.uri`) or a ReadWriteMany claim.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cifar_ops.errors import ConfigError
from cifar_ops.kube.chartvalues import lookup
from cifar_ops.kube.cluster import Cluster, call
from cifar_ops.kube.naming import LABEL_EXPERIMENT, storage_selector

READ_WRITE_MANY = "ReadWriteMany"


def object_store(values: Mapping[str, Any]) -> bool:
    """Whether the runs go to an object store (the chart then makes no checkpoint claim)."""
    return bool(lookup(values, "artifacts.uri", ""))


def shared_checkpoints(values: Mapping[str, Any]) -> bool:
    """Whether pods on several nodes can all write the checkpoints at once."""
    if object_store(values) or lookup(values, "storage.checkpoints.existingClaim", ""):
        return True  # an existing claim is the operator's choice: its access mode is not ours
    return READ_WRITE_MANY in (lookup(values, "storage.checkpoints.accessModes", []) or [])


def require_parallel_safe_storage(
    values: Mapping[str, Any], parallelism: int, config_path: str | None = None
) -> None:
    """Refuse parallel pods on a ReadWriteOnce checkpoint claim (`values`: the effective ones)."""
    if parallelism <= 1 or shared_checkpoints(values):
        return
    modes = ", ".join(lookup(values, "storage.checkpoints.accessModes", []) or []) or "none"
    raise ConfigError(
        f"{parallelism} pods at once land on several nodes, but the checkpoint claim is {modes}"
        " (attached to one node at a time: the other pods would hang on Multi-Attach): set"
        " artifacts.uri to an object store (s3://bucket/prefix), or give"
        " storage.checkpoints a ReadWriteMany claim (accessModes: [ReadWriteMany] with a"
        " storageClassName that supports it, or an existingClaim), in executor.values or"
        " `submit --values FILE`; or set search.parallelism: 1",
        path=config_path,
        key="search.parallelism",
    )


@dataclass(frozen=True)
class Claim:
    """A PersistentVolumeClaim the chart made (kept on uninstall: `helm.sh/resource-policy`)."""

    name: str
    experiment: str
    phase: str  # Pending | Bound | Lost
    size: str
    storage_class: str | None
    access_modes: list[str]


def list_claims(cluster: Cluster, experiment: str | None = None) -> list[Claim]:
    """The chart's checkpoint and dataset-cache claims (of one experiment, or all), by name."""
    claims = call(
        "list PersistentVolumeClaims",
        cluster.core.list_namespaced_persistent_volume_claim,
        cluster.namespace,
        label_selector=storage_selector(experiment),
    )
    found = []
    for item in claims.items:
        claim = cluster.api_client.sanitize_for_serialization(item)
        spec, status = claim.get("spec") or {}, claim.get("status") or {}
        metadata = claim["metadata"]
        found.append(
            Claim(
                name=metadata["name"],
                experiment=(metadata.get("labels") or {}).get(LABEL_EXPERIMENT, ""),
                phase=status.get("phase", "Pending"),
                size=str(((spec.get("resources") or {}).get("requests") or {}).get("storage", "")),
                storage_class=spec.get("storageClassName"),
                access_modes=list(spec.get("accessModes") or []),
            )
        )
    return sorted(found, key=lambda claim: claim.name)


def delete_claims(cluster: Cluster, experiment: str) -> list[str]:
    """Delete the experiment's claims (their volumes go as their reclaim policy says)."""
    names = [claim.name for claim in list_claims(cluster, experiment)]
    for name in names:
        call(
            f"delete PersistentVolumeClaim {name}",
            cluster.core.delete_namespaced_persistent_volume_claim,
            name,
            cluster.namespace,
        )
    return names
