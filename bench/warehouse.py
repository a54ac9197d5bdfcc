"""Warehouse benchmark: bulk evaluation logging vs row-at-a-time ORM, and view latency at scale.

1. Logging one evaluation of 10,000 predictions (plus its class metrics, confusion matrix and
   calibration bins) through `Store.log_evaluation` (COPY on PostgreSQL) against the same rows
   inserted one ORM object and one flush at a time, in the same run; printed as a ratio.
2. The reporting views' query time for one run / one experiment (what a dashboard asks) at 100
   and at 1,000 logged runs of 10,000 predictions each (1 and 10 million rows), generated in SQL
   with generate_series; it should stay flat as the warehouse grows.

    python bench/warehouse.py [--admin-url postgresql+psycopg2://...] [--repeats 5]

Needs a PostgreSQL superuser URL (default: the test server of scripts/start_postgres.sh); it
creates and drops its own databases.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, registry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # reuse the test harness

from cifar_ops.records import EvaluationRecord
from cifar_ops.warehouse import open_store, synthetic
from cifar_ops.warehouse.migrate import upgrade_database
from cifar_ops.warehouse.schema import (
    calibration_bins,
    class_metrics,
    confusion_matrix,
    evaluations,
    predictions_log,
)
from cifar_ops.warehouse.views import qualified_name
from tests.pg_server import fresh_database  # scratch databases, as the tests make them

DEFAULT_ADMIN = "postgresql+psycopg2://cifar_ops_test:cifar_ops_test@127.0.0.1:5432/postgres"
PREDICTIONS = 10_000


class EvaluationRow:
    pass


class ClassMetricRow:
    pass


class ConfusionRow:
    pass


class CalibrationRow:
    pass


class PredictionRow:
    pass


_orm = registry()
for _cls, _table in (
    (EvaluationRow, evaluations),
    (ClassMetricRow, class_metrics),
    (ConfusionRow, confusion_matrix),
    (CalibrationRow, calibration_bins),
    (PredictionRow, predictions_log),
):
    _orm.map_imperatively(_cls, _table)


def _obj(cls: type, **values: Any) -> Any:
    obj = cls()
    for key, value in values.items():
        setattr(obj, key, value)
    return obj


def orm_row_at_a_time(url: str, run_id: str, ev: EvaluationRecord) -> None:
    """The baseline: every row its own ORM object and its own INSERT round trip."""
    engine = create_engine(url)
    p = ev.predictions
    assert p is not None
    with Session(engine) as session, session.begin():
        rows: list[Any] = [
            _obj(
                EvaluationRow, run_id=run_id, split=ev.split, loss=ev.loss, accuracy=ev.accuracy,
                expected_calibration_error=ev.expected_calibration_error,
                class_names=ev.class_names, prediction_count=len(p),
            )
        ]  # fmt: skip
        rows += [
            _obj(ClassMetricRow, run_id=run_id, split=ev.split, **vars(m)) for m in ev.class_metrics
        ]
        rows += [
            _obj(ConfusionRow, run_id=run_id, split=ev.split, true_class=t, predicted_class=q,
                 count=int(ev.confusion[t, q]))
            for t in range(len(ev.class_names)) for q in range(len(ev.class_names))
        ]  # fmt: skip
        rows += [
            _obj(CalibrationRow, run_id=run_id, split=ev.split, **vars(b)) for b in ev.calibration
        ]
        rows += [
            _obj(PredictionRow, run_id=run_id, split=ev.split, image_index=int(i),
                 true_class=int(t), predicted_class=int(q), confidence=float(c),
                 correct=bool(t == q), image_ref=None)
            for i, t, q, c in zip(p.image_index, p.true_class, p.predicted_class, p.confidence,
                                  strict=True)
        ]  # fmt: skip
        for row in rows:
            session.add(row)
            session.flush()
    engine.dispose()


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_logging(url: str, repeats: int) -> tuple[list[float], list[float]]:
    upgrade_database(url)
    ev = synthetic.evaluation(PREDICTIONS)
    store_times, orm_times = [], []
    with open_store(url) as store:
        for i in range(repeats):
            fast, slow = synthetic.run_start("bench"), synthetic.run_start("bench")
            store.start_run(fast)
            store.start_run(slow)
            if i % 2:  # alternate the order, so neither always runs on a warmer cache
                orm_times.append(_timed(lambda s=slow: orm_row_at_a_time(url, s.run_id, ev)))
                store_times.append(_timed(lambda f=fast: store.log_evaluation(f.run_id, ev)))
            else:
                store_times.append(_timed(lambda f=fast: store.log_evaluation(f.run_id, ev)))
                orm_times.append(_timed(lambda s=slow: orm_row_at_a_time(url, s.run_id, ev)))
    return store_times, orm_times


GENERATE_RUNS = """
SET session_replication_role = replica;  -- skip FK triggers while generating synthetic rows
INSERT INTO experiments (name, search_method, trial_count)
  SELECT 'exp-' || e, 'grid', 100 FROM generate_series(0, 99) e ON CONFLICT DO NOTHING;
INSERT INTO model_info (run_id, experiment, trial_index, model_name, param_count, config,
    config_hash, executor, status, started_at, finished_at, best_epoch, train_accuracy,
    val_accuracy, test_accuracy, test_loss, overfitting_gap)
  SELECT lpad(to_hex(r), 32, '0'), 'exp-' || (r % 100), r / 100,
         (ARRAY['vgg10','resnet20','custom_cnn','fast'])[1 + r % 4], 270000, '{}'::jsonb,
         md5(r::text) || md5(r::text), 'kubernetes', 'succeeded',
         now() - interval '1 hour', now(), 20, 0.9, 0.8 + (r % 97) / 1000.0,
         0.75 + (r % 89) / 1000.0, 0.7, 0.1
  FROM generate_series(:lo, :hi - 1) r;
INSERT INTO epoch_stats (run_id, epoch, phase, loss, accuracy, val_loss, val_accuracy,
    learning_rate, seconds, images_per_second)
  SELECT lpad(to_hex(r), 32, '0'), e, 'train', 2.0 / e, 0.5 + e / 50.0, 2.2 / e,
         0.45 + e / 50.0, 0.01, 30, 1600
  FROM generate_series(:lo, :hi - 1) r, generate_series(1, 20) e;
INSERT INTO evaluations (run_id, split, loss, accuracy, expected_calibration_error,
    class_names, prediction_count)
  SELECT lpad(to_hex(r), 32, '0'), 'test', 0.7, 0.75, 0.05,
         '["c0","c1","c2","c3","c4","c5","c6","c7","c8","c9"]'::jsonb, 10000
  FROM generate_series(:lo, :hi - 1) r;
INSERT INTO class_metrics
  SELECT lpad(to_hex(r), 32, '0'), 'test', c, 'c' || c, 0.75, 0.75, 0.75, 1000, 0.95
  FROM generate_series(:lo, :hi - 1) r, generate_series(0, 9) c;
INSERT INTO confusion_matrix
  SELECT lpad(to_hex(r), 32, '0'), 'test', t, q, CASE WHEN t = q THEN 750 ELSE 28 END
  FROM generate_series(:lo, :hi - 1) r, generate_series(0, 9) t, generate_series(0, 9) q;
INSERT INTO calibration_bins
  SELECT lpad(to_hex(r), 32, '0'), 'test', b, b / 15.0, (b + 1) / 15.0, 600,
         (b + 0.5) / 15.0, (b + 0.4) / 15.0
  FROM generate_series(:lo, :hi - 1) r, generate_series(0, 14) b;
INSERT INTO predictions_log
  SELECT lpad(to_hex(r), 32, '0'), 'test', i, i % 10,
         CASE WHEN i % 4 = 0 THEN (i + 3) % 10 ELSE i % 10 END,
         0.5 + (i % 50) / 100.0, i % 4 <> 0, NULL
  FROM generate_series(:lo, :hi - 1) r, generate_series(0, 9999) i;
SET session_replication_role = origin;
"""

DASHBOARD_QUERIES = {
    "run_summary (one run)": ("run_summary", "run_id = :run"),
    "epoch_curves (one run)": ("epoch_curves", "run_id = :run"),
    "class_metrics (one run)": ("class_metrics", "run_id = :run"),
    "confusion (one run)": ("confusion", "run_id = :run"),
    "calibration (one run)": ("calibration", "run_id = :run"),
    "misclassifications (one run)": ("misclassifications", "run_id = :run"),
    "search_leaderboard (one experiment)": ("search_leaderboard", "experiment = :experiment"),
    "model_comparison (all runs)": ("model_comparison", ""),
}


def generate_runs(url: str, lo: int, hi: int) -> float:
    engine = create_engine(url)
    start = time.perf_counter()
    with engine.begin() as conn:
        for statement in filter(str.strip, GENERATE_RUNS.split(";\n")):
            conn.execute(text(statement), {"lo": lo, "hi": hi})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return time.perf_counter() - start


def time_views(url: str, runs: int, repeats: int = 15) -> dict[str, float]:
    """Median milliseconds per dashboard query, each for a different run."""
    engine = create_engine(url)
    out = {}
    with engine.connect() as conn:
        for label, (view, where) in DASHBOARD_QUERIES.items():
            sql = f"SELECT * FROM {qualified_name(view, 'postgresql')}"
            sql += f" WHERE {where}" if where else ""
            times = []
            for i in range(repeats):
                r = (i * 7919) % runs
                params = {"run": f"{r:032x}", "experiment": f"exp-{r % 100}"}
                start = time.perf_counter()
                conn.execute(text(sql), params).all()
                times.append((time.perf_counter() - start) * 1000)
            out[label] = statistics.median(times[2:])  # the first two warm the cache
    engine.dispose()
    return out


def _spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values) * 1000:.0f} ms +/- {sd * 1000:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-scale", action="store_true", help="only the logging benchmark")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, python "
          f"{platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}")  # fmt: skip

    with fresh_database(args.admin_url) as url:
        store_t, orm_t = bench_logging(url, args.repeats)
        engine = create_engine(url)
        with engine.connect() as conn:
            version = conn.execute(text("show server_version")).scalar_one()
        engine.dispose()
        print(f"PostgreSQL {version}: one evaluation of {PREDICTIONS} predictions, "
              f"{args.repeats} runs each")  # fmt: skip
        print(f"  store (COPY + upsert)      {_spread(store_t)}")
        print(f"  ORM row at a time          {_spread(orm_t)}")
        print(f"  ratio: {statistics.mean(orm_t) / statistics.mean(store_t):.1f}x faster")

    if args.skip_scale:
        return
    with fresh_database(args.admin_url) as url:
        upgrade_database(url)
        results = {}
        done = 0
        for runs in (100, 1000):
            seconds = generate_runs(url, done, runs)
            done = runs
            print(f"generated runs {runs}: total {runs * PREDICTIONS:,} prediction rows "
                  f"({seconds:.0f} s)")  # fmt: skip
            results[runs] = time_views(url, runs)
        print(f"{'dashboard query (median ms)':40s} {'100 runs':>10s} {'1000 runs':>10s} ratio")
        for label in DASHBOARD_QUERIES:
            small, large = results[100][label], results[1000][label]
            print(f"{label:40s} {small:10.2f} {large:10.2f} {large / small:5.2f}")


if __name__ == "__main__":
    main()
