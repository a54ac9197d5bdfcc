"""bench/device_augment.py runs end to end on a small split: both ways of reading a batch give
the same pixels, each is timed, and the output names the one the trainer runs. No rate or
ratio is asserted."""

from __future__ import annotations

from pathlib import Path

import keras
import pytest
import yaml

from tests.bench_scripts import load_bench
from tests.engine_helpers import TINY


def test_bench_times_both_reads_of_a_batch_and_names_the_trainers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "crop.yaml"
    config.write_text(yaml.safe_dump({**TINY, "augmentation": {"flip": True, "crop_padding": 2}}))
    args = ["--config", str(config), "--images", "40", "--size", "8", "--batch", "16"]

    result = load_bench("device_augment").main([*args, "--calls", "2", "--repeats", "2"])

    assert result["augmentation"] == {"flip": True, "crop_padding": 2}
    assert set(result["ms_per_batch"]) == {"baseline", "folded"}
    assert all(len(times) == 2 for times in result["ms_per_batch_repeats"].values())
    tensorflow = keras.backend.backend() == "tensorflow"
    assert result["trainer_runs"] == ("folded" if tensorflow else "baseline")
    ratio = result["ms_per_batch"]["baseline"] / result["ms_per_batch"]["folded"]
    assert result["ratio"] == pytest.approx(ratio, abs=0.01)
    assert f"| {result['ratio']}x | {result['trainer_runs']} |" in capsys.readouterr().out
