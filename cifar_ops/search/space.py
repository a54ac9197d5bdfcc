"""A search spec in Optuna's terms: its distributions, sampler and pruner.

The parameter syntax maps one to one: a list is a categorical choice, `uniform` a float range,
`log_uniform` a float range sampled on a log scale, `int_uniform` an integer range. A listed
value Optuna cannot store as a choice (a list or a mapping) is stored as its JSON text and
decoded in `point_of`, so a trial's point is what the YAML said.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cifar_ops.vocabulary import SearchMethod, SearchPruner

if TYPE_CHECKING:
    import optuna

    from cifar_ops.config.schema import SearchSpec

_JSON_PREFIX = "json:"  # marks a listed value stored as its JSON text


def distributions(spec: SearchSpec) -> dict[str, optuna.distributions.BaseDistribution]:
    """Dotted key -> the Optuna distribution of its values or range."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for key, space in spec.parameters.items():
        if isinstance(space, list):
            out[key] = CategoricalDistribution([_choice(value) for value in space])
        elif space.uniform:
            out[key] = FloatDistribution(*space.uniform)
        elif space.log_uniform:
            out[key] = FloatDistribution(*space.log_uniform, log=True)
        else:
            assert space.int_uniform is not None
            out[key] = IntDistribution(*space.int_uniform)
    return out


def encoded(point: dict[str, Any]) -> dict[str, Any]:
    """A point as Optuna stores it (for enqueueing a listed grid or random trial)."""
    return {key: _choice(value) for key, value in point.items()}


def point_of(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's stored params back as the run-config values the YAML gave."""
    return {key: _decoded(value) for key, value in params.items()}


def sampler_for(spec: SearchSpec, asked: int = 0) -> optuna.samplers.BaseSampler:
    """TPE or CMA-ES for the adaptive methods; grid and random trials are enqueued, so their
    sampler only runs if none is waiting (never, within the budget).

    Seeded with `search.seed` plus `asked` (the trials the study holds): workers in other
    processes then draw different points, and a study asked in order repeats itself.
    """
    import optuna

    seed = spec.seed + asked

    if spec.method == SearchMethod.TPE:
        startup = min(10, max(2, (spec.trials or 0) // 4))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    if spec.method == SearchMethod.CMAES:
        fallback = optuna.samplers.RandomSampler(seed=seed)  # categorical keys
        return optuna.samplers.CmaEsSampler(
            seed=seed, independent_sampler=fallback, warn_independent_sampling=False
        )
    return optuna.samplers.RandomSampler(seed=seed)


def pruner_for(spec: SearchSpec) -> optuna.pruners.BasePruner:
    """The spec's pruner over epochs (Optuna's steps): min_epochs is the least any trial runs."""
    import optuna

    settings = spec.pruning
    if spec.pruner == SearchPruner.MEDIAN:
        return optuna.pruners.MedianPruner(
            n_startup_trials=settings.warmup_trials, n_warmup_steps=settings.min_epochs - 1
        )
    if spec.pruner == SearchPruner.ASHA:
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=settings.min_epochs, reduction_factor=settings.reduction_factor
        )
    if spec.pruner == SearchPruner.HYPERBAND:
        return optuna.pruners.HyperbandPruner(
            min_resource=settings.min_epochs,
            max_resource="auto",
            reduction_factor=settings.reduction_factor,
        )
    return optuna.pruners.NopPruner()


def sampler_name(spec: SearchSpec) -> str:
    """What the warehouse records as the search's sampler (Optuna's class name)."""
    names = {SearchMethod.TPE: "TPESampler", SearchMethod.CMAES: "CmaEsSampler"}
    return names.get(spec.method, f"enqueued {spec.method}")


def _choice(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return _JSON_PREFIX + json.dumps(value, sort_keys=True)


def _decoded(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_JSON_PREFIX):
        return json.loads(value[len(_JSON_PREFIX) :])
    return value
