"""The executor protocol: take a loaded run or search and make it happen somewhere."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cifar_ops.config import RunConfig, SearchConfig
from cifar_ops.vocabulary import ExecutorKind


@dataclass(frozen=True)
class Launch:
    """What a command asks of an executor besides the config; each reads what applies to it."""

    config_path: Path  # named in errors
    database_url: str | None = None  # the warehouse; default `settings.database_url()`
    run_id: str | None = None  # a single run's id (a resume); search trials get their own
    parallel: int = 1  # in-process executors: search trials at once
    callbacks: Sequence[Any] = ()  # in-process executors: Keras callbacks (progress)
    namespace: str | None = None  # cluster executors: default `executor.namespace`
    dry_run: bool = False  # cluster executors: render what would be submitted, change nothing
    values_files: Sequence[Path] = ()  # cluster executors: chart values over submit's (`helm -f`)


class Executor(Protocol):
    """Runs configs somewhere and records them in the warehouse under its own `kind`."""

    kind: ExecutorKind
    in_process: bool  # trains in this process (`run`), else hands runs to a cluster (`submit`)

    def launch(self, loaded: RunConfig | SearchConfig, launch: Launch) -> Any:
        """Start the run or the search's trials; returns what the command shows (outcomes for an
        in-process executor, the submission for a cluster one)."""
        ...
