"""`cifar-ops run` whose progress display also stops PostgreSQL at a chosen point of the run.

    python -m tests.faults.stopping_run WHEN STOP_COMMAND_JSON -- <cifar-ops arguments>

WHEN is `epoch:E:batch:B` (1-based epoch, after batch B of it: mid-epoch) or `train_end` (after
the last epoch is logged, before the evaluation is computed and written). Everything else is the
real CLI in a real process: its exit code and message are what a user would see.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from cifar_ops import progress


def _stopping_progress(when: str, command: list[str]) -> type[progress.RichProgress]:
    base = progress.RichProgress

    class StoppingProgress(base):  # type: ignore[misc, valid-type]
        stopped = False
        epoch = 0

        def _stop(self) -> None:
            if not StoppingProgress.stopped:
                StoppingProgress.stopped = True
                subprocess.run(command, check=True, capture_output=True)
                print("fault: PostgreSQL stopped", file=sys.stderr, flush=True)

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            super().on_epoch_begin(epoch, logs)
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            super().on_train_batch_end(batch, logs)
            if when.startswith("epoch:"):
                _, epoch, _, after = when.split(":")
                if self.epoch == int(epoch) and batch + 1 == int(after):
                    self._stop()

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            super().on_train_end(logs)
            if when == "train_end":
                self._stop()

    return StoppingProgress


def main() -> None:
    when, command_json, separator, *cli_args = sys.argv[1:]
    assert separator == "--", "usage: WHEN STOP_COMMAND_JSON -- <cifar-ops arguments>"
    progress.RichProgress = _stopping_progress(when, json.loads(command_json))  # type: ignore[misc]
    from cifar_ops.cli import main as cli

    sys.argv = ["cifar-ops", *cli_args]
    cli()


if __name__ == "__main__":
    main()
