"""`train.mixed_precision` on the machine at hand: bfloat16 only where the CPU has it natively."""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import pytest

from cifar_ops import precision

X86_FLAGS = "fpu vme sse2 avx avx2 fma"
ZEN4_FLAGS = X86_FLAGS + " avx512f avx512_bf16 avx512_vnni"


def _cpuinfo(tmp_path: Path, key: str, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test cpu\n{key}\t\t: {flags}\n\n")
    return path


@pytest.mark.parametrize(
    ("key", "flags", "native"),
    [
        ("flags", X86_FLAGS, False),  # AVX2 only: bfloat16 emulated
        ("flags", ZEN4_FLAGS, True),
        ("flags", X86_FLAGS + " amx_tile amx_bf16", True),  # Sapphire Rapids
        ("Features", "fp asimd sve bf16 i8mm", True),  # Arm with the BF16 extension
        ("Features", "fp asimd evtstrm", False),
        ("model name", "avx512_bf16 in a name is not a flag", False),
    ],
)
def test_native_bfloat16_is_read_from_the_cpu_flags(
    tmp_path: Path, key: str, flags: str, native: bool
) -> None:
    assert precision.cpu_has_native_bfloat16(_cpuinfo(tmp_path, key, flags)) is native


def test_no_cpuinfo_means_no_native_bfloat16(tmp_path: Path) -> None:
    assert precision.cpu_has_native_bfloat16(tmp_path / "absent") is False


def test_a_cpu_without_native_bfloat16_trains_mixed_precision_in_float32(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: False)
    with caplog.at_level(logging.WARNING), precision.precision_policy(True) as policy:
        assert policy == keras.config.dtype_policy().name == "float32"
    assert "train.mixed_precision" in caplog.text and "float32" in caplog.text


def test_policy_is_bfloat16_on_a_native_cpu_and_restored_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: True)
    with precision.precision_policy(True) as policy:
        assert policy == keras.config.dtype_policy().name == "mixed_bfloat16"
        assert keras.layers.Dense(2).dtype_policy.compute_dtype == "bfloat16"
    assert keras.config.dtype_policy().name == "float32"
    with precision.precision_policy(False) as policy:
        assert policy == "float32"
