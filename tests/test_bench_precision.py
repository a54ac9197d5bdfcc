"""bench/precision.py runs end to end on a tiny net (so the measurement behind the bfloat16 rule
can be repeated on the next machine): both policies train, the table row matches what it
measured, and the process is left on float32. No rate or ratio is asserted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.bench_scripts import load_bench
from tests.engine_helpers import TINY


def test_bench_times_both_policies_prints_their_row_and_restores_float32(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import keras

    from cifar_ops.precision import cpu_has_native_bfloat16

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "train": {"epochs": 1, "batch_size": 8}}))
    args = ["--config", str(config), "--steps", "2", "--warmup", "1", "--repeats", "1"]

    results = load_bench("precision").main(args)

    medians = results["tiny.yaml"]
    assert set(medians) == {"float32", "mixed_bfloat16"}
    assert all(rate > 0 for rate in medians.values())
    out = capsys.readouterr().out
    assert f"native bfloat16 (flags in /proc/cpuinfo): {cpu_has_native_bfloat16()}" in out
    row = re.search(r"^\| tiny\.yaml \| 8 \| (\d+) \| (\d+) \| ([\d.]+)x \|$", out, re.MULTILINE)
    assert row, out
    assert int(row[1]) == round(medians["float32"])
    assert int(row[2]) == round(medians["mixed_bfloat16"])
    assert float(row[3]) == round(medians["mixed_bfloat16"] / medians["float32"], 2)
    assert keras.config.dtype_policy().name == "float32"  # the next measurement starts clean
