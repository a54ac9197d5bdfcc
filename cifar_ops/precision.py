"""What `train.mixed_precision: true` means on the machine a run lands on.

On a GPU it is float16. On a CPU it is bfloat16 only where the CPU computes in bfloat16 natively
(AVX512_BF16 or AMX on x86, the BF16 extension on Arm): there oneDNN runs it at about twice the
float32 rate, but on a CPU without it every bfloat16 op is emulated, and training was measured
5-7x slower than float32 (bench/RESULTS.md, "bfloat16 on a CPU without native support"). Such a
CPU trains in float32 instead, with a warning; the policy a run used is recorded with its hardware.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import keras

from cifar_ops.backend import has_gpu

log = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")
# /proc/cpuinfo flags (x86 "flags", Arm "Features") that mean bfloat16 arithmetic in hardware
NATIVE_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_has_native_bfloat16(cpuinfo: Path = CPUINFO) -> bool:
    """Whether the CPU lists a bfloat16 flag; False where there is no /proc/cpuinfo to read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features") and NATIVE_BFLOAT16_FLAGS & set(value.split()):
            return True
    return False


def mixed_policy() -> str:
    """The Keras dtype policy `mixed_precision: true` stands for on this machine."""
    if has_gpu():
        return "mixed_float16"
    if cpu_has_native_bfloat16():
        return "mixed_bfloat16"
    log.warning(
        "train.mixed_precision: this CPU has no native bfloat16 (no avx512_bf16, amx_bf16 or "
        "bf16 flag in %s), where bfloat16 runs several times slower than float32: "
        "training in float32",
        CPUINFO,
    )
    return "float32"


@contextlib.contextmanager
def precision_policy(mixed: bool) -> Iterator[str]:
    """Build and train under the run's dtype policy; yields its name (recorded with the run)."""
    previous = keras.config.dtype_policy()
    policy = mixed_policy() if mixed else previous.name
    keras.config.set_dtype_policy(policy)
    try:
        yield policy
    finally:
        keras.config.set_dtype_policy(previous)
