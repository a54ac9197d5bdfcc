"""One run end to end: data -> model -> plan -> fit -> evaluate -> warehouse.

Everything that can be wrong with the input (config, data, model, the training plan, a resumed
run's config and global batch) is checked before `start_run`, so a bad data dir never leaves a
`running` row, and nothing is written before it: a start the warehouse refuses leaves no run dir
and pushes no metrics. A run trains on the replicas `distribution.strategy_for` gives it (one, with
no strategy, unless `resources.gpus` GPUs or `CIFAR_OPS_REPLICAS` say more). Once started, a run
always ends with `finish_run`: `succeeded`, `pruned` (a search's pruner stopped it; see
`search.pruning`), `failed` (with the reason; the exception is re-raised) or `preempted` (Ctrl-C or
SIGTERM, e.g. a pod being evicted; re-run the same id to resume).
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import keras

from cifar_ops import backend, distribution, evaluation, training
from cifar_ops.callbacks import StopOnSignal
from cifar_ops.checkpoints import BatchLayout, RunDirectory
from cifar_ops.config import EvaluationConfig, RunConfig, Trial
from cifar_ops.data import Dataset, load_dataset
from cifar_ops.errors import Preempted
from cifar_ops.models import build_model
from cifar_ops.monitoring.callback import MetricsCallback
from cifar_ops.plan import TrainingPlan, build_plan
from cifar_ops.precision import precision_policy
from cifar_ops.records import EvaluationRecord, RunFinish, RunSink, RunStart
from cifar_ops.vocabulary import ExecutorKind, RunStatus


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
    callbacks: Sequence[keras.callbacks.Callback] = (),
    trial_number: int | None = None,
) -> RunOutcome:
    """Train and evaluate one config; the same `run_id` resumes from its last checkpoint.

    `trial_number` is the Optuna trial of a search run through a study (recorded with the run).
    """
    run_id = run_id or uuid.uuid4().hex
    kind = ExecutorKind(executor)  # recorded as itself; a name no executor has is a ValueError
    strategy = distribution.strategy_for(config.resources.gpus)  # before TensorFlow starts
    training.seed_everything(config.seed, xla=config.train.xla)
    dataset = load_dataset(config.data, config.seed)
    run_dir = RunDirectory(run_id)
    precision = precision_policy(config.train.mixed_precision)
    with precision as policy, distribution.scope(strategy):
        model = build_model(
            config.model, input_shape=dataset.image_shape, num_classes=dataset.num_classes
        )
        # the config as the engine will follow it; what the model cannot follow is a ConfigError
        plan = build_plan(
            config,
            model,
            train_images=len(dataset.train.labels),
            replicas=distribution.replicas_of(strategy),
        )
        layout = BatchLayout(plan.batch_size, plan.replicas)
        # another config or global batch under this id is refused here; the run dir is written
        # only once the warehouse has taken the run (a refused process leaves nothing behind)
        config_hash = run_dir.check(config, layout=layout)
        start = RunStart(
            run_id=run_id,
            experiment=config.experiment,
            model_name=config.model.name,
            config=config.model_dump(mode="json"),
            config_hash=config_hash,
            trial_index=trial.index if trial else None,
            trial_params=trial.params if trial else None,
            trial_number=trial_number,
            git_sha=git_sha(),
            dataset_fingerprint=dataset.fingerprint,
            executor=kind,
            job_name=job_name,
            hardware=f"{hardware()}, {policy}",
            param_count=int(model.count_params()),
            started_at=datetime.now(UTC),
        )
        monitor = _metrics_callback(config, start)
        stop_on_signal = StopOnSignal()  # Ctrl-C / SIGTERM, raised between steps
        all_callbacks = [*callbacks, *([monitor] if monitor else []), stop_on_signal]
        status = "failed"
        try:
            sink.start_run(start)
        except BaseException:
            if monitor is not None:
                monitor.close()  # frees its port; the run id may be a live run's: no push
            raise
        try:
            if monitor is not None:
                monitor.start()
            with stop_on_signal.catching():
                run_dir.create(config, dataset.class_names, layout=layout)
                outcome = _train_and_evaluate(
                    model,
                    plan,
                    config.evaluation,
                    dataset,
                    sink,
                    start,
                    run_dir,
                    all_callbacks,
                    trial,
                )
            status = outcome.status
            return outcome
        except KeyboardInterrupt as exc:
            status = "preempted"
            reason = "SIGTERM" if isinstance(exc, Preempted) else "interrupted"
            _finish_quietly(sink, run_id, RunFinish(status=RunStatus.PREEMPTED, reason=reason))
            raise
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {exc}"[:2000]
            _finish_quietly(sink, run_id, RunFinish(status=RunStatus.FAILED, reason=reason))
            raise
        finally:
            if monitor is not None:
                _finish_monitor(monitor, status)


def _train_and_evaluate(
    model: keras.Model,
    plan: TrainingPlan,
    scoring: EvaluationConfig,
    dataset: Dataset,
    sink: RunSink,
    start: RunStart,
    run_dir: RunDirectory,
    callbacks: list[keras.callbacks.Callback],
    trial: Trial | None,
) -> RunOutcome:
    result = training.fit(
        model,
        plan,
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
            status=RunStatus.FAILED,
            reason=f"loss became {last.loss} at epoch {last.epoch}; lower the learning rate",
            best_epoch=result.best_epoch,
            param_count=start.param_count,
            finished_at=datetime.now(UTC),
        )
        sink.finish_run(start.run_id, finish)
        return RunOutcome(start.run_id, "failed", finish, None, index, diverged=True)
    if result.pruned_at is not None:  # a search stopped it: its last epoch's numbers, no test
        last = result.history[-1]
        finish = RunFinish(
            status=RunStatus.PRUNED,
            reason=f"pruned by the search after epoch {result.pruned_at}",
            best_epoch=result.best_epoch,
            train_loss=last.loss,
            train_accuracy=last.accuracy,
            val_loss=last.val_loss,
            val_accuracy=last.val_accuracy,
            pruned_epoch=result.pruned_at,
            param_count=start.param_count,
            finished_at=datetime.now(UTC),
        )
        sink.finish_run(start.run_id, finish)
        return RunOutcome(start.run_id, RunStatus.PRUNED, finish, None, index)
    tta, average = scoring.tta, scoring.tta_average
    sampled = evaluation.fixed_sample(len(dataset.train), scoring.train_sample)
    train_part = (dataset.train.images[sampled], dataset.train.labels[sampled])
    scores = {
        name: evaluation.split_score(
            labels, evaluation.predict_split(model, images, tta=tta, average=average)
        )
        for name, (images, labels) in (
            ("train", train_part),
            ("validation", (dataset.validation.images, dataset.validation.labels)),
        )
    }
    test_probabilities = evaluation.predict_split(
        model, dataset.test.images, tta=tta, average=average
    )
    record = evaluation.score_probabilities(
        dataset.test.labels,
        test_probabilities,
        dataset.class_names,
        split="test",
        bins=scoring.calibration_bins,
        refs=dataset.test.refs,
        log_predictions=scoring.log_predictions,
    )
    run_dir.save_model(model)
    sink.log_evaluation(start.run_id, record)
    finish = RunFinish(
        status=RunStatus.SUCCEEDED,
        reason=_train_sample_note(len(sampled), len(dataset.train)),
        best_epoch=result.best_epoch,
        train_loss=scores["train"].loss,
        train_accuracy=scores["train"].accuracy,
        val_loss=scores["validation"].loss,
        val_accuracy=scores["validation"].accuracy,
        test_loss=record.loss,
        test_accuracy=record.accuracy,
        overfitting_gap=scores["train"].accuracy - record.accuracy,
        artifact_uri=run_dir.model_uri,
        param_count=start.param_count,
        finished_at=datetime.now(UTC),
    )
    sink.finish_run(start.run_id, finish)
    return RunOutcome(start.run_id, "succeeded", finish, run_dir.model_path, index, record)


def _train_sample_note(scored: int, total: int) -> str | None:
    """The finish reason of a run whose train figures come from a sample of the split."""
    if scored >= total:
        return None
    return f"train loss/accuracy scored on a fixed sample of {scored} of {total} train images"


def _finish_quietly(sink: RunSink, run_id: str, finish: RunFinish) -> None:
    """Mark the run ended without hiding the error that ended it if the sink fails too."""
    with contextlib.suppress(Exception):
        sink.finish_run(run_id, replace(finish, finished_at=datetime.now(UTC)))


def _metrics_callback(config: RunConfig, start: RunStart) -> MetricsCallback | None:
    if config.monitoring.port is None and not config.monitoring.pushgateway:
        return None
    return MetricsCallback.from_config(config.monitoring, start, push_at_start=False)


def _finish_monitor(monitor: MetricsCallback, status: str) -> None:
    """Export the final status and wait for the last scrape. The run's end is already in the
    warehouse, so a SIGTERM or Ctrl-C in that wait (up to a minute) must not turn a succeeded run
    into a preempted one: signals are only recorded, and a second Ctrl-C ends the wait."""
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
    """The GPU's name(s) if the Keras backend sees one, else the CPU count and architecture."""
    names = []
    if backend.backend() == "jax":
        import jax

        names = [device.device_kind for device in jax.devices() if device.platform == "gpu"]
    else:
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(gpu)
            names.append(str(details.get("device_name", gpu.name)))
    if names:
        return ", ".join(names)
    return f"CPU x{os.cpu_count()} ({platform.machine()})"
