"""What the warehouse fault tests share: a tiny config, the CLI in a process or in this one, the
rows it left."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select

from cifar_ops.warehouse import open_store
from cifar_ops.warehouse.schema import epoch_stats, evaluations, predictions_log
from tests.conftest import REPO
from tests.engine_helpers import TINY

EPOCHS = 3
TEST_IMAGES = 96  # synthetic_images 480 splits 320 / 64 / 96


def tiny_config(path: Path, **changes: Any) -> Path:
    """A 3-epoch synthetic run of seconds, as a YAML file; `changes` replace top-level keys."""
    raw = copy.deepcopy(TINY)
    raw.update(experiment="faults", **changes)
    path.write_text(yaml.safe_dump(raw))
    return path


def environment(url: str) -> dict[str, str]:
    """The test's environment (artifacts, data cache) plus the warehouse and the repo on path."""
    return {**os.environ, "CIFAR_OPS_DATABASE_URL": url, "PYTHONPATH": str(REPO)}


def cifar_ops(url: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`cifar-ops ARGS` in its own process, as a user (or a pod) runs it."""
    return python("-m", "cifar_ops", *args, url=url, timeout=timeout)


def cifar_ops_here(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`cifar-ops ARGS` in this test process, for a step after the faulted process is gone (a
    resume, a refusal): it inherits nothing from that process, and TensorFlow, already imported
    here, spares the 12 s a new process spends importing it."""
    from typer.testing import CliRunner

    from cifar_ops.cli import app

    result = CliRunner().invoke(app, list(args), env={"CIFAR_OPS_DATABASE_URL": url})
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, stderr)


def python(*args: str, url: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env=environment(url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def warehouse_rows(url: str, run_id: str) -> dict[str, Any]:
    """The run's row and how many of each child row it has, read fresh."""
    with open_store(url) as store:
        detail = store.get_run(run_id)
        with store.engine.connect() as conn:
            epoch_counts = conn.execute(
                select(epoch_stats.c.epoch, func.count())
                .where(epoch_stats.c.run_id == run_id)
                .group_by(epoch_stats.c.epoch)
                .order_by(epoch_stats.c.epoch)
            ).all()
            splits = conn.execute(
                select(evaluations.c.split, evaluations.c.prediction_count).where(
                    evaluations.c.run_id == run_id
                )
            ).all()
            predictions = conn.execute(
                select(func.count()).where(predictions_log.c.run_id == run_id)
            ).scalar_one()
    return {
        "summary": detail.summary,
        "epochs": {int(epoch): int(count) for epoch, count in epoch_counts},
        "evaluations": {split: int(count) for split, count in splits},
        "predictions": int(predictions),
    }


def assert_complete(url: str, run_id: str) -> None:
    """Succeeded, with every epoch exactly once and one whole test evaluation."""
    rows = warehouse_rows(url, run_id)
    assert rows["summary"].status == "succeeded", rows["summary"]
    assert rows["epochs"] == {epoch: 1 for epoch in range(1, EPOCHS + 1)}
    assert rows["evaluations"] == {"test": TEST_IMAGES}
    assert rows["predictions"] == TEST_IMAGES
