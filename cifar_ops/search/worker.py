"""A search run through an Optuna study in the warehouse: trials asked by any number of workers.

Used when the method picks trials from results (tpe, cmaes) or a pruner stops them early. Every
worker (a local process of `cifar-ops run --parallel N`, or a pod of the search's Indexed Job)
opens the same study (name: the experiment) and asks it for a trial, trains it with each epoch's
metric reported to the study (`pruning.TrialReporter`), and tells it how the trial ended. Grid and
random trials are enqueued by `prepare` with their index, so they keep their trial lists and
config hashes; an adaptive method's trials are sampled, each taking the next index.

Asking is serialised per study (a PostgreSQL advisory lock, or an flock beside the SQLite file),
so N workers run exactly the budget, no trial twice. A trial keeps its run id in its user
attributes: a retried pod (same completion index) takes back its own running trial, and a trial
whose worker vanished (no heartbeat for the grace period) is failed and queued again with its run
id, so whoever asks next resumes that run from its checkpoint. An interrupted trial (signal,
infrastructure error) is queued again at once without using up those retries; a listed trial that
used them all is named by the worker that finds it lost, which fails (exit 1) rather than end the
search without it. A search run again continues its study: finished trials stay finished, waiting
ones run first, and only the rest is sampled.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from cifar_ops.config.schema import SearchConfig, Trial
from cifar_ops.errors import WarehouseError
from cifar_ops.search import space, storage
from cifar_ops.search.expand import build_trial
from cifar_ops.vocabulary import RunStatus, SearchPruner

if TYPE_CHECKING:
    import optuna

ATTR_INDEX = "index"  # user attribute: the trial's index in the search (its run's trial_index)
ATTR_RUN_ID = "run_id"  # user attribute: the run that trains it; a retry inherits it
ATTR_WORKER = storage.WORKER_ATTR  # user attribute: who asked for it (job name and index)
STUDY_LOCK_TIMEOUT = "120s"  # the longest a worker waits for the study lock (PostgreSQL)
_SAMPLING_CAP = 3  # at most this many times the budget of indices sampled (failed ones replaced)


@dataclass(frozen=True)
class StudyTrial:
    """A trial asked of the study: the Optuna trial, and the run config and id to train it."""

    trial: Trial
    run_id: str
    optuna_trial: optuna.Trial

    @property
    def number(self) -> int:
        return self.optuna_trial.number


class SearchStudy:
    """One search's Optuna study in the warehouse `url`, opened by a worker or an executor."""

    def __init__(self, search: SearchConfig, url: str, *, create: bool = False) -> None:
        """`create`: make Optuna's tables if missing (the one process that prepares a search;
        workers only open them)."""
        import optuna

        self.search = search
        self.spec = search.search
        self.url = url
        self.storage = storage.open_storage(
            url,
            heartbeat_seconds=self.spec.heartbeat_seconds,
            grace_seconds=self.spec.grace_seconds,
            create=create,
        )
        with storage.quiet_experimental():
            self.study = optuna.create_study(
                study_name=search.experiment,
                storage=self.storage,
                sampler=space.sampler_for(self.spec),
                pruner=space.pruner_for(self.spec),
                direction=self.spec.objective_direction,
                load_if_exists=True,
            )
        self._distributions = space.distributions(self.spec)
        self._listed = {trial.index: trial for trial in search.trials}

    @property
    def budget(self) -> int:
        return self.budget_of(self.search)

    @staticmethod
    def budget_of(search: SearchConfig) -> int:
        """How many trials the search runs: its listed trials, or `trials` for a sampler."""
        return search.search.trials or 0 if search.search.adaptive else len(search.trials)

    def close(self) -> None:
        self.storage.engine.dispose()

    def prepare(self, succeeded_hashes: Sequence[str] = ()) -> int:
        """Enqueue the listed trials (grid, random) that the study has not run and whose config
        has not succeeded in the experiment; returns how many were enqueued."""
        from optuna.trial import TrialState

        if self.spec.adaptive:
            return 0
        done = frozenset(succeeded_hashes)
        enqueued = 0
        with self._locked():
            held = {
                t.user_attrs.get(ATTR_INDEX)
                for t in self.study.get_trials(deepcopy=False)
                if t.state != TrialState.FAIL
            }
            for index, trial in self._enqueue_order():
                if index in held or trial.config.config_hash() in done:
                    continue
                self.study.enqueue_trial(
                    space.encoded(trial.params), user_attrs={ATTR_INDEX: index}
                )
                enqueued += 1
        return enqueued

    def _enqueue_order(self) -> list[tuple[int, Trial]]:
        """The listed trials in the order they are queued. Pruned: shuffled with the search's
        seed, since an asynchronous pruner judges each trial against those before it, and a grid
        in listed order (one rate rising trial by trial) makes each newcomer look promotable.
        Trial indices, run ids and config hashes stay those of the listed order."""
        listed = sorted(self._listed.items())
        if self.spec.pruner != SearchPruner.NONE:
            random.Random(self.spec.seed).shuffle(listed)
        return listed

    def ask(self, worker: str | None = None) -> StudyTrial | None:
        """The next trial for this worker; None when the budget is spent and nothing waits.

        A worker that asked before (a retried pod) gets its own running trial back; a trial
        queued again after its worker vanished comes before any new one.
        """
        from optuna.trial import TrialState

        with self._locked(), storage.quiet_experimental():
            storage.fail_stale(self.study)
            trials = self.study.get_trials(deepcopy=False)
            if worker is not None:
                for frozen in trials:
                    if frozen.state == TrialState.RUNNING and (
                        frozen.user_attrs.get(ATTR_WORKER) == worker
                    ):
                        return self._resumed(frozen)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            used = sum(t.state != TrialState.FAIL for t in trials)
            indices = {t.user_attrs.get(ATTR_INDEX) for t in trials} - {None}  # copies share one
            if not waiting and (
                not self.spec.adaptive
                or used >= self.budget
                or len(indices) >= _SAMPLING_CAP * self.budget
            ):
                return None
            self.study.sampler = space.sampler_for(self.spec, asked=len(trials))
            asked = self.study.ask(self._distributions)
            try:
                # first: a RUNNING trial without a heartbeat is never found stale
                self.storage.record_heartbeat(asked._trial_id)
                attrs = asked.user_attrs
                index = attrs.get(ATTR_INDEX)
                if index is None:  # sampled: the next index of the search
                    index = len(indices)
                    asked.set_user_attr(ATTR_INDEX, index)
                trial = self._trial(int(index), space.point_of(asked.params))
                run_id = attrs.get(ATTR_RUN_ID) or derive_run_id(
                    self.search.experiment, trial.config.config_hash(), trial.index
                )
                asked.set_user_attr(ATTR_RUN_ID, run_id)
                if worker is not None:
                    asked.set_user_attr(ATTR_WORKER, worker)
            except BaseException:
                with contextlib.suppress(Exception):  # the heartbeat, if written, goes stale
                    self._requeue(asked._trial_id)
                raise
        return StudyTrial(trial=trial, run_id=run_id, optuna_trial=asked)

    def tell(self, asked: StudyTrial, status: str, metrics: dict[str, float | None]) -> None:
        """How the trial's run ended: succeeded with its metric, pruned, or failed."""
        from optuna.trial import TrialState

        value = metrics.get(self.spec.metric)
        if status == RunStatus.SUCCEEDED and value is not None:
            self.study.tell(asked.optuna_trial, value, skip_if_finished=True)
        elif status == RunStatus.PRUNED:
            self.study.tell(asked.optuna_trial, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            self.study.tell(asked.optuna_trial, state=TrialState.FAIL, skip_if_finished=True)

    def requeue(self, asked: StudyTrial) -> None:
        """An interrupted trial (Ctrl-C, SIGTERM, an infrastructure error): failed now and queued
        again with its run id, so the search run again resumes it first, without waiting out the
        heartbeat and without using up the retries of a trial whose worker vanished."""
        with self._locked():
            self._requeue(asked.optuna_trial._trial_id)

    def _requeue(self, trial_id: int) -> None:
        """Fail a running trial and queue a copy; one already failed (found stale and queued by
        another worker) is left as it is. Called under `_locked`, as `fail_stale` is."""
        from optuna.trial import TrialState

        if self.storage.get_trial(trial_id).state != TrialState.RUNNING:
            return
        self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        with storage.quiet_experimental():
            storage.queue_again(self.study, self.storage.get_trial(trial_id), stale=False)

    def lost(self) -> list[tuple[int, str]]:
        """(index, run id) of each listed trial given up after `storage.RETRIES` stale
        heartbeats that nothing has run or queued since; empty for an adaptive search, which
        samples a replacement."""
        from optuna.trial import TrialState

        if self.spec.adaptive:
            return []
        trials = self.study.get_trials(deepcopy=False)
        alive = {t.user_attrs.get(ATTR_INDEX) for t in trials if t.state != TrialState.FAIL}
        given_up = {
            int(t.user_attrs[ATTR_INDEX]): str(t.user_attrs.get(ATTR_RUN_ID, ""))
            for t in trials
            if t.system_attrs.get(storage.GIVEN_UP) and ATTR_INDEX in t.user_attrs
        }
        return sorted((i, run_id) for i, run_id in given_up.items() if i not in alive)

    def unfinished(self) -> int:
        """Trials running or waiting (a worker with nothing to ask waits while any run: one whose
        worker died is queued again once its heartbeat is stale)."""
        from optuna.trial import TrialState

        states = (TrialState.RUNNING, TrialState.WAITING)
        return len(self.study.get_trials(deepcopy=False, states=states))

    def fail_stale(self) -> None:
        with self._locked(), storage.quiet_experimental():
            storage.fail_stale(self.study)

    @contextlib.contextmanager
    def heartbeat(self, asked: StudyTrial) -> Iterator[None]:
        """Beat for the trial every `heartbeat_seconds` while it trains."""
        stop = threading.Event()
        trial_id = asked.optuna_trial._trial_id

        def beat() -> None:
            while not stop.wait(self.spec.heartbeat_seconds):
                with contextlib.suppress(Exception):  # a missed beat is retried next interval
                    self.storage.record_heartbeat(trial_id)

        thread = threading.Thread(target=beat, name=f"heartbeat-{asked.number}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _resumed(self, frozen: optuna.trial.FrozenTrial) -> StudyTrial:
        import optuna

        index = int(frozen.user_attrs[ATTR_INDEX])
        trial = self._trial(index, space.point_of(frozen.params))
        self.storage.record_heartbeat(frozen._trial_id)
        live = optuna.Trial(self.study, frozen._trial_id)
        return StudyTrial(trial=trial, run_id=frozen.user_attrs[ATTR_RUN_ID], optuna_trial=live)

    def _trial(self, index: int, point: dict[str, Any]) -> Trial:
        listed = self._listed.get(index)
        if listed is not None and listed.params == point:
            return listed  # validated when the config was loaded
        return build_trial(self.search.base, index, point, None)

    def _wait_for_lock(self, connection: Any, key: int) -> None:
        """Wait at most STUDY_LOCK_TIMEOUT for the study lock: asking takes well under a second,
        so a longer wait means a holder that hangs (a stalled pod, a half-open connection), and a
        clear error beats a worker blocked for ever."""
        timeout = text("SELECT set_config('lock_timeout', :t, false)")
        connection.execute(timeout, {"t": STUDY_LOCK_TIMEOUT})
        try:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        except OperationalError as error:
            if getattr(error.orig, "pgcode", None) != "55P03":  # lock_not_available
                raise
            raise WarehouseError(
                f"search {self.search.experiment!r}: another worker has held the study's lock "
                f"for over {STUDY_LOCK_TIMEOUT}; its process may hang. Find it in pg_stat_activity "
                f"(pg_locks, advisory key {key}), end it, and run this worker again"
            ) from None
        finally:
            # ends the wait's transaction, which also undoes its lock_timeout (a SET made in a
            # transaction that rolls back is undone); a session's advisory lock stays held
            connection.rollback()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One asker at a time per study, across processes and machines."""
        key = _lock_key(self.search.experiment)
        if self.storage.engine.dialect.name == "postgresql":
            with self.storage.engine.connect() as connection:
                self._wait_for_lock(connection, key)
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    connection.commit()
            return
        database = Path(self.storage.engine.url.database or "study")
        with open(database.with_name(database.name + ".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield  # closing the file drops the flock


def prepare(search: SearchConfig, url: str, sink: Any) -> None:
    """Register the search (with its sampler and pruner) and enqueue its listed trials."""
    if hasattr(sink, "register_search"):
        sink.register_search(
            search.experiment,
            method=str(search.search.method),
            parameters=search.search.model_dump(mode="json")["parameters"],
            trial_count=SearchStudy.budget_of(search),
            description=search.run.description or None,
            sampler=space.sampler_name(search.search),
            pruner=str(search.search.pruner),
        )
    succeeded = (
        sink.succeeded_hashes(search.experiment) if hasattr(sink, "succeeded_hashes") else ()
    )
    study = SearchStudy(search, url, create=True)
    try:
        study.prepare(sorted(succeeded))
    finally:
        study.close()


def derive_run_id(experiment: str, config_hash: str, index: int) -> str:
    """A study trial's run id: the same experiment, config and index give the same id."""
    key = json.dumps([experiment, config_hash, index, "study"])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _lock_key(experiment: str) -> int:
    digest = hashlib.blake2b(f"cifar-ops study {experiment}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def wait_for_requeue(study: SearchStudy, poll_seconds: float) -> bool:
    """While other workers' trials run, wait; True when one was queued again (its worker died)."""
    from optuna.trial import TrialState

    while study.unfinished():
        study.fail_stale()
        if study.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return True
        time.sleep(poll_seconds)
    return False


def train_trial(
    study: SearchStudy,
    asked: StudyTrial,
    sink: Any,
    *,
    executor: str,
    job_name: str | None = None,
    callbacks: Sequence[Any] = (),
) -> Any:
    """Train an asked trial under its run id, reporting each epoch; tell the study how it ended.

    Interrupted (Ctrl-C, SIGTERM) or stopped by an infrastructure error, the trial is queued
    again with its run id, so it resumes from its checkpoint; a bad config, data or model fails
    it for good. Refused because another live process holds the run's lock (`RunLocked`), it is
    left untold: that process is training it. Returns the `runner.RunOutcome`.
    """
    from cifar_ops.errors import CifarOpsError, ConfigError, DataError, ModelError, RunLocked
    from cifar_ops.runner import execute
    from cifar_ops.search.pruning import TrialReporter

    reporter = TrialReporter(asked.optuna_trial, study.spec.metric)
    try:
        with study.heartbeat(asked):
            outcome = execute(
                asked.trial.config,
                sink=sink,
                run_id=asked.run_id,
                trial=asked.trial,
                executor=executor,
                job_name=job_name,
                callbacks=[*callbacks, reporter],
                trial_number=asked.number,
            )
    except (ConfigError, DataError, ModelError):
        study.tell(asked, RunStatus.FAILED, {})
        raise
    except RunLocked:
        raise  # another live process trains this run: its trial is that process's to tell
    except (KeyboardInterrupt, CifarOpsError):
        study.requeue(asked)
        raise
    metrics = {name: getattr(outcome.finish, name) for name in ("val_accuracy", "val_loss")}
    study.tell(asked, outcome.status, metrics)
    return outcome


def work(
    search: SearchConfig,
    url: str,
    sink: Any,
    *,
    executor: str,
    worker: str | None = None,
    job_name: str | None = None,
    callbacks: Sequence[Any] = (),
    once: bool = False,
) -> list[Any]:
    """A worker: ask, train, tell until the study has nothing left (`once`: one trial, as a pod
    does). Without `once` it also waits while other workers' trials run, taking over any that
    is queued again because its worker died. A trial that crashes on its own is a failed outcome
    and the worker goes on. Returns the outcomes of the trials it trained."""
    from cifar_ops.errors import CifarOpsError

    study = SearchStudy(search, url)
    outcomes: list[Any] = []
    try:
        while True:
            asked = study.ask(worker)
            if asked is None:
                if not once and wait_for_requeue(study, _poll_seconds(search)):
                    continue
                _refuse_lost(study, sink)
                return outcomes
            try:
                outcomes.append(
                    train_trial(
                        study,
                        asked,
                        sink,
                        executor=executor,
                        callbacks=callbacks,
                        job_name=job_name,
                    )
                )
            except (KeyboardInterrupt, CifarOpsError):
                raise
            except Exception as exc:  # noqa: BLE001 - the run is recorded failed; the search goes on
                study.tell(asked, RunStatus.FAILED, {})
                outcomes.append(_failed(asked, exc))
            if once:
                return outcomes
    finally:
        study.close()


def _refuse_lost(study: SearchStudy, sink: Any) -> None:
    """Fail (exit 1) when a listed trial was given up, its run recorded failed with why: the
    search must not end as if it had run every trial. Running the search again queues it."""
    from cifar_ops.errors import CifarOpsError

    lost = study.lost()
    if not lost:
        return
    reason = (
        f"its worker vanished {storage.RETRIES + 1} times (stale heartbeat); run the search "
        "again to queue it"
    )
    for _index, run_id in lost:
        if run_id and hasattr(sink, "set_status"):
            with contextlib.suppress(CifarOpsError):  # a run that never started has no row
                sink.set_status(run_id, RunStatus.FAILED, reason)
    named = ", ".join(f"{index} (run {run_id})" for index, run_id in lost)
    raise CifarOpsError(f"search {study.search.experiment!r} lost trial(s) {named}: {reason}")


def _poll_seconds(search: SearchConfig) -> float:
    return max(0.5, min(5.0, search.search.heartbeat_seconds / 2))


def _failed(asked: StudyTrial, exc: BaseException) -> Any:
    from cifar_ops.records import RunFinish
    from cifar_ops.runner import RunOutcome

    finish = RunFinish(status=RunStatus.FAILED, reason=f"{type(exc).__name__}: {exc}")
    return RunOutcome(asked.run_id, RunStatus.FAILED, finish, None, asked.trial.index)
