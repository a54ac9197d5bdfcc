"""Which Keras backend runs the engine, and the refusal of TensorFlow-only parts under another.

The engine (device data path, models, losses, schedules, optimizers, callbacks, checkpoints)
runs on `KERAS_BACKEND=tensorflow` (the default, what Dockerfile.gpu ships) or `jax`. The host
data path (tf.data) and the multi-GPU strategy need TensorFlow; they call `require_tensorflow`,
which names the config key and the way out instead of failing inside an import.
"""

from __future__ import annotations

from cifar_ops.errors import ConfigError

BACKENDS = ("tensorflow", "jax")


def backend() -> str:
    """The Keras backend of this process (read from KERAS_BACKEND when Keras was imported)."""
    import keras

    return keras.backend.backend()


def require_tensorflow(what: str, *, key: str, instead: str) -> None:
    """Raise `ConfigError` at `key` when `what` is asked for under a backend other than TF."""
    name = backend()
    if name != "tensorflow":
        raise ConfigError(
            f"{what} needs the TensorFlow backend, but KERAS_BACKEND is {name!r}; {instead} "
            "or run with KERAS_BACKEND=tensorflow",
            key=key,
        )


def check_backend() -> None:
    """Refuse a Keras backend the engine does not support (it is tested on `BACKENDS`)."""
    name = backend()
    if name not in BACKENDS:
        raise ConfigError(
            f"KERAS_BACKEND={name!r} is not supported: use one of {', '.join(BACKENDS)}",
            key="KERAS_BACKEND",
        )


def has_gpu() -> bool:
    """Whether the backend sees a GPU (TensorFlow's physical devices, or JAX's)."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if name == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    return False


def limit_cpu_threads(threads: int) -> None:
    """Give this process `threads` CPU threads for its ops, so N local workers share the cores
    instead of each sizing a pool for all of them. TensorFlow takes it before its first op; JAX's
    CPU client sizes its own pool and is left alone (importing TensorFlow there would cost a
    JAX worker seconds and memory for nothing)."""
    if backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
