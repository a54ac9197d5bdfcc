"""A process that starts a run in the warehouse and stays alive holding it, until killed.

    python -m tests.faults.holding_run URL CONFIG_YAML RUN_ID

It goes through the real `Store.start_run` (lock and all) with the RunStart `cifar-ops run` would
send for that config, prints `holding` and sleeps: the first of two writers on one run id.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cifar_ops.config import RunConfig, load_config
from cifar_ops.records import RunStart
from cifar_ops.warehouse import open_store


def main() -> None:
    url, config_path, run_id = sys.argv[1:]
    config = load_config(Path(config_path), [])
    assert isinstance(config, RunConfig)
    store = open_store(url)
    store.start_run(
        RunStart(
            run_id=run_id,
            experiment=config.experiment,
            model_name=config.model.name,
            config=config.model_dump(mode="json"),
            config_hash=config.config_hash(),
        )
    )
    print("holding", flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
