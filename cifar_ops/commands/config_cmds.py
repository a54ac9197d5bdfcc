"""`validate`: check a run or search config without running anything."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from cifar_ops.commands.output import CONFIG_OPTION, JSON_OPTION, SET_OPTION, console, print_json
from cifar_ops.config import SearchConfig, load_config


def register(app: typer.Typer) -> None:
    app.command()(validate)


def validate(
    config: Path = CONFIG_OPTION,
    overrides: list[str] = SET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Validate a config; print its experiment, model, hash and (for a search) its trials."""
    loaded = load_config(config, overrides)
    trials = loaded.trials if isinstance(loaded, SearchConfig) else []
    run = loaded.run if isinstance(loaded, SearchConfig) else loaded
    summary = {
        "path": str(config),
        "experiment": run.experiment,
        "model": run.model.name,
        "kind": "search" if isinstance(loaded, SearchConfig) else "run",
        "config_hash": run.config_hash(),
        "trials": [
            {"index": t.index, "params": t.params, "config_hash": t.config.config_hash()}
            for t in trials
        ],
    }
    if as_json:
        print_json(summary)
        return
    console.print(
        Text.assemble(
            ("valid", "green"),
            f" {config}: {summary['kind']} ",
            (run.experiment, "bold"),
            f", model {run.model.name}, hash {summary['config_hash'][:12]}",
        ),
        soft_wrap=True,
    )
    if isinstance(loaded, SearchConfig) and loaded.search.adaptive:
        spec = loaded.search
        console.print(
            f"{spec.trials} trials picked by {spec.method} as results come in "
            f"(pruner {spec.pruner}, {spec.metric}, {spec.objective_direction})"
        )
    if trials:
        table = Table("trial", *[str(k) for k in trials[0].params], "hash")
        for trial in trials:
            values = [str(v) for v in trial.params.values()]
            table.add_row(str(trial.index), *values, trial.config.config_hash()[:12])
        console.print(table)
