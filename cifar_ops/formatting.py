"""How numbers read in the CLI's tables and the HTML report, defined once for both."""

from __future__ import annotations

import math
from typing import Any


def missing(value: Any) -> bool:
    """Not measured: None, or NaN (a diverged run's metrics)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def pct(value: Any, digits: int = 2, *, absent: str = "-") -> str:
    """A ratio in [0, 1] as a percentage (`0.8765` -> `87.65%`); `absent` when not measured."""
    return absent if missing(value) else f"{float(value) * 100:.{digits}f}%"
