"""The runner's bookkeeping: run metadata, failed and preempted runs, searches in processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import keras
import pytest
import yaml

from cifar_ops.config import SearchConfig, load_config
from cifar_ops.errors import ConfigError, DataError, Preempted
from cifar_ops.executors.local import execute_search
from cifar_ops.runner import _finish_monitor, execute
from cifar_ops.warehouse.store import open_store
from tests.engine_helpers import TINY, tiny_config
from tests.memory_sink import MemorySink


class RaiseAt(keras.callbacks.Callback):
    """Raises `error` at the end of epoch `epoch` (1-based)."""

    def __init__(self, epoch: int, error: BaseException | None = None, sigterm: bool = False):
        super().__init__()
        self.epoch, self.error, self.sigterm = epoch, error, sigterm

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 != self.epoch:
            return
        if self.sigterm:
            os.kill(os.getpid(), signal.SIGTERM)
        elif self.error is not None:
            raise self.error


def test_a_crash_marks_the_run_failed_with_its_reason_and_re_raises() -> None:
    sink = MemorySink()
    with pytest.raises(RuntimeError, match="disk full"):
        execute(tiny_config(), sink=sink, callbacks=[RaiseAt(1, RuntimeError("disk full"))])
    (finish,) = sink.finishes.values()
    assert finish.status == "failed" and finish.reason == "RuntimeError: disk full"
    assert finish.finished_at is not None
    assert [e for _, e in sink.epoch_writes] == [1]  # the epoch before the crash was logged


def test_sigterm_marks_the_run_preempted_and_the_same_id_resumes() -> None:
    sink = MemorySink()
    run_id = "e" * 32
    with pytest.raises(Preempted):
        execute(tiny_config(), sink=sink, run_id=run_id, callbacks=[RaiseAt(1, sigterm=True)])
    assert sink.finishes[run_id].status == "preempted"
    assert sink.finishes[run_id].reason == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler put back
    outcome = execute(tiny_config(), sink=sink, run_id=run_id)
    assert outcome.status == "succeeded"
    assert [e for _, e in sink.epoch_writes] == [1, 2, 3]


def test_run_start_carries_what_identifies_the_run() -> None:
    search = load_config_text(
        {**TINY, "search": {"method": "grid", "parameters": {"train.batch_size": [64]}}}
    )
    sink = MemorySink()
    (outcome,) = execute_search(search, sink=sink)
    (start,) = sink.starts
    config = search.trials[0].config
    assert start.config_hash == config.config_hash() and start.config["seed"] == 7
    assert (start.trial_index, start.trial_params) == (0, {"train.batch_size": 64})
    assert start.git_sha and len(start.git_sha) == 40  # the tests run from the git checkout
    assert start.status == "running" and start.executor == "local" and start.started_at
    assert outcome.trial_index == 0 and outcome.run_id == start.run_id


def test_bad_data_fails_before_anything_is_written() -> None:
    sink = MemorySink()
    config = tiny_config(data={"source": "folder", "dir": "/no/such/images"})
    with pytest.raises(DataError, match="/no/such/images"):
        execute(config, sink=sink)
    assert sink.starts == [] and sink.finishes == {}


@pytest.mark.slow
def test_parallel_search_in_processes_records_a_diverging_trial_and_goes_on(
    sqlite_url: str,
) -> None:
    search = load_config_text(
        {
            **TINY,
            "train": {"epochs": 2, "batch_size": 64},
            "optimizer": {"name": "sgd", "learning_rate": 0.01},
            "search": {
                "method": "grid",
                "parameters": {"optimizer.learning_rate": [0.05, 1.0e12]},
            },
        }
    )
    with open_store(sqlite_url) as store:
        outcomes = execute_search(search, sink=store, parallel=2)
        assert sorted((o.trial_index, o.status) for o in outcomes) == [
            (0, "succeeded"),
            (1, "failed"),
        ]
        runs = {r.trial_index: r for r in store.list_runs(experiment="engine-test")}
        assert runs[0].status == "succeeded" and runs[1].status == "failed"
        assert "nan" in (runs[1].status_reason or "").lower()
        assert store.succeeded_hashes("engine-test") == {search.trials[0].config.config_hash()}
        (recorded,) = [e for e in store.experiments() if e.name == "engine-test"]
        assert (recorded.search_method, recorded.trial_count) == ("grid", 2)
        assert recorded.search_parameters == {"optimizer.learning_rate": [0.05, 1.0e12]}
        assert execute_search(search, sink=store, parallel=2)[0].trial_index == 1  # retried


@pytest.mark.slow
def test_a_parallel_search_stops_at_the_first_cifar_ops_error(sqlite_url: str) -> None:
    bad_fine_tune = {"epochs": 1, "learning_rate": 0.001}  # ConfigError: simple_cnn has no base
    search = load_config_text(
        {
            **TINY,
            "train": {"epochs": 1, "batch_size": 64},
            "search": {"parameters": {"train.fine_tune": [bad_fine_tune, *[None] * 7]}},
        }
    )
    assert len(search.trials) == 8
    with open_store(sqlite_url) as store:
        with pytest.raises(ConfigError, match="fine"):
            execute_search(search, sink=store, parallel=2)
        started = store.list_runs(experiment="engine-test", limit=None)
    # Trial 0 fails before its run starts. The pool hands up to parallel + 1 trials to its workers
    # ahead of time (those cannot be cancelled); every trial behind them never starts, where
    # without the cancel all 7 good trials would run.
    assert len(started) <= 5, [r.trial_index for r in started]
    assert 7 not in {r.trial_index for r in started}


def test_an_interrupt_while_waiting_for_the_last_scrape_leaves_the_run_as_it_ended() -> None:
    class SlowToFinish:
        def __init__(self, interrupt: BaseException | None, sigterm: bool = False) -> None:
            self.interrupt, self.sigterm, self.finished = interrupt, sigterm, []

        def finish(self, status: str) -> None:
            self.finished.append(status)
            if self.sigterm:
                os.kill(os.getpid(), signal.SIGTERM)
            if self.interrupt is not None:
                raise self.interrupt

    def outer_handler(signum: int, frame: object) -> None:  # like jobs/entrypoint's
        raise SystemExit("the entrypoint's handler must not run here")

    previous = signal.signal(signal.SIGTERM, outer_handler)
    try:
        for monitor in (SlowToFinish(KeyboardInterrupt()), SlowToFinish(None, sigterm=True)):
            _finish_monitor(monitor, "succeeded")  # returns: the recorded end stands
            assert monitor.finished == ["succeeded"]
        assert signal.getsignal(signal.SIGTERM) is outer_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def load_config_text(raw: dict) -> SearchConfig:
    path = Path("search.yaml")  # each test runs in its own temp dir
    path.write_text(yaml.safe_dump(raw))
    loaded = load_config(path)
    assert isinstance(loaded, SearchConfig)
    return loaded


def test_signals_during_training_are_raised_between_steps_not_inside_them() -> None:
    from cifar_ops.callbacks import StopOnSignal

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a background job without job control
    for signum, expected in ((signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Preempted)):
        stop = StopOnSignal()
        with stop.catching():
            os.kill(os.getpid(), signum)  # recorded by the handler: nothing raised here
            assert stop.received == signum
            with pytest.raises(expected):
                stop.on_train_batch_end(0)  # raised at the next step boundary
    stop = StopOnSignal()
    with stop.catching(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C does not wait for a boundary
    assert signal.getsignal(signal.SIGINT) is before  # handlers put back
