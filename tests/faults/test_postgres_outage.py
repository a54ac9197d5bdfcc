"""PostgreSQL stops under a running `cifar-ops run`: a clear exit 4, then a resume lands it once.

The server is a throwaway cluster this test owns; the run stops it from inside its own training
loop (mid-epoch, or once training is done and the evaluation is being computed), so the moment is
exact. After the server is back, re-running the same run id completes the run with every epoch
and the evaluation in the warehouse exactly once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cifar_ops.errors import WarehouseError
from cifar_ops.warehouse.migrate import upgrade_database
from tests.faults.postgres_cluster import Cluster, throwaway_cluster
from tests.faults.warehouse_runs import (
    EPOCHS,
    assert_complete,
    cifar_ops_here,
    python,
    tiny_config,
    warehouse_rows,
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as owned:
        upgrade_database(owned.url)
        yield owned


@pytest.mark.parametrize(
    ("when", "epochs_before_the_outage"),
    [("epoch:2:batch:3", {1: 1}), ("train_end", {epoch: 1 for epoch in range(1, EPOCHS + 1)})],
    ids=["mid-epoch", "mid-evaluation"],
)
def test_postgres_stopped_mid_run_then_the_resume_lands_every_row_once(
    cluster: Cluster, tmp_path: Path, when: str, epochs_before_the_outage: dict[int, int]
) -> None:
    run_id = uuid.uuid4().hex
    config = tiny_config(tmp_path / "tiny.yaml")
    stop = json.dumps(cluster.stop_command)
    args = ("run", "-c", str(config), "--run-id", run_id)

    try:
        cut = python("-m", "tests.faults.stopping_run", when, stop, "--", *args, url=cluster.url)
    finally:
        if not cluster.running():
            cluster.start()

    assert "fault: PostgreSQL stopped" in cut.stderr, cut.stderr
    assert cut.returncode == WarehouseError.exit_code, cut.stderr
    error = [line for line in cut.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "warehouse" in error[0], cut.stderr
    assert "Traceback" not in cut.stderr
    cut_short = warehouse_rows(cluster.url, run_id)
    assert cut_short["summary"].status == "running"  # the outage kept it from being finished
    assert cut_short["epochs"] == epochs_before_the_outage
    assert cut_short["evaluations"] == {}

    resumed = cifar_ops_here(cluster.url, *args)

    assert resumed.returncode == 0, resumed.stderr
    assert_complete(cluster.url, run_id)
