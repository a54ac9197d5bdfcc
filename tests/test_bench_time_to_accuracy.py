"""bench/time_to_accuracy.py runs end to end on a tiny synthetic task (so the GPU benchmark does
not rot between the sessions that have a GPU); its summary arithmetic is checked on known epochs.
No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench_scripts import load_bench


def test_summary_counts_seconds_up_to_the_first_epoch_at_the_target() -> None:
    bench = load_bench("time_to_accuracy")
    epochs = [
        {"epoch": 1, "seconds": 10.0, "accuracy": 0.5},  # includes compilation
        {"epoch": 2, "seconds": 2.0, "accuracy": 0.8},
        {"epoch": 3, "seconds": 3.0, "accuracy": 0.7},
        {"epoch": 4, "seconds": 4.0, "accuracy": 0.9},
    ]
    summary = bench.summarise("c.yaml", 10, 100, epochs, target=0.8)
    assert summary["reached_at_epoch"] == 2
    assert summary["seconds_to_target"] == 12.0
    assert summary["warm_seconds_to_target"] == 3.0 + 2.0  # first epoch at the median (3 s)
    assert summary["best_accuracy"] == 0.9 and summary["final_accuracy"] == 0.9
    missed = bench.summarise("c.yaml", 10, 100, epochs, target=0.95)
    assert missed["reached_at_epoch"] is None and missed["seconds_to_target"] is None
    assert "not reached by both" in bench.compare(missed, summary)
    faster = bench.summarise("c.yaml", 10, 100, epochs, target=0.5)  # reached at epoch 1
    assert faster["warm_seconds_to_target"] == 3.0
    assert "speed-up 1.67x" in bench.compare(faster, summary)


def test_bench_trains_both_configs_and_prints_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    candidate, baseline = tmp_path / "candidate.yaml", tmp_path / "baseline.yaml"
    body = """
experiment: bench-smoke
seed: 3
data: {source: synthetic, synthetic_images: 400, num_classes: 4, image_size: 16}
augmentation: {flip: true, crop_padding: 2}
optimizer: {name: sgd, learning_rate: 0.05, momentum: 0.85, nesterov: true}
schedule: {name: one_cycle}
train: {epochs: 2, batch_size: 32}
"""
    candidate.write_text(
        body
        + "model: {name: fast, widths: [8, 8, 8], whiten: true, dirac_init: true}\n"
        + "evaluation: {tta: flip_translate}\n"
    )
    baseline.write_text(body + "model: {name: fast, widths: [8, 8, 8], stem_filters: 8}\n")
    load_bench("time_to_accuracy").main(
        [
            "--config",
            str(candidate),
            "--baseline",
            str(baseline),
            "--target",
            "0.3",
            "--set",
            "optimizer.learning_rate=0.04",
            "--baseline-set",
            "train.epochs=3",
            "--config-set",
            "data.pipeline=device",
        ]
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    results = [json.loads(line) for line in lines]
    assert [Path(r["config"]).name for r in results] == ["candidate.yaml", "baseline.yaml"]
    assert [len(r["epochs"]) for r in results] == [2, 3]  # --baseline-set: the baseline only
    assert [r["pipeline"] for r in results] == ["device", "host"]
    for result in results:
        assert all(0.0 <= e["accuracy"] <= 1.0 and e["seconds"] > 0 for e in result["epochs"])
        assert result["train_images"] > 0 and result["params"] > 0
        assert result["images_per_second"] > 0


@pytest.mark.parametrize("pipeline", ["host", "device"])
def test_bench_applies_the_configs_per_step_weight_callbacks(tmp_path: Path, pipeline: str) -> None:
    """`model.whiten_bias_epochs` (and lookahead) act through callbacks; without them the bench
    would time a different recipe than the config says. The whitened stem's bias moves in the
    first epoch and then stays; the control fitter, given no callbacks, keeps moving it."""
    import numpy as np

    from cifar_ops.config import load_run_config
    from cifar_ops.data import load_dataset
    from cifar_ops.models.whitening import PatchWhitening
    from cifar_ops.training import weight_callbacks

    bench = load_bench("time_to_accuracy")
    path = tmp_path / "frozen.yaml"
    path.write_text(
        f"""
experiment: bench-freeze
seed: 5
data: {{source: synthetic, synthetic_images: 200, num_classes: 4, image_size: 16,
        pipeline: {pipeline}}}
augmentation: {{flip: true}}
model: {{name: fast, widths: [8, 8, 8], whiten: true, whiten_bias_epochs: 1}}
optimizer: {{name: sgd, learning_rate: 0.05, momentum: 0.85, nesterov: true}}
train: {{epochs: 3, batch_size: 32, lookahead: {{every: 2}}}}
"""
    )
    config = load_run_config(path, [])
    dataset = load_dataset(config.data, config.seed)

    def stem_biases(with_callbacks: bool) -> list[np.ndarray]:
        model, plan = bench.compiled_model(config, dataset)
        callbacks = weight_callbacks(model, plan, plan.phases[0]) if with_callbacks else []
        stem = next(layer for layer in model.layers if isinstance(layer, PatchWhitening))
        fit_epoch = bench.epoch_fitter(model, plan, dataset, callbacks)
        seen = [np.array(stem.bias)]
        for epoch in range(3):
            fit_epoch(epoch)
            seen.append(np.array(stem.bias))
        return seen

    frozen = stem_biases(with_callbacks=True)
    assert not np.allclose(frozen[0], frozen[1])  # trained in epoch 1
    np.testing.assert_array_equal(frozen[1], frozen[2])
    np.testing.assert_array_equal(frozen[1], frozen[3])
    free = stem_biases(with_callbacks=False)
    assert not np.allclose(free[1], free[3])
