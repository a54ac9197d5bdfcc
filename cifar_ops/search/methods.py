"""Search methods: how a search picks its trials, behind one ask/tell interface.

A method proposes trials one at a time (`ask`), learns how each ended (`tell`) and may stop a
running trial after any epoch (`should_stop`). Grid and random know every trial up front
(`adaptive` is False): their points are listed by `validate`. TPE and CMA-ES (`SampledSearch`,
Optuna's samplers) decide as they go (`adaptive` True). Stopping trials early is the pruner's job
(`search.pruner`, Optuna's pruners), for any method. Adding a method is an enum value in
`cifar_ops.vocabulary.SearchMethod`, a class here and its entry in `METHODS`.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from cifar_ops.vocabulary import RunStatus, SearchMethod

if TYPE_CHECKING:  # the schema imports this package to expand searches
    from cifar_ops.config.schema import Distribution, SearchSpec

Point = dict[str, Any]  # dotted run-config key -> value of one trial


@dataclass(frozen=True)
class TrialResult:
    """How a trial ended, as its method learns it: status and headline metrics (val_accuracy...).

    A trial left out because its config already succeeded is told as succeeded with no metrics.
    """

    index: int
    status: RunStatus
    metrics: Mapping[str, float | None] = field(default_factory=dict)


class SearchStrategy(Protocol):
    """One search's method, built from its spec; asked for trials in index order."""

    method: ClassVar[SearchMethod]
    adaptive: ClassVar[bool]  # decides trials from earlier results, so none is known up front

    def planned(self) -> int:
        """How many trials at most, known before any is built (the size `MAX_TRIALS` caps)."""
        ...

    def ask(self) -> Point | None:
        """The next trial's parameters; None when the search has no more."""
        ...

    def tell(self, result: TrialResult) -> None:
        """A trial ended (or was left out as already succeeded)."""
        ...

    def should_stop(self, index: int, epoch: int, metrics: Mapping[str, float]) -> bool:
        """After each epoch of a running trial: True stops it early (pruning)."""
        ...


class _FixedPoints:
    """A method whose trials are fixed by its spec: results change nothing, nothing is pruned."""

    method: ClassVar[SearchMethod]
    adaptive: ClassVar[bool] = False

    def __init__(self) -> None:
        self._points: Iterator[Point] = iter(())

    def ask(self) -> Point | None:
        return next(self._points, None)

    def tell(self, result: TrialResult) -> None:
        return None

    def should_stop(self, index: int, epoch: int, metrics: Mapping[str, float]) -> bool:
        return False


class GridSearch(_FixedPoints):
    """Every combination of the listed values, the last key varying fastest."""

    method = SearchMethod.GRID

    def __init__(self, spec: SearchSpec) -> None:
        self._keys = list(spec.parameters)
        self._values = [_listed(spec.parameters[key]) for key in self._keys]
        combos = itertools.product(*self._values)  # lazy: one point per ask
        self._points = (dict(zip(self._keys, combo, strict=True)) for combo in combos)

    def planned(self) -> int:
        return math.prod(len(values) for values in self._values)


class RandomSearch(_FixedPoints):
    """`trials` points drawn with `seed`: a listed key picks one value, a range samples one."""

    method = SearchMethod.RANDOM

    def __init__(self, spec: SearchSpec) -> None:
        self._trials = spec.trials or 0
        self._points = self._draw(spec)

    def planned(self) -> int:
        return self._trials

    def _draw(self, spec: SearchSpec) -> Iterator[Point]:
        rng = random.Random(spec.seed)
        for _ in range(self._trials):
            point = {}
            for key, space in spec.parameters.items():
                point[key] = rng.choice(space) if isinstance(space, list) else _sample(space, rng)
            yield point


def _listed(space: list[Any] | Distribution) -> list[Any]:
    if not isinstance(space, list):  # SearchSpec refuses a range in a grid
        raise TypeError("a grid takes lists of values")
    return space


def _sample(space: Distribution, rng: random.Random) -> float | int:
    if space.uniform:
        return rng.uniform(*space.uniform)
    if space.log_uniform:
        low, high = space.log_uniform
        return float(10 ** rng.uniform(math.log10(low), math.log10(high)))
    assert space.int_uniform is not None
    return rng.randint(*space.int_uniform)


class SampledSearch:
    """TPE or CMA-ES (Optuna's samplers): each trial picked from the results told so far.

    Built from a spec alone it keeps its study in memory; the executors run the same sampler on
    the study in the warehouse (`cifar_ops.search.worker`), shared by every worker.
    """

    method: ClassVar[SearchMethod]
    adaptive: ClassVar[bool] = True

    def __init__(self, spec: SearchSpec, study: Any = None) -> None:
        self._spec = spec
        self._given = study
        self._trials: dict[int, Any] = {}  # index -> its live optuna.Trial

    @functools.cached_property
    def _study(self) -> Any:
        """The study, made on the first ask (loading a config only counts `planned`)."""
        import optuna

        from cifar_ops.search import space

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return self._given or optuna.create_study(
            sampler=space.sampler_for(self._spec),
            pruner=space.pruner_for(self._spec),
            direction=self._spec.objective_direction,
        )

    @functools.cached_property
    def _distributions(self) -> dict[str, Any]:
        from cifar_ops.search import space

        return space.distributions(self._spec)

    def planned(self) -> int:
        return self._spec.trials or 0

    def ask(self) -> Point | None:
        from cifar_ops.search.space import point_of

        if len(self._trials) >= self.planned():
            return None
        trial = self._study.ask(self._distributions)
        self._trials[len(self._trials)] = trial
        return point_of(trial.params)

    def tell(self, result: TrialResult) -> None:
        import optuna

        trial = self._trials.get(result.index)
        if trial is None:
            return
        value = result.metrics.get(self._spec.metric)
        if result.status == RunStatus.PRUNED:
            self._study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif result.status == RunStatus.SUCCEEDED and value is not None:
            self._study.tell(trial, value)
        else:
            self._study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def should_stop(self, index: int, epoch: int, metrics: Mapping[str, float]) -> bool:
        trial = self._trials[index]
        trial.report(metrics[self._spec.metric], epoch)
        return bool(trial.should_prune())


class TPESearch(SampledSearch):
    """Tree-structured Parzen estimator: good and bad trials' densities, a point from the good."""

    method = SearchMethod.TPE


class CmaEsSearch(SampledSearch):
    """CMA-ES over the ranges (a listed key is drawn at random alongside)."""

    method = SearchMethod.CMAES


METHODS: dict[SearchMethod, type[GridSearch | RandomSearch | SampledSearch]] = {
    SearchMethod.GRID: GridSearch,
    SearchMethod.RANDOM: RandomSearch,
    SearchMethod.TPE: TPESearch,
    SearchMethod.CMAES: CmaEsSearch,
}


def strategy_for(spec: SearchSpec) -> SearchStrategy:
    """A fresh method for `spec`: asked again from the start, it proposes the same trials."""
    return METHODS[spec.method](spec)
