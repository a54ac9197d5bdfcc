"""Who may write a run id: the warehouse decides, not the local run dir.

A run id the warehouse holds with another config hash is refused (exit 2) even where no local run
dir exists; a run id another live process is running is refused (exit 4) before anything is
written; once that process is gone (killed, preempted) the run resumes and completes.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

from cifar_ops.errors import ConfigError, WarehouseError
from cifar_ops.warehouse import open_store, synthetic
from cifar_ops.warehouse.migrate import upgrade_database
from tests.faults.warehouse_runs import (
    assert_complete,
    cifar_ops_here,
    environment,
    tiny_config,
    warehouse_rows,
)


def test_a_reused_run_id_with_another_config_is_refused_without_a_local_run_dir(
    database_url: str, tmp_path: Path
) -> None:
    upgrade_database(database_url)
    run_id = uuid.uuid4().hex
    with open_store(database_url) as store:  # the run as another machine logged it
        store.start_run(synthetic.run_start("elsewhere", run_id=run_id, config_hash="a" * 64))
        store.log_epochs(run_id, [synthetic.epoch(1), synthetic.epoch(2)])
        store.finish_run(run_id, synthetic.finish())
    before = warehouse_rows(database_url, run_id)
    config = tiny_config(tmp_path / "other.yaml")
    assert not (tmp_path / "runs" / run_id).exists()

    result = cifar_ops_here(database_url, "run", "-c", str(config), "--run-id", run_id)

    assert result.returncode == ConfigError.exit_code, result.stderr
    message = result.stderr
    assert f"run {run_id} already exists in the warehouse" in message, message
    assert "a" * 64 in message and "'elsewhere'" in message and "'faults'" in message
    assert "Traceback" not in message
    assert warehouse_rows(database_url, run_id) == before  # the other run is untouched


def test_two_writers_on_one_run_id_the_second_is_refused_then_resumes_once_the_first_dies(
    database_url: str, tmp_path: Path
) -> None:
    upgrade_database(database_url)
    run_id = uuid.uuid4().hex
    config = tiny_config(tmp_path / "tiny.yaml")
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.holding_run", database_url, str(config), run_id],
        env=environment(database_url),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        held = warehouse_rows(database_url, run_id)

        second = cifar_ops_here(database_url, "run", "-c", str(config), "--run-id", run_id)

        assert second.returncode == WarehouseError.exit_code, second.stderr
        assert f"run {run_id} is already running in another process" in second.stderr
        assert "Traceback" not in second.stderr
        assert warehouse_rows(database_url, run_id) == held  # the second wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding the lock, as a killed pod does
        holder.wait(timeout=30)

    resumed = cifar_ops_here(database_url, "run", "-c", str(config), "--run-id", run_id)

    assert resumed.returncode == 0, resumed.stderr
    assert_complete(database_url, run_id)
