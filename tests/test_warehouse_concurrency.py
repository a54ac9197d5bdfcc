"""Eight processes logging at once, some re-sending the same runs: nothing lost, nothing doubled.

Each process starts only its own runs (a second live process on one run id is refused: see
tests/faults/test_run_ownership.py); the shared runs' epochs, evaluation and finish are re-sent by
every process, as racing retries and re-syncs would.
"""

from __future__ import annotations

import multiprocessing

from sqlalchemy import func, select

from cifar_ops.warehouse import open_store, synthetic
from cifar_ops.warehouse.migrate import upgrade_database
from cifar_ops.warehouse.schema import epoch_stats, model_info, predictions_log

WORKERS = 8
RUNS_EACH = 2
SHARED = [f"{i:032x}" for i in range(1, 3)]  # runs every worker re-sends, as racing retries would
PREDICTIONS = 100


def _log_runs(url: str, worker: int) -> None:
    store = open_store(url)
    try:
        own = [synthetic.run_start(f"w{worker}").run_id for _ in range(RUNS_EACH)]
        for run_id in own + SHARED:
            if run_id in own:
                store.start_run(synthetic.run_start("concurrency", run_id=run_id))
            for number in (1, 2):
                store.log_epoch(run_id, synthetic.epoch(number))
            store.log_evaluation(run_id, synthetic.evaluation(PREDICTIONS, seed=worker))
            store.finish_run(run_id, synthetic.finish())
    finally:
        store.close()


def test_eight_processes_lose_and_duplicate_nothing(database_url: str) -> None:
    upgrade_database(database_url)
    with open_store(database_url) as store:
        for run_id in SHARED:
            store.register_queued([synthetic.run_start("concurrency", run_id=run_id)])
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_log_runs, args=(database_url, w)) for w in range(WORKERS)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=240)
    assert [p.exitcode for p in workers] == [0] * WORKERS
    runs = WORKERS * RUNS_EACH + len(SHARED)
    with open_store(database_url) as store:
        with store.engine.connect() as conn:
            count = {
                table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in (model_info, epoch_stats, predictions_log)
            }
        assert count == {
            "model_info": runs,
            "epoch_stats": 2 * runs,
            "predictions_log": PREDICTIONS * runs,
        }
        assert {r.status for r in store.list_runs(limit=None)} == {"succeeded"}
        for run_id in SHARED:  # one whole evaluation won, never a mix of two
            [evaluation] = store.get_run(run_id).evaluations
            assert sum(map(sum, evaluation.confusion)) == PREDICTIONS
