"""How many replicas a run trains on, and the `tf.distribute` strategy that runs them.

On a machine with GPUs a run trains on `resources.gpus` of them (the pod's `nvidia.com/gpu`
limit; at most the GPUs it can see, with a warning when fewer). More than one replica is a
`MirroredStrategy` over `/gpu:0..N-1`: variables mirrored, each global batch split across the
replicas, gradients all-reduced. One replica is TensorFlow's default strategy, no scope at all.
Without GPUs `resources.gpus` is ignored and a run has one replica, unless `CIFAR_OPS_REPLICAS`
asks for N: then it mirrors over N logical CPU devices (made here when TensorFlow has not started
yet), which tests the multi-replica path on a laptop. `CIFAR_OPS_REPLICAS` also overrides
`resources.gpus` on a GPU machine. Another Keras backend trains one replica: asking it for more is
a `ConfigError`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from cifar_ops import settings
from cifar_ops.backend import backend, has_gpu, require_tensorflow
from cifar_ops.errors import ConfigError

log = logging.getLogger(__name__)


def strategy_for(gpus: int) -> Any | None:
    """The `tf.distribute` strategy for a run whose config asks for `gpus` GPUs, or None for one
    replica (see the module docstring). Call it before anything starts TensorFlow's runtime."""
    asked = settings.replicas()
    if backend() != "tensorflow":
        if asked is not None and asked > 1:
            require_tensorflow(
                "more than one replica", key="CIFAR_OPS_REPLICAS", instead="unset it"
            )
        if gpus > 1 and has_gpu():
            require_tensorflow(
                "resources.gpus > 1 (MirroredStrategy)",
                key="resources.gpus",
                instead="set resources.gpus: 1",
            )
        return None
    import tensorflow as tf

    visible = tf.config.list_physical_devices("GPU")
    if visible:
        wanted = asked if asked is not None else max(1, gpus)
        if wanted > len(visible):
            if asked is not None:
                raise ConfigError(
                    f"CIFAR_OPS_REPLICAS={asked} asks for more replicas than the "
                    f"{len(visible)} GPU(s) this process sees"
                )
            log.warning(
                "resources.gpus is %d but %d GPU(s) are visible: training on %d",
                gpus,
                len(visible),
                len(visible),
            )
            wanted = len(visible)
        devices = [f"/gpu:{i}" for i in range(wanted)]
    else:
        wanted = asked or 1
        devices = _cpu_devices(wanted) if wanted > 1 else []
    if wanted == 1:
        return None
    return tf.distribute.MirroredStrategy(devices)


def replicas_of(strategy: Any | None) -> int:
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


@contextlib.contextmanager
def scope(strategy: Any | None) -> Iterator[None]:
    """The strategy's scope; nothing at all for one replica (TensorFlow's default strategy)."""
    if strategy is None:
        yield
        return
    with strategy.scope():
        yield


def _cpu_devices(count: int) -> list[str]:
    """`count` logical CPU devices, configured now if TensorFlow has not started yet."""
    import tensorflow as tf

    (cpu, *_) = tf.config.list_physical_devices("CPU")
    configured = tf.config.get_logical_device_configuration(cpu) or []
    if len(configured) < count:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
            )
        except RuntimeError as exc:  # the runtime has started: its devices are fixed
            have = len(tf.config.list_logical_devices("CPU"))
            raise ConfigError(
                f"CIFAR_OPS_REPLICAS={count} needs {count} CPU devices but TensorFlow already "
                f"started with {have}: set it before the process starts TensorFlow"
            ) from exc
    return [f"/cpu:{i}" for i in range(count)]
