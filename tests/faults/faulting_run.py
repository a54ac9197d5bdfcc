"""`cifar-ops run` that stops at an exact step of its training for a fault to be injected.

    python -m tests.faults.faulting_run EPOCH BATCH ACTION -- <cifar-ops arguments>

After batch BATCH (1-based) of epoch EPOCH, ACTION runs inside the training loop:
  hold        print `fault: holding` on stderr and wait a few seconds: the test sends a signal
              (SIGKILL, SIGTERM) to this process from outside, so it lands mid-epoch
  fill:DIR    fill the filesystem under DIR until it has no space left, then go on: the run's
              next writes fail as on a full disk
Everything else is the real CLI in a real process: its exit code and message are what a user sees.
"""

from __future__ import annotations

import errno
import sys
import time
from pathlib import Path
from typing import Any

from cifar_ops import progress

HOLD_SECONDS = 5.0  # how long a held run waits for the test's signal before it goes on


def fill(directory: Path) -> None:
    """Write a filler file under `directory` until the filesystem refuses with ENOSPC."""
    block = b"\0" * (1 << 16)
    with (directory / "filler").open("wb", buffering=0) as out:
        try:
            while True:
                out.write(block)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    print("fault: disk full", file=sys.stderr, flush=True)


def _faulting_progress(epoch: int, batch: int, action: str) -> type[progress.RichProgress]:
    base = progress.RichProgress

    class FaultingProgress(base):  # type: ignore[misc, valid-type]
        done = False
        current = 0

        def on_epoch_begin(self, index: int, logs: dict[str, Any] | None = None) -> None:
            super().on_epoch_begin(index, logs)
            self.current = index + 1

        def on_train_batch_end(self, index: int, logs: dict[str, Any] | None = None) -> None:
            super().on_train_batch_end(index, logs)
            if FaultingProgress.done or (self.current, index + 1) != (epoch, batch):
                return
            FaultingProgress.done = True
            if action == "hold":
                print("fault: holding", file=sys.stderr, flush=True)
                time.sleep(HOLD_SECONDS)
            elif action.startswith("fill:"):
                fill(Path(action.removeprefix("fill:")))
            else:
                raise SystemExit(f"unknown fault action {action!r}")

    return FaultingProgress


def main() -> None:
    epoch, batch, action, separator, *cli_args = sys.argv[1:]
    assert separator == "--", "usage: EPOCH BATCH ACTION -- <cifar-ops arguments>"
    progress.RichProgress = _faulting_progress(int(epoch), int(batch), action)  # type: ignore[misc]
    from cifar_ops.cli import main as cli

    sys.argv = ["cifar-ops", *cli_args]
    cli()


if __name__ == "__main__":
    main()
