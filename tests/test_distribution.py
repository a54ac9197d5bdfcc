"""Training over several replicas (MirroredStrategy), and one replica adding nothing.

The two-replica run needs two logical CPU devices, which TensorFlow only makes before its runtime
starts: it runs in fresh processes (`CIFAR_OPS_REPLICAS=2`), twice, the second one resuming.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from cifar_ops import distribution
from cifar_ops.checkpoints import BatchLayout, RunDirectory
from cifar_ops.config import load_run_config
from cifar_ops.errors import ConfigError
from cifar_ops.models import build_model
from cifar_ops.plan import build_plan
from cifar_ops.runner import execute
from cifar_ops.warehouse.store import open_store
from tests.engine_helpers import TINY, tiny_config
from tests.memory_sink import MemorySink

REPO = Path(__file__).resolve().parent.parent
RUN_ID = "d" * 32

# A whitened fast net in mixed precision over two replicas, preempted after epoch 1 (the first
# process), then resumed (the second). It reports what the engine ran under.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import keras, numpy as np, tensorflow as tf
    from cifar_ops.config import load_run_config
    from cifar_ops.runner import execute
    from cifar_ops.warehouse.store import open_store

    config_path, url, run_id, stop_after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    seen = {"epoch_writes": [], "strategies": set(), "whitening_copies_equal": []}

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["strategies"].add(type(self.model.distribute_strategy).__name__)
            seen["replicas"] = self.model.distribute_strategy.num_replicas_in_sync
            kernel = self.model.get_layer("stem_whiten").kernel.value
            copies = [np.asarray(v) for v in kernel.values]
            seen["whitening_copies"] = len(copies)
            seen["whitening_copies_equal"].append(
                all(np.array_equal(copies[0], c) for c in copies)
            )
            seen["whitening_kernel"] = copies[0].ravel()[:8].tolist()

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == stop_after:
                raise KeyboardInterrupt

    store = open_store(url)
    log_epoch = store.log_epoch
    def counted(run, record):
        seen["epoch_writes"].append(record.epoch)
        log_epoch(run, record)
    store.log_epoch = counted
    try:
        outcome = execute(load_run_config(config_path), sink=store, run_id=run_id,
                          callbacks=[Probe()])
        seen["status"] = outcome.status
    except KeyboardInterrupt:
        seen["status"] = "interrupted"
    seen["strategies"] = sorted(seen["strategies"])
    print("RESULT " + json.dumps(seen))
    """
)


def two_replica_config(path: Path) -> Path:
    raw = {
        **TINY,
        "data": {**TINY["data"], "image_size": 16},
        "model": {"name": "fast", "widths": [8, 8, 8], "whiten": True},
        "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9},
        "augmentation": {"flip": True},
        "train": {"epochs": 2, "batch_size": 16, "mixed_precision": True},
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def run_replicas(tmp_path: Path, config: Path, url: str, stop_after: int) -> dict:
    env = {
        **os.environ,
        "CIFAR_OPS_REPLICAS": "2",
        "PYTHONPATH": str(REPO),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(config), url, RUN_ID, str(stop_after)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def test_two_replicas_train_resume_and_log_each_epoch_once(tmp_path: Path, sqlite_url: str) -> None:
    config = two_replica_config(tmp_path / "two.yaml")
    first = run_replicas(tmp_path, config, sqlite_url, stop_after=1)
    assert first["status"] == "interrupted" and first["epoch_writes"] == [1]
    assert first["strategies"] == ["MirroredStrategy"] and first["replicas"] == 2
    # the whitening stem was fitted once and mirrored: both replicas hold the same filters
    assert first["whitening_copies"] == 2 and first["whitening_copies_equal"] == [True]

    second = run_replicas(tmp_path, config, sqlite_url, stop_after=0)
    assert second["status"] == "succeeded" and second["epoch_writes"] == [2]
    assert second["strategies"] == ["MirroredStrategy"] and second["whitening_copies_equal"]
    assert second["whitening_kernel"] == pytest.approx(first["whitening_kernel"])  # restored

    store = open_store(sqlite_url)
    epochs = store.epochs(RUN_ID)
    assert [e.epoch for e in epochs] == [1, 2]
    # per-replica batch 16 over 2 replicas: global batch 32, rate 0.01 x 2 (the linear rule)
    assert all(e.learning_rate == pytest.approx(0.02) for e in epochs)
    run = store.get_run(RUN_ID)
    assert run.summary.status == "succeeded" and run.summary.test_accuracy is not None
    recorded = json.loads((tmp_path / "runs" / RUN_ID / "config.json").read_text())
    assert (recorded["global_batch"], recorded["replicas"]) == (32, 2)

    # the same run on one replica would train another global batch: refused before it starts
    with pytest.raises(ConfigError, match="global batch of 32 on 2 replica"):
        execute(load_run_config(config), sink=store, run_id=RUN_ID)
    assert store.get_run(RUN_ID).summary.status == "succeeded"


def test_one_replica_runs_without_any_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIFAR_OPS_REPLICAS", raising=False)
    assert not tf.config.list_physical_devices("GPU")
    assert distribution.strategy_for(4) is None  # resources.gpus is ignored without GPUs
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append((tf.distribute.has_strategy(), self.model.distribute_strategy))

    config = tiny_config(train={"epochs": 1}, resources={"gpus": 2})
    execute(config, sink=MemorySink(), callbacks=[Probe()])
    default = tf.distribute.get_strategy()
    assert seen and all(not scoped and strategy is default for scoped, strategy in seen)


def test_replicas_asked_for_after_tensorflow_started_or_badly_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tf.constant(0)  # the runtime has started: its CPU devices are fixed
    if len(tf.config.list_logical_devices("CPU")) == 1:
        monkeypatch.setenv("CIFAR_OPS_REPLICAS", "2")
        with pytest.raises(ConfigError, match="CIFAR_OPS_REPLICAS=2 .*already started"):
            distribution.strategy_for(1)
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("CIFAR_OPS_REPLICAS", bad)
        with pytest.raises(ConfigError, match=f"CIFAR_OPS_REPLICAS='{bad}'"):
            distribution.strategy_for(1)


def plan_for(replicas: int, **train: object):
    config = tiny_config(
        train={"epochs": 4, "batch_size": 32, **train},
        optimizer={"name": "sgd", "learning_rate": 0.1},
        schedule={
            "name": "piecewise",
            "stages": [{"epochs": 2, "learning_rate": 0.1}, {"epochs": 2, "learning_rate": 0.01}],
        },
    )
    model = build_model(config.model, input_shape=(16, 16, 3), num_classes=4)
    return config, build_plan(config, model, train_images=480, replicas=replicas)


def test_the_global_batch_and_learning_rate_rule() -> None:
    _, plan = plan_for(1)
    assert (plan.batch_size, plan.steps_per_epoch, plan.learning_rate_scale) == (32, 15, 1.0)

    config, plan = plan_for(2)  # per-replica batch: global 64, every rate doubled
    assert (plan.batch_size, plan.replica_batch_size, plan.steps_per_epoch) == (64, 32, 8)
    (phase,) = plan.phases
    assert phase.learning_rate == pytest.approx(0.2)
    assert [s.learning_rate for s in phase.schedule.stages] == pytest.approx([0.2, 0.02])
    assert (
        config.config_hash()
        == tiny_config(
            train={"epochs": 4, "batch_size": 32},
            optimizer={"name": "sgd", "learning_rate": 0.1},
            schedule=config.schedule.model_dump(),
        ).config_hash()
    )  # the new keys at their defaults leave every hash as it was

    _, plan = plan_for(2, scale_learning_rate=False)
    assert plan.batch_size == 64 and plan.phases[0].learning_rate == pytest.approx(0.1)

    config, plan = plan_for(4, batch_size_is_global=True)  # global batch: split, rates as given
    assert (plan.batch_size, plan.replica_batch_size, plan.steps_per_epoch) == (32, 8, 15)
    assert plan.phases[0].schedule.stages[1].learning_rate == pytest.approx(0.01)
    assert config.config_hash() != plan_for(4)[0].config_hash()

    with pytest.raises(ConfigError, match="train.batch_size: 32 does not split evenly across 3"):
        plan_for(3, batch_size_is_global=True)


def test_the_scaled_floor_of_a_cosine_schedule() -> None:
    config = tiny_config(schedule={"name": "cosine", "min_learning_rate": 0.001})
    model = build_model(config.model, input_shape=(16, 16, 3), num_classes=4)
    (phase,) = build_plan(config, model, train_images=480, replicas=2).phases
    assert phase.schedule.min_learning_rate == pytest.approx(0.002)
    assert phase.learning_rate == pytest.approx(2 * config.optimizer.learning_rate)
    assert np.isclose(
        phase.schedule.min_learning_rate / phase.learning_rate,
        config.schedule.min_learning_rate / config.optimizer.learning_rate,
    )


def test_a_resume_must_train_the_global_batch_the_run_started_with() -> None:
    config = tiny_config()  # batch_size 32
    RunDirectory("two").create(config, ["a", "b", "c", "d"], layout=BatchLayout(64, 2))
    assert RunDirectory("two").check(config, layout=BatchLayout(64, 4)) == config.config_hash()
    with pytest.raises(ConfigError, match="global batch of 64 on 2 replica.*this process has 1"):
        RunDirectory("two").check(config, layout=BatchLayout(32, 1))

    # a config.json from before multi-replica training: one replica of train.batch_size
    RunDirectory("one").create(config, ["a", "b", "c", "d"])
    recorded = json.loads(RunDirectory("one").config_path.read_text())
    assert "global_batch" not in recorded
    assert RunDirectory("one").check(config, layout=BatchLayout(32, 1)) == config.config_hash()
    with pytest.raises(ConfigError, match="global batch of 32 on 1 replica"):
        RunDirectory("one").check(config, layout=BatchLayout(64, 2))
