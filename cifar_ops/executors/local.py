"""The local executor: `cifar-ops run` trains here, a search's trials one by one or in processes.

Every run goes through `runner.execute` and is recorded with executor `local`. A search asks its
`cifar_ops.search.Study` for the next trial whenever a worker is free and tells it how each ended,
so a method that decides as it goes fits the same loop.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import Any

from cifar_ops.config import RunConfig, SearchConfig, Trial
from cifar_ops.errors import CifarOpsError
from cifar_ops.executors.base import Launch
from cifar_ops.records import HEADLINE_METRICS, RunFinish, RunSink
from cifar_ops.runner import RunOutcome, execute
from cifar_ops.search import SearchRegistry, Study, register
from cifar_ops.vocabulary import ExecutorKind, RunStatus


@dataclass(frozen=True)
class LocalExecutor:
    """Runs in this process (a search's trials optionally in spawned worker processes)."""

    kind: ExecutorKind = ExecutorKind.LOCAL
    in_process: bool = True

    def launch(self, loaded: RunConfig | SearchConfig, launch: Launch) -> list[RunOutcome]:
        return run_locally(
            loaded,
            run_id=launch.run_id,
            parallel=launch.parallel,
            callbacks=launch.callbacks,
            database_url=launch.database_url,
        )


EXECUTOR = LocalExecutor()


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
    from cifar_ops.warehouse.store import open_store  # SQLAlchemy: only once a run starts

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
        return [
            execute(loaded, sink=store, run_id=run_id, executor=EXECUTOR.kind, callbacks=callbacks)
        ]


def execute_search(
    search: SearchConfig,
    *,
    sink: RunSink,
    parallel: int = 1,
    sink_factory: Callable[[], RunSink] | None = None,
    callbacks: Sequence[Any] = (),
) -> list[RunOutcome]:
    """Run a search's trials; skip those whose config hash already succeeded in the experiment.

    A search with an adaptive method or a pruner runs through its Optuna study in the warehouse
    (`cifar_ops.search.worker`): `parallel` worker processes each ask the study for trials.

    With `parallel` > 1 trials run in that many spawned processes, each opening its own sink
    with `sink_factory` (default: `open_store(sink.url)` when the sink has a `url`). A trial that
    fails on its own (e.g. diverges or crashes) is recorded as failed and the search goes on; a
    `CifarOpsError` (bad data, config, warehouse) or Ctrl-C stops the whole search. Outcomes come
    back in trial order.
    """
    if search.search.uses_study:
        return _execute_study(search, sink, parallel, sink_factory, callbacks)
    if isinstance(sink, SearchRegistry):  # as `submit` does, so the leaderboard knows the space
        register(search, sink)
    succeeded = (
        sink.succeeded_hashes(search.experiment) if hasattr(sink, "succeeded_hashes") else ()
    )
    study = Study(search, succeeded)
    first = study.ask()
    second = study.ask() if first is not None and parallel > 1 else None
    if first is None or second is None:  # one at a time, in this process
        outcomes = []
        trial = first
        while trial is not None:
            outcome = _run_here(trial, sink, callbacks)
            study.tell(trial, outcome.status, _metrics(outcome))
            outcomes.append(outcome)
            trial = study.ask()
        return outcomes
    return _run_in_processes(
        study, [first, second], parallel, sink_factory or _default_sink_factory(sink)
    )


def _run_here(trial: Trial, sink: RunSink, callbacks: Sequence[Any]) -> RunOutcome:
    run_id = uuid.uuid4().hex
    try:
        return execute(
            trial.config,
            sink=sink,
            run_id=run_id,
            trial=trial,
            executor=EXECUTOR.kind,
            callbacks=callbacks,
        )
    except CifarOpsError:
        raise
    except Exception as exc:
        return _failed_outcome(run_id, trial, exc)


def _run_in_processes(
    study: Study, asked: list[Trial], parallel: int, factory: Callable[[], RunSink]
) -> list[RunOutcome]:
    """Keep `parallel` trials running, asking for the next as each ends."""
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // parallel)
    outcomes: list[RunOutcome] = []
    with ProcessPoolExecutor(max_workers=parallel, mp_context=context) as pool:
        running: dict[Future[RunOutcome], Trial] = {}

        def start(trial: Trial) -> None:
            running[pool.submit(_run_trial, trial, factory, threads)] = trial

        try:
            for trial in asked:
                start(trial)
            while running:
                while len(running) < parallel and (asked_next := study.ask()) is not None:
                    start(asked_next)
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    trial = running.pop(future)
                    outcome = future.result()  # the first CifarOpsError (or Ctrl-C) stops here
                    study.tell(trial, outcome.status, _metrics(outcome))
                    outcomes.append(outcome)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # trials not started never start
            raise
    return sorted(outcomes, key=lambda outcome: outcome.trial_index or 0)


def _run_trial(trial: Trial, factory: Callable[[], RunSink], threads: int) -> RunOutcome:
    """A search trial in a worker process, with its share of the CPU threads."""
    from cifar_ops.backend import limit_cpu_threads

    limit_cpu_threads(threads)
    sink = factory()
    try:
        return _run_here(trial, sink, ())
    finally:
        close = getattr(sink, "close", None)  # workers are reused: free the connections
        if close is not None:
            close()


def _metrics(outcome: RunOutcome) -> dict[str, float | None]:
    return {name: getattr(outcome.finish, name) for name in HEADLINE_METRICS}


def _failed_outcome(run_id: str, trial: Trial, exc: BaseException) -> RunOutcome:
    finish = RunFinish(status=RunStatus.FAILED, reason=f"{type(exc).__name__}: {exc}")
    return RunOutcome(run_id, RunStatus.FAILED, finish, None, trial.index)


def _default_sink_factory(sink: RunSink) -> Callable[[], RunSink]:
    """Reopen the same warehouse in a worker: from the sink's engine (password kept) or url."""
    engine = getattr(sink, "engine", None)
    url = engine.url.render_as_string(hide_password=False) if engine is not None else None
    url = url or getattr(sink, "url", None)
    if url is None:
        raise TypeError("parallel trials need a sink_factory, or a sink with a `url` to reopen")
    from cifar_ops.warehouse.store import open_store  # SQLAlchemy: only for parallel trials

    return partial(open_store, str(url))


def _execute_study(
    search: SearchConfig,
    sink: RunSink,
    parallel: int,
    sink_factory: Callable[[], RunSink] | None,
    callbacks: Sequence[Any],
) -> list[RunOutcome]:
    """Prepare the search's study, then run `parallel` workers on it (here when one)."""
    from cifar_ops.search import worker

    url = _sink_url(sink)
    worker.prepare(search, url, sink)
    if parallel <= 1:
        here = worker.work(search, url, sink, executor=EXECUTOR.kind, callbacks=callbacks)
        return sorted(here, key=lambda outcome: outcome.trial_index or 0)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // parallel)
    factory = sink_factory or _default_sink_factory(sink)
    processes = [
        context.Process(
            target=_study_worker,
            args=(search, url, factory, threads, worker_name(n), results),
            name=f"cifar-ops-worker-{n}",
        )
        for n in range(parallel)
    ]
    outcomes: list[RunOutcome] = []
    errors: list[BaseException] = []
    try:
        for process in processes:
            process.start()
        while any(process.is_alive() for process in processes) or not results.empty():
            try:
                kind, payload = results.get(timeout=1)
            except queue.Empty:
                continue
            (outcomes if kind == "outcome" else errors).append(payload)
    finally:
        for process in processes:
            process.join()
    if errors:
        raise errors[0]
    return sorted(outcomes, key=lambda outcome: outcome.trial_index or 0)


def worker_name(n: int) -> str:
    """A local study worker's name, unique across hosts and containers sharing one study (where
    the CLI is often pid 1): `ask` hands a running trial back to the worker of the same name."""
    import socket
    import uuid

    return f"local-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}-{n}"


def _study_worker(
    search: SearchConfig,
    url: str,
    factory: Callable[[], RunSink],
    threads: int,
    name: str,
    results: Any,
) -> None:
    """A worker process: trains trials of the study until it has none; outcomes to `results`."""
    import pickle

    from cifar_ops.backend import limit_cpu_threads
    from cifar_ops.search import worker

    limit_cpu_threads(threads)
    sink = factory()
    try:
        for outcome in worker.work(search, url, sink, executor=EXECUTOR.kind, worker=name):
            results.put(("outcome", outcome))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
        try:
            pickle.dumps(exc)
            results.put(("error", exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle goes as text
            results.put(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        close = getattr(sink, "close", None)
        if close is not None:
            close()


def _sink_url(sink: RunSink) -> str:
    """The warehouse URL of a sink (password kept): the study lives beside it."""
    engine = getattr(sink, "engine", None)
    url = engine.url.render_as_string(hide_password=False) if engine is not None else None
    url = url or getattr(sink, "url", None)
    if url is None:
        raise TypeError("a search run through a study needs a sink with a warehouse URL")
    return str(url)
