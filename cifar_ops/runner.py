"""One run end to end, and searches: data -> model -> fit -> evaluate -> warehouse -> model.keras.

Everything that can be wrong with the input (config, data, model, a resumed run's config) is
checked before `start_run`, so a bad data dir never leaves a `running` row. Once started, a run
always ends with `finish_run`: `succeeded`, `failed` (with the reason; the exception is re-raised)
or `preempted` (Ctrl-C or SIGTERM, e.g. a pod being evicted; re-run the same id to resume).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import platform
import subprocess
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from cifar_ops.config import RunConfig, SearchConfig, Trial
from cifar_ops.records import EvaluationRecord, RunFinish, RunSink, RunStart


class RunPreempted(KeyboardInterrupt):
    """SIGTERM arrived during a run (the pod is being stopped); the run was marked preempted."""


@dataclass(frozen=True)
class RunOutcome:
    """What `execute` hands back: the run id, its terminal status, headline numbers, the model."""

    run_id: str
    status: str
    finish: RunFinish
    model_path: Path | None
    trial_index: int | None = None
    evaluation: EvaluationRecord | None = None
    diverged: bool = False  # failed because the loss became NaN/inf: a retry would not help


def execute(
    config: RunConfig,
    *,
    sink: RunSink,
    run_id: str | None = None,
    trial: Trial | None = None,
    executor: str = "local",
    job_name: str | None = None,
    callbacks: Sequence[Any] = (),
) -> RunOutcome:
    """Train and evaluate one config; the same `run_id` resumes from its last checkpoint."""
    from cifar_ops import training
    from cifar_ops.callbacks import StopOnSignal
    from cifar_ops.checkpoints import RunDirectory
    from cifar_ops.data import load_dataset
    from cifar_ops.models import build_model

    run_id = run_id or uuid.uuid4().hex
    training.seed_everything(config.seed, xla=config.train.xla)
    dataset = load_dataset(config.data, config.seed)
    run_dir = RunDirectory(run_id)
    with training.precision_policy(config.train.mixed_precision):
        model = build_model(
            config.model, input_shape=dataset.image_shape, num_classes=dataset.num_classes
        )
        training.phases(config, model)  # a fine-tune phase on a model with no base: ConfigError
        run_dir.create(config, dataset.class_names)
        start = RunStart(
            run_id=run_id,
            experiment=config.experiment,
            model_name=config.model.name,
            config=config.model_dump(mode="json"),
            config_hash=config.config_hash(),
            trial_index=trial.index if trial else None,
            trial_params=trial.params if trial else None,
            git_sha=git_sha(),
            dataset_fingerprint=dataset.fingerprint,
            executor="kubernetes" if executor == "kubernetes" else "local",
            job_name=job_name,
            hardware=hardware(),
            param_count=int(model.count_params()),
            started_at=datetime.now(UTC),
        )
        monitor = _metrics_callback(config, start, len(dataset.train))
        stop_on_signal = StopOnSignal()  # Ctrl-C / SIGTERM, raised between steps
        all_callbacks = [*callbacks, *([monitor] if monitor else []), stop_on_signal]
        status = "failed"
        try:
            sink.start_run(start)
        except BaseException:
            if monitor is not None:
                _finish_monitor(monitor, "failed")  # frees its port; nothing was started
            raise
        try:
            with stop_on_signal.catching():
                outcome = _train_and_evaluate(
                    model, config, dataset, sink, start, run_dir, all_callbacks, trial
                )
            status = outcome.status
            return outcome
        except KeyboardInterrupt as exc:
            status = "preempted"
            reason = "SIGTERM" if isinstance(exc, RunPreempted) else "interrupted"
            _finish_quietly(sink, run_id, RunFinish(status="preempted", reason=reason))
            raise
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {exc}"[:2000]
            _finish_quietly(sink, run_id, RunFinish(status="failed", reason=reason))
            raise
        finally:
            if monitor is not None:
                _finish_monitor(monitor, status)


def _train_and_evaluate(
    model: Any,
    config: RunConfig,
    dataset: Any,
    sink: RunSink,
    start: RunStart,
    run_dir: Any,
    callbacks: list[Any],
    trial: Trial | None,
) -> RunOutcome:
    from cifar_ops import evaluation, training

    result = training.fit(
        model,
        config,
        dataset,
        sink=sink,
        run_id=start.run_id,
        run_dir=run_dir,
        callbacks=callbacks,
    )
    index = trial.index if trial else None
    if result.diverged:
        last = result.history[-1]
        finish = RunFinish(
            status="failed",
            reason=f"loss became {last.loss} at epoch {last.epoch}; lower the learning rate",
            best_epoch=result.best_epoch,
            param_count=start.param_count,
            finished_at=datetime.now(UTC),
        )
        sink.finish_run(start.run_id, finish)
        return RunOutcome(start.run_id, "failed", finish, None, index, diverged=True)
    tta = config.evaluation.tta
    scores = {
        name: evaluation.split_score(
            split.labels, evaluation.predict_split(model, split.images, tta=tta)
        )
        for name, split in (("train", dataset.train), ("validation", dataset.validation))
    }
    test_probabilities = evaluation.predict_split(model, dataset.test.images, tta=tta)
    record = evaluation.score_probabilities(
        dataset.test.labels,
        test_probabilities,
        dataset.class_names,
        split="test",
        bins=config.evaluation.calibration_bins,
        refs=dataset.test.refs,
        log_predictions=config.evaluation.log_predictions,
    )
    model.save(run_dir.model_path)
    sink.log_evaluation(start.run_id, record)
    finish = RunFinish(
        status="succeeded",
        best_epoch=result.best_epoch,
        train_loss=scores["train"].loss,
        train_accuracy=scores["train"].accuracy,
        val_loss=scores["validation"].loss,
        val_accuracy=scores["validation"].accuracy,
        test_loss=record.loss,
        test_accuracy=record.accuracy,
        overfitting_gap=scores["train"].accuracy - record.accuracy,
        artifact_uri=str(run_dir.model_path.resolve()),
        param_count=start.param_count,
        finished_at=datetime.now(UTC),
    )
    sink.finish_run(start.run_id, finish)
    return RunOutcome(start.run_id, "succeeded", finish, run_dir.model_path, index, record)


def _finish_quietly(sink: RunSink, run_id: str, finish: RunFinish) -> None:
    """Mark the run ended without hiding the error that ended it if the sink fails too."""
    with contextlib.suppress(Exception):
        sink.finish_run(run_id, _stamped(finish))


def _stamped(finish: RunFinish) -> RunFinish:
    from dataclasses import replace

    return replace(finish, finished_at=datetime.now(UTC))


def _metrics_callback(config: RunConfig, start: RunStart, train_images: int) -> Any:
    if config.monitoring.port is None and not config.monitoring.pushgateway:
        return None
    from cifar_ops.monitoring import MetricsCallback

    return MetricsCallback.from_config(config.monitoring, start, train_images=train_images)


def _finish_monitor(monitor: Any, status: str) -> None:
    """Export the final status and wait for the last scrape. The run's end is already in the
    warehouse, so a SIGTERM or Ctrl-C in that wait (up to a minute) must not turn a succeeded run
    into a preempted one: signals are only recorded, and a second Ctrl-C ends the wait."""
    from cifar_ops.callbacks import StopOnSignal

    with contextlib.suppress(KeyboardInterrupt), StopOnSignal().catching():
        monitor.finish(status)


def git_sha() -> str | None:
    """The commit of the checkout the package runs from, if it is one."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("CIFAR_OPS_GIT_SHA")
    return out.stdout.strip() or None


def hardware() -> str:
    """The GPU's name(s) if TensorFlow sees one, else the CPU count and architecture."""
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(str(details.get("device_name", gpu.name)))
    if names:
        return ", ".join(names)
    return f"CPU x{os.cpu_count()} ({platform.machine()})"


# --- searches -----------------------------------------------------------------------------------


def run_locally(
    loaded: RunConfig | SearchConfig,
    *,
    run_id: str | None = None,
    parallel: int = 1,
    callbacks: Sequence[Any] = (),
    database_url: str | None = None,
) -> list[RunOutcome]:
    """What `cifar-ops run` does: one run, or a search's trials, here, logged to the warehouse.

    The warehouse is `database_url`, else `CIFAR_OPS_DATABASE_URL`, else the SQLite default.
    """
    from cifar_ops import settings
    from cifar_ops.warehouse.store import open_store

    url = database_url or settings.database_url()
    with open_store(url) as store:
        if isinstance(loaded, SearchConfig):
            return execute_search(
                loaded,
                sink=store,
                parallel=parallel,
                sink_factory=partial(open_store, url),
                callbacks=callbacks,
            )
        return [execute(loaded, sink=store, run_id=run_id, callbacks=callbacks)]


def execute_search(
    search: SearchConfig,
    *,
    sink: RunSink,
    parallel: int = 1,
    sink_factory: Callable[[], RunSink] | None = None,
    callbacks: Sequence[Any] = (),
) -> list[RunOutcome]:
    """Run a search's trials; skip those whose config hash already succeeded in the experiment.

    With `parallel` > 1 trials run in that many spawned processes, each opening its own sink
    with `sink_factory` (default: `open_store(sink.url)` when the sink has a `url`). A trial that
    fails on its own (e.g. diverges or crashes) is recorded as failed and the search goes on; a
    `CifarOpsError` (bad data, config, warehouse) or Ctrl-C stops the whole search.
    """
    from cifar_ops.errors import CifarOpsError

    if hasattr(sink, "register_search"):  # as `submit` does, so the leaderboard knows the space
        sink.register_search(
            search.experiment,
            method=search.search.method,
            parameters=search.search.model_dump(mode="json")["parameters"],
            trial_count=len(search.trials),
            description=search.run.description or None,
        )
    done: set[str] = set()
    if hasattr(sink, "succeeded_hashes"):
        done = set(sink.succeeded_hashes(search.experiment))
    todo = [t for t in search.trials if t.config.config_hash() not in done]
    if parallel <= 1 or len(todo) <= 1:
        outcomes = []
        for trial in todo:
            run_id = uuid.uuid4().hex
            try:
                outcomes.append(
                    execute(
                        trial.config, sink=sink, run_id=run_id, trial=trial, callbacks=callbacks
                    )
                )
            except CifarOpsError:
                raise
            except Exception as exc:
                outcomes.append(_failed_outcome(run_id, trial, exc))
        return outcomes
    factory = sink_factory or _default_sink_factory(sink)
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // parallel)
    with ProcessPoolExecutor(max_workers=parallel, mp_context=context) as pool:
        futures = [pool.submit(_run_trial, trial, factory, threads) for trial in todo]
        try:
            for future in as_completed(futures):
                future.result()  # the first CifarOpsError (or Ctrl-C) stops the search here
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # trials not started never start
            raise
        return [future.result() for future in futures]


def _run_trial(trial: Trial, factory: Callable[[], RunSink], threads: int) -> RunOutcome:
    """A search trial in a worker process, with its share of the CPU threads."""
    import tensorflow as tf

    from cifar_ops.errors import CifarOpsError

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    run_id = uuid.uuid4().hex
    sink = factory()
    try:
        return execute(trial.config, sink=sink, run_id=run_id, trial=trial)
    except CifarOpsError:
        raise
    except Exception as exc:
        return _failed_outcome(run_id, trial, exc)
    finally:
        close = getattr(sink, "close", None)  # workers are reused: free the connections
        if close is not None:
            close()


def _failed_outcome(run_id: str, trial: Trial, exc: BaseException) -> RunOutcome:
    finish = RunFinish(status="failed", reason=f"{type(exc).__name__}: {exc}")
    return RunOutcome(run_id, "failed", finish, None, trial.index)


def _default_sink_factory(sink: RunSink) -> Callable[[], RunSink]:
    """Reopen the same warehouse in a worker: from the sink's engine (password kept) or url."""
    engine = getattr(sink, "engine", None)
    url = engine.url.render_as_string(hide_password=False) if engine is not None else None
    url = url or getattr(sink, "url", None)
    if url is None:
        raise TypeError("parallel trials need a sink_factory, or a sink with a `url` to reopen")
    from cifar_ops.warehouse.store import open_store

    return partial(open_store, str(url))
