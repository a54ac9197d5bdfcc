"""Container entrypoint of a training pod: the code of `cifar-ops run`, configured by the chart
(with `--score`, of a scoring pod: the code of `cifar-ops score`, from the mounted score.json).

It reads which run to train from the mounted ConfigMap (`runs.json`: completion index -> run id,
`trial-<index>.json`: that run's resolved config), picks the index from `JOB_COMPLETION_INDEX`
(an Indexed Job, i.e. a search; 0 for a single run), takes the warehouse URL from
`CIFAR_OPS_DATABASE_URL` (set from a Secret), and calls `cifar_ops.runner.execute` under the run id
`cifar-ops submit` registered, so a retried pod resumes the same run from its last checkpoint.
A search run through an Optuna study (a sampler, or a pruner) has no run ids up front: the trial
document carries the search (`study`), and the pod asks the study for its trial
(`cifar_ops.search.worker.work`, once), so `parallelism` pods share one study.

Its exit code tells the Job's podFailurePolicy whether a retry can help:
  0 succeeded (or pruned by its search); 2 bad config, 3 bad data, 6 bad model and 65 diverged
  (EX_DATAERR: the loss became NaN or infinite; a retry would resume from the NaN weights of the
  last checkpoint) are permanent: the Job, or the search's index, fails at once; 75 infrastructure
  (warehouse or metrics endpoint unreachable, artifacts volume full or read-only: the last
  complete checkpoint is kept) and 143 preempted (SIGTERM) are retried, like 1 (the run crashed)
  and anything unexpected. A corrupt checkpoint is never a failure: the run resumes from the one
  before, or starts over.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from cifar_ops.config import RunConfig, SearchConfig, SearchSpec, Trial, format_validation_error
from cifar_ops.errors import (
    CifarOpsError,
    ConfigError,
    DataError,
    ModelError,
    MonitoringError,
    Preempted,
    StorageError,
    WarehouseError,
)
from cifar_ops.vocabulary import ExecutorKind, RunStatus

if TYPE_CHECKING:  # the runner imports TensorFlow: loaded only once a run starts
    from cifar_ops.runner import RunOutcome
    from cifar_ops.warehouse.store import Store

EXIT_SUCCEEDED = 0
EXIT_RUN_FAILED = 1
EXIT_CONFIG = ConfigError.exit_code  # 2
EXIT_DATA = DataError.exit_code  # 3
EXIT_MODEL = ModelError.exit_code  # 6
EXIT_DIVERGED = 65  # EX_DATAERR: the run's loss became NaN/inf; its checkpoint holds NaN weights
EXIT_RETRYABLE = 75  # EX_TEMPFAIL: the infrastructure failed, not the run
EXIT_PREEMPTED = 128 + signal.SIGTERM  # 143, what a SIGTERM-killed process reports
# the chart's job.podFailurePolicy.permanentExitCodes
PERMANENT_EXIT_CODES = (EXIT_CONFIG, EXIT_DATA, EXIT_MODEL, EXIT_DIVERGED)

DEFAULT_RUN_DIR = "/etc/cifar-ops/run"


@dataclass(frozen=True)
class PodRun:
    """What this pod trains, resolved from the ConfigMap and the environment."""

    run_id: str
    config: RunConfig
    completion_index: int
    trial_index: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    job_name: str | None = None
    search: SearchConfig | None = None  # a study worker: asks this search's study for a trial

    @property
    def worker(self) -> str:
        """Who asks the study: the Job and completion index, the same for a retried pod."""
        return f"{self.job_name or self.config.experiment}/{self.completion_index}"

    @property
    def trial(self) -> Trial | None:
        if self.trial_index is None:
            return None
        return Trial(index=self.trial_index, params=self.params, config=self.config)


def completion_index(env: Mapping[str, str]) -> int:
    """The Indexed Job's completion index; 0 for a single-run Job, which has none."""
    raw = env.get("JOB_COMPLETION_INDEX", "0")
    try:
        index = int(raw)
    except ValueError:
        raise ConfigError(f"JOB_COMPLETION_INDEX must be an integer, got {raw!r}") from None
    if index < 0:
        raise ConfigError(f"JOB_COMPLETION_INDEX must be 0 or more, got {index}")
    return index


def resolve_run(run_dir: Path, env: Mapping[str, str]) -> PodRun:
    """Read this pod's run id and config from the mounted ConfigMap."""
    index = completion_index(env)
    run_ids = _read_json(run_dir / "runs.json")
    if not isinstance(run_ids, dict) or str(index) not in run_ids:
        known = ", ".join(sorted(run_ids, key=int)) if isinstance(run_ids, dict) else "none"
        message = f"no run for completion index {index} (indexes: {known})"
        raise ConfigError(message, path=str(run_dir / "runs.json"))
    trial_path = run_dir / f"trial-{index}.json"
    document = _read_json(trial_path)
    if not isinstance(document, dict) or document.get("run_id") != run_ids[str(index)]:
        raise ConfigError(
            f"run_id does not match runs.json[{index}] = {run_ids[str(index)]!r}",
            path=str(trial_path),
        )
    try:
        config = RunConfig.model_validate(document.get("config"))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, RunConfig), path=str(trial_path)) from None
    return PodRun(
        run_id=document["run_id"],
        config=config,
        completion_index=index,
        trial_index=document.get("trial_index"),
        params=document.get("params") or {},
        job_name=env.get("CIFAR_OPS_JOB_NAME") or None,
        search=_study_search(config, document.get("study"), trial_path),
    )


def _study_search(config: RunConfig, study: Any, path: Path) -> SearchConfig | None:
    """The search a study worker asks trials of, rebuilt as `validate` builds it."""
    if study is None:
        return None
    from cifar_ops.search.expand import search_config

    if not isinstance(study, dict) or not isinstance(study.get("base"), dict):
        raise ConfigError("study must be a mapping with search and base", path=str(path))
    try:
        spec = SearchSpec.model_validate(study.get("search"))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, SearchSpec), path=str(path)) from None
    return search_config(config, study["base"], spec, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("missing from the run ConfigMap", path=str(path)) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON ({exc.msg}, line {exc.lineno})", path=str(path)) from None


def exit_code_for(exc: BaseException) -> int:
    """Map a failure to the exit code the Job's podFailurePolicy acts on."""
    if isinstance(exc, Preempted):
        return EXIT_PREEMPTED
    if isinstance(exc, ConfigError | DataError | ModelError):
        return exc.exit_code
    if isinstance(exc, WarehouseError | StorageError) or _is_infrastructure(exc):
        return EXIT_RETRYABLE
    return EXIT_RUN_FAILED


def _is_infrastructure(exc: BaseException) -> bool:
    """Unreachable services: connection errors, database driver errors, the metrics endpoint."""
    if isinstance(exc, ConnectionError | TimeoutError | MonitoringError):
        return True
    module = type(exc).__module__
    return module.startswith(("sqlalchemy", "psycopg2", "urllib3", "requests"))


def _raise_preempted(signum: int, frame: FrameType | None) -> None:
    raise Preempted(f"signal {signal.Signals(signum).name}")


def train(pod_run: PodRun, database_url: str) -> int:
    """Run exactly what `cifar-ops run` runs, writing to the warehouse; returns the exit code."""
    from cifar_ops import runner
    from cifar_ops.warehouse.store import open_store

    store = open_store(database_url)
    if pod_run.search is not None:
        return train_study_trial(pod_run, pod_run.search, database_url, store)
    try:
        outcome = runner.execute(
            pod_run.config,
            sink=store,
            run_id=pod_run.run_id,
            trial=pod_run.trial,
            executor=ExecutorKind.KUBERNETES,  # the executor that runs this pod
            job_name=pod_run.job_name,
        )
    except Preempted:
        _mark(store, pod_run.run_id, "preempted", "pod received SIGTERM; the Job retries it")
        raise
    return exit_code_of(outcome)


def train_study_trial(pod_run: PodRun, search: SearchConfig, database_url: str, store: Any) -> int:
    """A study worker: ask the search's study for one trial (a retried pod gets its own back),
    train it, tell the study. Nothing left to ask is a success: the budget is spent."""
    from cifar_ops.search.worker import work

    outcomes = work(
        search,
        database_url,
        store,
        executor=ExecutorKind.KUBERNETES,
        worker=pod_run.worker,
        job_name=pod_run.job_name,
        once=True,
    )
    if not outcomes:
        print(f"cifar-ops: the study of {search.experiment} has no trial left", file=sys.stderr)
        return EXIT_SUCCEEDED
    return exit_code_of(outcomes[0])


def score(spec_path: Path, database_url: str) -> int:
    """A scoring pod: exactly what `cifar-ops score` runs, from the mounted `score.json`. A
    retried pod resumes: the images already written are skipped."""
    from cifar_ops.scoring.run import ScoringRequest, require_readable, run_scoring

    spec = _read_json(spec_path)
    try:
        request = ScoringRequest(**spec)
    except TypeError as exc:
        raise ConfigError(f"not a scoring spec ({exc})", path=str(spec_path)) from None
    print(f"cifar-ops: scoring {request.data_dir} with {request.model}", file=sys.stderr)
    result, files = run_scoring(request, database_url=database_url)
    rate = f"{result.images_per_second:.1f}" if result.images_per_second else "-"
    print(
        f"cifar-ops: scoring {result.scoring_id}: {result.scored} scored ({rate} images/s), "
        f"{result.already_scored} already scored; {', '.join(files)}",
        file=sys.stderr,
    )
    require_readable(result, request.data_dir)
    return EXIT_SUCCEEDED


def exit_code_of(outcome: RunOutcome) -> int:
    """The exit code of a run that ended without raising.

    A diverged run (`outcome.diverged`: the loss became NaN) gets its own permanent code, since a
    retry would only resume from the checkpoint's NaN weights; any other failed outcome is retried.
    """
    if outcome.status in (RunStatus.SUCCEEDED, RunStatus.PRUNED):  # pruned: the search's result
        return EXIT_SUCCEEDED
    if outcome.diverged:
        print(f"cifar-ops: run {outcome.run_id} diverged: {outcome.finish.reason}", file=sys.stderr)
        return EXIT_DIVERGED
    print(f"cifar-ops: run {outcome.run_id} failed: {outcome.finish.reason}", file=sys.stderr)
    return EXIT_RUN_FAILED


def _mark(store: Store, run_id: str, status: str, reason: str) -> None:
    """Best effort: the pod may be going away, and a retry marks the run running again."""
    try:
        store.set_status(run_id, status, reason)
    except Exception as exc:  # noqa: BLE001 - reporting must not hide the preemption
        print(f"cifar-ops: could not mark run {run_id} {status}: {exc}", file=sys.stderr)


def _database_url(env: Mapping[str, str]) -> str:
    database_url = env.get("CIFAR_OPS_DATABASE_URL")
    if not database_url:
        raise ConfigError(
            "CIFAR_OPS_DATABASE_URL is not set: the chart sets it from the Secret named in"
            " values database.existingSecret"
        )
    return database_url


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Resolve, train, and return the exit code (never raises)."""
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(description="cifar-ops training pod entrypoint")
    parser.add_argument("--run-dir", default=env.get("CIFAR_OPS_RUN_DIR") or DEFAULT_RUN_DIR)
    parser.add_argument("--score", action="store_true", help="run the mounted score.json")
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_preempted)
    try:
        if args.score:
            return score(Path(args.run_dir) / "score.json", _database_url(env))
        pod_run = resolve_run(Path(args.run_dir), env)
        database_url = _database_url(env)
        print(
            f"cifar-ops: run {pod_run.run_id} (completion index {pod_run.completion_index},"
            f" experiment {pod_run.config.experiment})",
            file=sys.stderr,
        )
        return train(pod_run, database_url)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes an exit code
        if isinstance(exc, SystemExit) or type(exc) is KeyboardInterrupt:
            raise
        code = exit_code_for(exc)
        if isinstance(exc, CifarOpsError | Preempted):
            print(f"cifar-ops: error: {exc}", file=sys.stderr)
        else:
            traceback.print_exc()
        print(f"cifar-ops: exit {code}", file=sys.stderr)
        return code
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
