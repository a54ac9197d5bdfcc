"""Where runs execute: one module per `ExecutorKind`, found by the kind's value.

`cifar-ops run` is the local executor (here, in this process); `cifar-ops submit` uses the cluster
executor `executor.kind` names, kubernetes when it says local. A new executor (Ray, Slurm) is a
value in `cifar_ops.vocabulary.ExecutorKind` and a module `cifar_ops/executors/<value>.py` whose
`EXECUTOR` implements `Executor`.
"""

from __future__ import annotations

import importlib

from cifar_ops.executors.base import Executor, Launch
from cifar_ops.vocabulary import ExecutorKind

DEFAULT_CLUSTER = ExecutorKind.KUBERNETES  # where `submit` sends a config whose kind is local


def executor_for(kind: ExecutorKind | str) -> Executor:
    """The executor of `kind`; its module is imported only now (the CLI stays light)."""
    kind = ExecutorKind(kind)
    executor: Executor = importlib.import_module(f"cifar_ops.executors.{kind.value}").EXECUTOR
    return executor


def cluster_kind(kind: ExecutorKind | str) -> ExecutorKind:
    """The executor `submit` uses for a config of this `executor.kind`: never this machine."""
    kind = ExecutorKind(kind)
    return DEFAULT_CLUSTER if kind is ExecutorKind.LOCAL else kind


__all__ = ["DEFAULT_CLUSTER", "Executor", "Launch", "cluster_kind", "executor_for"]
