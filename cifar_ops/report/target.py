"""Where a report may be written: over a regular file, or as a new file in an existing directory.

The report is written to a temp file beside the target and renamed over it, which would turn a
device node, a pipe or a symlink to one into a regular file (as root, `-o /dev/null` would
replace /dev/null). So anything else is refused before the warehouse is read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cifar_ops.errors import UsageError

# Kernel filesystems: nothing there is a place for a report.
PSEUDO_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))


def check_report_target(output: Path) -> Path:
    """`output` if a report may be written there; `UsageError` (exit 2) naming why not."""
    where = f"--output {str(output)!r}"
    if os.path.lexists(output):
        try:
            mode = os.stat(output).st_mode  # through a symlink: what would be replaced
        except OSError as exc:
            raise UsageError(f"{where}: {exc.strerror} (a broken symbolic link?)") from None
        if stat.S_ISDIR(mode):
            raise UsageError(f"{where} is a directory: give a file name, e.g. report.html")
        if not stat.S_ISREG(mode):
            raise UsageError(
                f"{where} is not a regular file (a device, pipe or socket): give a file path"
            )
    parent = output.parent
    if not parent.is_dir():
        raise UsageError(f"{where}: no directory {str(parent)!r} to write it in; create it first")
    real = parent.resolve()
    for root in PSEUDO_ROOTS:
        if real == root or root in real.parents:
            raise UsageError(f"{where} is under {root}, a kernel filesystem: write it elsewhere")
    return output
