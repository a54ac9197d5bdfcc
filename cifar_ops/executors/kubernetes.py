"""The kubernetes executor: `cifar-ops submit` installs the chart; each pod runs `runner.execute`.

A run is one Job and a search one Indexed Job listing every trial still to run, so it takes methods
that know their trials up front (grid, random). Pods record their runs with executor `kubernetes`
(jobs/entrypoint.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from cifar_ops.config import RunConfig, SearchConfig
from cifar_ops.executors.base import Launch
from cifar_ops.kube.submit import SubmitResult, submit_loaded
from cifar_ops.vocabulary import ExecutorKind


@dataclass(frozen=True)
class KubernetesExecutor:
    """Submits through helm to the cluster of the kubeconfig; the warehouse records the runs."""

    kind: ExecutorKind = ExecutorKind.KUBERNETES
    in_process: bool = False

    def launch(self, loaded: RunConfig | SearchConfig, launch: Launch) -> SubmitResult:
        return submit_loaded(
            loaded,
            launch.config_path,
            namespace=launch.namespace,
            dry_run=launch.dry_run,
            database_url=launch.database_url,
            values_files=launch.values_files,
            run_id=launch.run_id,
        )


EXECUTOR = KubernetesExecutor()
