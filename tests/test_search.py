"""cifar_ops.search: methods behind ask/tell, the trial cap, skipping what succeeded, registry."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from cifar_ops.config import SearchConfig, load_config
from cifar_ops.errors import ConfigError
from cifar_ops.search import (
    MAX_TRIALS,
    METHODS,
    GridSearch,
    RandomSearch,
    Study,
    TrialResult,
    register,
    strategy_for,
)
from cifar_ops.vocabulary import RunStatus, SearchMethod
from tests.conftest import REPO

GRID = REPO / "jobs/configs/grids/conv4_sgd.yaml"
RANDOM = """
experiment: rnd
model: {name: simple_cnn}
search:
  method: random
  trials: 5
  seed: 3
  parameters:
    optimizer.learning_rate: {log_uniform: [0.0001, 0.1]}
    train.batch_size: [32, 64, 128]
    seed: {int_uniform: [1, 100]}
"""


def load_search(path: Path, overrides: list[str] | None = None) -> SearchConfig:
    loaded = load_config(path, overrides)
    assert isinstance(loaded, SearchConfig)
    return loaded


def random_search(tmp_path: Path, text: str = RANDOM) -> SearchConfig:
    path = tmp_path / "random.yaml"
    path.write_text(text)
    return load_search(path)


def test_every_search_method_has_a_strategy() -> None:
    assert set(METHODS) == set(SearchMethod)
    for method, strategy in METHODS.items():
        assert strategy.method is method


def test_grid_asks_every_point_in_order_and_prunes_nothing() -> None:
    search = load_search(GRID)
    strategy = strategy_for(search.search)
    assert isinstance(strategy, GridSearch) and not strategy.adaptive
    assert strategy.planned() == len(search.trials) == 24
    points = []
    while (point := strategy.ask()) is not None:
        points.append(point)
    assert points == [trial.params for trial in search.trials]
    assert strategy.ask() is None
    assert not strategy.should_stop(0, 1, {"val_accuracy": 0.0})


def test_random_is_the_same_sequence_each_time_it_is_built(tmp_path: Path) -> None:
    search = random_search(tmp_path)
    one, two = strategy_for(search.search), strategy_for(search.search)
    assert isinstance(one, RandomSearch) and one.planned() == 5
    asked = [one.ask() for _ in range(5)]
    assert asked == [two.ask() for _ in range(5)] == [t.params for t in search.trials]
    assert one.ask() is None
    assert len({t.config.config_hash() for t in search.trials}) == 5


def test_study_leaves_out_trials_whose_config_already_succeeded() -> None:
    search = load_search(GRID)
    done = {search.trials[i].config.config_hash() for i in (0, 5, 23)}
    study = Study(search, done)
    todo = study.ask_all()
    assert [t.index for t in todo] == [i for i in range(24) if i not in (0, 5, 23)]
    assert [t.index for t in study.skipped] == [0, 5, 23]
    assert todo[0] is search.trials[1]  # the trials validated at load, not rebuilt


def test_study_tells_the_method_each_result() -> None:
    search = load_search(GRID)
    told: list[TrialResult] = []
    study = Study(search, {search.trials[0].config.config_hash()})
    study.strategy.tell = told.append  # type: ignore[method-assign]
    trial = study.ask()
    assert trial is not None and trial.index == 1
    study.tell(trial, "failed", {"val_accuracy": None})
    assert told == [
        TrialResult(0, RunStatus.SUCCEEDED),  # skipped as already succeeded
        TrialResult(1, RunStatus.FAILED, {"val_accuracy": None}),
    ]


class HalvingLearningRate:
    """An adaptive method for the test: each trial halves the rate of the best so far."""

    method: ClassVar[SearchMethod] = SearchMethod.GRID
    adaptive: ClassVar[bool] = True

    def __init__(self, spec: Any) -> None:
        self.rate, self.asked, self.results = 0.1, 0, []

    def planned(self) -> int:
        return 3

    def ask(self) -> dict[str, Any] | None:
        if self.asked == 3 or len(self.results) < self.asked:  # wait for the last result
            return None
        self.asked += 1
        return {"optimizer.learning_rate": self.rate}

    def tell(self, result: TrialResult) -> None:
        self.results.append(result)
        self.rate /= 2

    def should_stop(self, index: int, epoch: int, metrics: Mapping[str, float]) -> bool:
        return epoch >= 2


def test_a_method_that_decides_as_it_goes_is_asked_after_each_result(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(METHODS, SearchMethod.GRID, HalvingLearningRate)
    path = tmp_path / "adaptive.yaml"
    path.write_text(
        "experiment: adapt\nmodel: {name: simple_cnn}\n"
        "search: {parameters: {optimizer.learning_rate: [0.1]}}\n"
    )
    search = load_search(path)
    assert search.trials == []  # nothing is known before it starts
    study = Study(search)
    with pytest.raises(ValueError, match="decides trials as they end"):
        study.ask_all()
    rates = []
    while (trial := study.ask()) is not None:
        rates.append(trial.config.optimizer.learning_rate)
        assert trial.config.model.name == "simple_cnn" and trial.index == len(rates) - 1
        assert study.should_stop(trial, 2, {"val_accuracy": 0.5})
        study.tell(trial, RunStatus.SUCCEEDED, {"val_accuracy": 0.5})
    assert rates == [0.1, 0.05, 0.025]


TEN_VALUES_EACH = ", ".join(f"p{i}: {list(range(10))}" for i in range(6))
MILLION_POINT_GRID = "{parameters: {" + TEN_VALUES_EACH + "}}"


@pytest.mark.parametrize(
    ("search", "key", "fragment"),
    [
        (
            "{method: random, trials: 100000000, parameters: {seed: [1, 2]}}",
            "search.trials",
            "got 100000000",
        ),
        (MILLION_POINT_GRID, "search.parameters", "10 x 10 x 10 x 10 x 10 x 10 = 1000000 points"),
    ],
    ids=["random-1e8", "grid-1e6"],
)
def test_a_search_too_large_fails_before_any_trial_is_built(
    tmp_path: Path, search: str, key: str, fragment: str
) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(f"experiment: huge\nmodel: {{name: simple_cnn}}\nsearch: {search}\n")
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as info:
            load_config(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 5
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB allocated"
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: ") and fragment in message
    assert f"at most {MAX_TRIALS} trials" in message and info.value.exit_code == 2


def test_a_search_at_the_cap_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "cap.yaml"
    path.write_text(
        "experiment: cap\nmodel: {name: simple_cnn}\n"
        f"search: {{method: random, trials: {MAX_TRIALS}, parameters: {{seed: [1, 2]}}}}\n"
    )
    assert len(load_search(path).trials) == MAX_TRIALS


def test_register_records_method_space_and_size() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    class Registry:
        def register_search(self, experiment: str, **fields: Any) -> None:
            calls.append((experiment, fields))

    search = load_search(GRID)
    register(search, Registry())
    ((experiment, fields),) = calls
    assert experiment == search.experiment
    assert fields["method"] == "grid" and type(fields["method"]) is str
    assert fields["trial_count"] == 24
    assert fields["parameters"] == search.search.model_dump(mode="json")["parameters"]
