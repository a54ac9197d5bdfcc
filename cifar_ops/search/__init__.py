"""Searches: expanding a search into trials, skipping what already succeeded, registering it.

`methods` holds the ask/tell interface and grid and random behind it, `expand` lists a search's
trials when its config is loaded (refusing more than `MAX_TRIALS`), `study` runs one: the trials
still to run, their results, and the warehouse's record of the search. Both executors use it.
"""

from cifar_ops.search.expand import MAX_TRIALS, build_trial, check_size, search_config
from cifar_ops.search.methods import (
    METHODS,
    GridSearch,
    Point,
    RandomSearch,
    SearchStrategy,
    TrialResult,
    strategy_for,
)
from cifar_ops.search.study import SearchRegistry, Study, register

__all__ = [
    "MAX_TRIALS",
    "METHODS",
    "GridSearch",
    "Point",
    "RandomSearch",
    "SearchRegistry",
    "SearchStrategy",
    "Study",
    "TrialResult",
    "build_trial",
    "check_size",
    "register",
    "search_config",
    "strategy_for",
]
