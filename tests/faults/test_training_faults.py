"""Faults under a training run: SIGKILL and SIGTERM mid-epoch, a corrupt newest checkpoint, a full
artifacts disk. Each checks the exit code, the message, and that the warehouse ends up holding
every completed epoch exactly once.

The signal and full-disk runs are real `cifar-ops run` processes stopped at an exact step
(tests/faults/faulting_run.py) on a real PostgreSQL database. The full disk is a real 16 MiB tmpfs
the test mounts over the artifacts directory (root only; elsewhere the test is skipped, saying
why). The corrupt-checkpoint runs go through `runner.execute` in this process.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import keras
import pytest

from cifar_ops.checkpoints import RunDirectory
from cifar_ops.runner import execute
from cifar_ops.warehouse import open_store
from cifar_ops.warehouse.migrate import upgrade_database
from tests.engine_helpers import tiny_config as tiny_run_config
from tests.faults.warehouse_runs import (
    assert_complete,
    cifar_ops_here,
    environment,
    tiny_config,
    warehouse_rows,
)

START_SECONDS = 180.0  # TensorFlow's import and a first epoch on a busy CPU


@pytest.fixture
def warehouse(postgres_url: str) -> str:
    upgrade_database(postgres_url)
    return postgres_url


def faulting_run(
    url: str, run_id: str, config: Path, action: str, *, stderr: Path, epoch: int = 2
) -> subprocess.Popen[bytes]:
    """`cifar-ops run` that performs `action` after batch 3 of `epoch` (faulting_run.py)."""
    command = [sys.executable, "-m", "tests.faults.faulting_run", str(epoch), "3", action, "--"]
    command += ["run", "-c", str(config), "--run-id", run_id]
    with stderr.open("wb") as err:
        return subprocess.Popen(
            command, env=environment(url), stdout=subprocess.DEVNULL, stderr=err
        )


def wait_for(process: subprocess.Popen[bytes], stderr: Path, line: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while line not in stderr.read_text(errors="replace"):
        if process.poll() is not None:
            pytest.fail(f"the run exited {process.returncode} first:\n{stderr.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {line!r} after {START_SECONDS:.0f} s")
        time.sleep(0.02)


def epoch_seconds(url: str, run_id: str) -> dict[int, float]:
    """Each logged epoch's wall time: a row rewritten by a rerun of its epoch changes it."""
    with open_store(url) as store:
        return {record.epoch: record.seconds for record in store.epochs(run_id)}


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_signal_mid_epoch_then_the_resume_lands_every_epoch_once(
    warehouse: str, tmp_path: Path, signum: signal.Signals
) -> None:
    run_id = uuid.uuid4().hex
    config = tiny_config(tmp_path / "tiny.yaml")
    stderr = tmp_path / "stderr.txt"
    process = faulting_run(warehouse, run_id, config, "hold", stderr=stderr)
    wait_for(process, stderr, "fault: holding")  # inside epoch 2, after its third batch
    process.send_signal(signum)
    code = process.wait(timeout=120)
    message = stderr.read_text(errors="replace")

    rows = warehouse_rows(warehouse, run_id)
    assert rows["epochs"] == {1: 1}  # epoch 1 completed; epoch 2 was cut short
    state = RunDirectory(run_id).load_state()
    assert state is not None and state.epochs_done == 1
    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL
        assert rows["summary"].status == "running"  # nobody was left to say otherwise
    else:
        assert code == 143, message
        assert f"preempted (SIGTERM): resume with --run-id {run_id}" in message
        assert "Traceback" not in message
        assert rows["summary"].status == "preempted"
        assert rows["summary"].status_reason == "SIGTERM"
    before = epoch_seconds(warehouse, run_id)

    resumed = cifar_ops_here(warehouse, "run", "-c", str(config), "--run-id", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_complete(warehouse, run_id)
    assert epoch_seconds(warehouse, run_id)[1] == before[1]  # resumed after epoch 1, not redone


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted for this test: the artifacts directory of the run."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs for the full-disk test needs root and mount(8)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.slow
def test_a_full_artifacts_disk_fails_the_run_clearly_and_keeps_what_was_done(
    warehouse: str, tmp_path: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifacts = small_disk / "runs"
    monkeypatch.setenv("CIFAR_OPS_ARTIFACTS", str(artifacts))
    run_id = uuid.uuid4().hex
    config = tiny_config(tmp_path / "tiny.yaml")
    stderr = tmp_path / "stderr.txt"
    process = faulting_run(warehouse, run_id, config, f"fill:{small_disk}", stderr=stderr)
    code = process.wait(timeout=START_SECONDS)
    message = stderr.read_text(errors="replace")

    assert "fault: disk full" in message
    assert code == 8, message[-3000:]
    assert "error:" in message and "No space left on device" in message
    assert "resume" in message and "Traceback" not in message
    rows = warehouse_rows(warehouse, run_id)
    assert rows["summary"].status == "failed"
    assert "StorageError" in rows["summary"].status_reason
    assert "No space left on device" in rows["summary"].status_reason
    assert rows["epochs"][1] == 1 and set(rows["epochs"].values()) == {1}
    run_dir = RunDirectory(run_id)
    state = run_dir.load_state()  # the last complete checkpoint is intact ...
    assert state is not None and state.epochs_done == 1
    assert not list(run_dir.checkpoint_dir.glob("tmp-*"))  # ... and no half-written file is left

    (small_disk / "filler").unlink()  # room again: the same run id resumes and completes
    resumed = cifar_ops_here(warehouse, "run", "-c", str(config), "--run-id", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_complete(warehouse, run_id)


class StopAfter(keras.callbacks.Callback):
    """Stops the run like a killed pod right after epoch `epoch`'s checkpoint was written."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt("stopped for the test")


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def zero(path: Path) -> None:
    path.write_bytes(b"\0" * path.stat().st_size)


def garbage(path: Path) -> None:
    path.write_bytes(b'{"epochs_done": 2, "weights_fi\xff')


CORRUPTIONS = {
    "truncated-weights": ("weights.h5", truncate),
    "zeroed-weights": ("weights.h5", zero),
    "garbage-state": ("state.json", garbage),
    "zeroed-state": ("state.json", zero),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(
    sqlite_url: str, corruption: str, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = uuid.uuid4().hex
    with open_store(sqlite_url) as store, pytest.raises(KeyboardInterrupt):
        execute(tiny_run_config(), sink=store, run_id=run_id, callbacks=[StopAfter(2)])
    checkpoint = RunDirectory(run_id).checkpoint_dir
    kept = sorted(path.name for path in checkpoint.iterdir())
    assert kept == [
        "train-epoch-0001.state.json",
        "train-epoch-0001.weights.h5",
        "train-epoch-0002.state.json",
        "train-epoch-0002.weights.h5",
    ]
    suffix, damage = CORRUPTIONS[corruption]
    damage(checkpoint / f"train-epoch-0002.{suffix}")
    before = epoch_seconds(sqlite_url, run_id)

    with (
        caplog.at_level(logging.WARNING, logger="cifar_ops.checkpoints"),
        open_store(sqlite_url) as store,
    ):
        outcome = execute(tiny_run_config(), sink=store, run_id=run_id)
    assert outcome.status == "succeeded"
    warnings = caplog.text
    assert "train-epoch-0002" in warnings and "unreadable" in warnings
    assert "resumes from the checkpoint before: train-epoch-0001.state.json" in warnings
    assert_complete(sqlite_url, run_id)
    after = epoch_seconds(sqlite_url, run_id)
    assert after[1] == before[1] and after[2] != before[2]  # epoch 2 trained again, 1 kept


def test_with_no_readable_checkpoint_the_run_starts_over(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = uuid.uuid4().hex
    with open_store(sqlite_url) as store, pytest.raises(KeyboardInterrupt):
        execute(tiny_run_config(), sink=store, run_id=run_id, callbacks=[StopAfter(2)])
    checkpoint = RunDirectory(run_id).checkpoint_dir
    for weights in checkpoint.glob("*.weights.h5"):
        zero(weights)
    before = epoch_seconds(sqlite_url, run_id)

    with (
        caplog.at_level(logging.WARNING, logger="cifar_ops.checkpoints"),
        open_store(sqlite_url) as store,
    ):
        outcome = execute(tiny_run_config(), sink=store, run_id=run_id)
    assert outcome.status == "succeeded"
    assert f"no readable checkpoint in {checkpoint}: run {run_id} starts over" in caplog.text
    assert_complete(sqlite_url, run_id)
    assert epoch_seconds(sqlite_url, run_id)[1] != before[1]  # epoch 1 trained (and logged) again
    assert sorted(p.name for p in checkpoint.iterdir() if "0002" in p.name) == []  # pruned


def test_checkpoint_files_are_fsynced_before_their_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cifar_ops import checkpoints

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        kind = "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"
        events.append(f"fsync {kind}")
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        events.append(f"rename {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(checkpoints.os, "fsync", fsync)
    monkeypatch.setattr(checkpoints.os, "replace", replace)
    checkpoints.write_text_atomically(tmp_path / "state.json", "{}")
    assert events == ["fsync file", "rename state.json", "fsync dir"]


def test_an_intact_checkpoint_of_another_model_is_a_model_error(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cifar_ops.errors import ModelError
    from cifar_ops.models import build_model

    run_id = uuid.uuid4().hex
    with open_store(sqlite_url) as store, pytest.raises(KeyboardInterrupt):
        execute(tiny_run_config(), sink=store, run_id=run_id, callbacks=[StopAfter(1)])
    wider = tiny_run_config(model={"name": "simple_cnn", "filters": [12, 16], "dense_units": 16})
    monkeypatch.setattr(
        "cifar_ops.runner.build_model", lambda _model, **shape: build_model(wider.model, **shape)
    )
    with open_store(sqlite_url) as store, pytest.raises(ModelError, match="does not fit"):
        execute(tiny_run_config(), sink=store, run_id=run_id)
