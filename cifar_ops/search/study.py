"""Running a search: the trials still to run, in the method's order, and what they returned.

Both executors drive a search through a `Study`: the local one asks for a trial whenever a worker
is free and tells the method how it ended; the kubernetes one asks for every trial at once (one
Indexed Job). A trial whose config hash already succeeded in the experiment is left out, so a
search run again runs only what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from cifar_ops.config.schema import SearchConfig, Trial
from cifar_ops.search.expand import build_trial
from cifar_ops.search.methods import TrialResult, strategy_for
from cifar_ops.vocabulary import RunStatus


@runtime_checkable  # local runs register only with a sink that records searches
class SearchRegistry(Protocol):
    """The warehouse's record of a search (`Store.register_search`)."""

    def register_search(
        self,
        experiment: str,
        *,
        method: str,
        parameters: dict[str, Any],
        trial_count: int,
        description: str | None,
    ) -> None: ...


class Study:
    """One run of a search: asks its method for trials, skipping configs that already succeeded."""

    def __init__(self, search: SearchConfig, succeeded_hashes: Iterable[str] = ()) -> None:
        self.search = search
        self.strategy = strategy_for(search.search)
        self.skipped: list[Trial] = []  # trials left out: their config hash already succeeded
        self._succeeded = frozenset(succeeded_hashes)
        self._asked = 0

    def ask(self) -> Trial | None:
        """The next trial to run; None when the search has no more."""
        while (point := self.strategy.ask()) is not None:
            trial = self._trial(point)
            if trial.config.config_hash() not in self._succeeded:
                return trial
            self.skipped.append(trial)
            self.strategy.tell(TrialResult(trial.index, RunStatus.SUCCEEDED))
        return None

    def ask_all(self) -> list[Trial]:
        """Every trial still to run, for an executor that starts them at once."""
        if self.strategy.adaptive:
            raise ValueError(f"method {self.search.search.method} decides trials as they end")
        trials = []
        while (trial := self.ask()) is not None:
            trials.append(trial)
        return trials

    def tell(
        self, trial: Trial, status: RunStatus | str, metrics: Mapping[str, float | None]
    ) -> None:
        """How a trial ended: its status and headline metrics (val_accuracy, test_accuracy...)."""
        self.strategy.tell(TrialResult(trial.index, RunStatus(status), dict(metrics)))

    def should_stop(self, trial: Trial, epoch: int, metrics: Mapping[str, float]) -> bool:
        """After an epoch of a running trial: whether the method stops it early."""
        return self.strategy.should_stop(trial.index, epoch, metrics)

    def _trial(self, point: dict[str, Any]) -> Trial:
        index, self._asked = self._asked, self._asked + 1
        listed = self.search.trials
        if index < len(listed) and listed[index].params == point:
            return listed[index]  # validated when the config was loaded
        return build_trial(self.search.base, index, point, None)


def register(search: SearchConfig, registry: SearchRegistry) -> None:
    """Record the search and its space in the warehouse, so the leaderboard knows it."""
    registry.register_search(
        search.experiment,
        method=str(search.search.method),
        parameters=search.search.model_dump(mode="json")["parameters"],
        trial_count=strategy_for(search.search).planned(),
        description=search.run.description or None,
    )
