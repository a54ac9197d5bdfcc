"""The engine on both Keras backends: the device path, the `fast` net, ShiftScaledSGD, one-cycle,
callbacks and checkpoints train the same synthetic task under TensorFlow (in process) and JAX
(one subprocess that cannot import TensorFlow); .keras files move between the two; the host path
is refused under JAX; the device path's augmentation tests also pass under JAX."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tests import backend_task

pytest.importorskip("jax")

ROOT = Path(__file__).resolve().parents[1]
ACCURACY = 0.9  # on 4 classes: chance is 0.25


def under_jax(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def report_of(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tensorflow_task(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The task trained here, under TensorFlow."""
    assert keras.backend.backend() == "tensorflow"
    return backend_task.train(tmp_path_factory.mktemp("tensorflow"))


@pytest.fixture(scope="module")
def jax_reports(tensorflow_task: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every JAX-side action in one subprocess that cannot import TensorFlow: the task trained,
    a whole run, TensorFlow's model loaded, and the host path planned."""
    out = tmp_path_factory.mktemp("jax")
    actions = ["--train", "--run", "--refuse-host", "--load", tensorflow_task["model"]]
    report = report_of(under_jax("-m", "tests.backend_task", str(out), *actions, "--no-tensorflow"))
    assert report["backend"] == "jax" and not report["tensorflow_imported"]
    return report


def test_the_engine_trains_under_jax_without_tensorflow_and_tensorflow_loads_its_model(
    jax_reports: dict,
) -> None:
    report = jax_reports["train"]
    assert report["epochs"] == [1, 2, 3, 4]
    assert report["accuracy"] > ACCURACY
    model_path = Path(report["model"])
    assert len(list((model_path.parent / "checkpoint").glob("*.weights.h5"))) >= 1
    backend_task.register_custom_objects()
    model = keras.models.load_model(model_path)  # saved by JAX, loaded by TensorFlow
    assert model.optimizer.batch_norm_lr_scale == 4  # ShiftScaledSGD came through
    _, dataset = backend_task.held_out()
    here = model.predict(dataset.test.images.astype("float32"), verbose=0)
    np.testing.assert_allclose(here, np.load(report["predictions"]), atol=1e-4)


def test_the_same_task_under_tensorflow_ends_as_accurate_and_jax_loads_its_model(
    tensorflow_task: dict, jax_reports: dict
) -> None:
    assert tensorflow_task["epochs"] == [1, 2, 3, 4]
    assert tensorflow_task["accuracy"] > ACCURACY
    np.testing.assert_allclose(
        np.load(jax_reports["load"]["predictions"]),
        np.load(tensorflow_task["predictions"]),
        atol=1e-4,
    )


def test_a_whole_run_succeeds_under_jax_without_tensorflow(jax_reports: dict) -> None:
    report = jax_reports["run"]
    assert report["status"].endswith("succeeded") and report["accuracy"] > 0.7
    assert Path(report["model"]).is_file()


def test_the_host_pipeline_is_refused_under_jax_with_a_config_error(jax_reports: dict) -> None:
    assert jax_reports["host"] == {
        # the key once, then the value: the message named the key twice before
        "refused": "data.pipeline: host (the tf.data pipeline) needs the TensorFlow backend, but "
        "KERAS_BACKEND is 'jax'; set data.pipeline: device or run with KERAS_BACKEND=tensorflow",
        "device_pipeline": "device",
    }


def test_the_device_augmentation_and_evaluation_tests_pass_under_jax() -> None:
    done = under_jax(
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_device_pipeline.py",
        "tests/test_evaluation.py",  # test-time augmentation in keras.ops
        "-k",
        # the two whole-run resume tests: training and checkpoints under JAX are the tests
        # above; the two-phase one alone costs 36 s of XLA compiling on the 2-core CPU
        "not resumed and not two_phases",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_a_local_worker_limits_its_threads_without_importing_tensorflow_under_jax(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Search workers share the cores through `limit_cpu_threads`; under JAX that must not
    import TensorFlow (made unimportable here, so the TensorFlow branch would fail)."""
    from cifar_ops import backend

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` now raises
    monkeypatch.setattr(backend, "backend", lambda: "jax")
    backend.limit_cpu_threads(1)
    monkeypatch.setattr(backend, "backend", lambda: "tensorflow")
    with pytest.raises(ImportError):
        backend.limit_cpu_threads(1)
