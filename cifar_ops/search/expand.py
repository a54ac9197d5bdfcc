"""From a search spec to its trials' run configs, refusing a search too large to list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cifar_ops.config.keys import set_dotted
from cifar_ops.config.messages import format_validation_error
from cifar_ops.config.schema import RunConfig, SearchConfig, SearchSpec, Trial
from cifar_ops.errors import ConfigError
from cifar_ops.search.methods import SearchStrategy, strategy_for
from cifar_ops.vocabulary import SearchMethod

MAX_TRIALS = 10_000  # trials one search may have; each is a validated config and a warehouse row
_UNSEARCHABLE = ("experiment", "search")  # the search's identity, not a training recipe


def search_config(
    run: RunConfig, base: dict[str, Any], spec: SearchSpec, path: Path | str
) -> SearchConfig:
    """The search with its trials listed (none for an adaptive method, which decides later).

    `base` is the merged YAML of the run without `search:`; every trial is built from it.
    """
    for key in spec.parameters:
        if key.split(".")[0] in _UNSEARCHABLE:
            raise ConfigError(f"cannot search over {key!r}", path=str(path), key=f"search.{key}")
    strategy = strategy_for(spec)
    check_size(strategy, spec, path)
    trials: list[Trial] = []
    while not strategy.adaptive and (point := strategy.ask()) is not None:
        trials.append(build_trial(base, len(trials), point, path))
    return SearchConfig(run=run, search=spec, trials=trials, base=base)


def check_size(strategy: SearchStrategy, spec: SearchSpec, path: Path | str) -> int:
    """The number of trials, counted before any is built; above `MAX_TRIALS` a `ConfigError`."""
    count = strategy.planned()
    if count <= MAX_TRIALS:
        return count
    if spec.method == SearchMethod.GRID:
        sizes = " x ".join(str(len(v)) for v in spec.parameters.values() if isinstance(v, list))
        raise ConfigError(
            f"the grid has {sizes} = {count} points; a search runs at most {MAX_TRIALS} trials: "
            f"list fewer values or use method random",
            path=str(path),
            key="search.parameters",
        )
    raise ConfigError(
        f"got {count}: a search runs at most {MAX_TRIALS} trials",
        path=str(path),
        key="search.trials",
    )


def build_trial(
    base: dict[str, Any], index: int, point: dict[str, Any], path: Path | str | None
) -> Trial:
    """Trial `index`: the base YAML with the point's dotted keys set, validated as a run."""
    raw = json.loads(json.dumps(base))  # a deep copy of plain YAML data
    for key, value in point.items():
        set_dotted(raw, key, value, path or "")
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in point.items())
        detail = format_validation_error(exc, RunConfig)
        message = f"search trial {index} ({shown}): {detail}"
        raise ConfigError(message, path=str(path) if path else None) from None
    return Trial(index=index, params=point, config=config)
