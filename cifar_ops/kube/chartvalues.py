"""Chart values a user adds to a submission (`executor.values`, `submit --values FILE`), merged
the way `helm -f` merges them, and the effective values the chart will see."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from cifar_ops.errors import UsageError

# Written by submit from the config: a user value there would break what the warehouse records.
RESERVED = {
    "run": "it is written by submit from the config (search.parallelism sets the pods at once)",
    "platform": "submit renders per-experiment releases; install the platform with `helm install`",
}


def merge(base: Mapping[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    """`layer` over `base` as helm merges `-f` files: maps key by key, anything else replaced."""
    merged = dict(base)
    for key, value in layer.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = merge(below, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_values_file(path: Path) -> dict[str, Any]:
    """One `--values` file: a YAML mapping (exit 2 naming the file otherwise)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"--values {path}: cannot read the file ({reason})") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"--values {path}: not YAML ({str(exc).splitlines()[0]})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"--values {path}: a values file is a mapping of chart values")
    reserved = reserved_key(loaded)
    if reserved:
        raise UsageError(f"--values {path}: {reserved}")
    return loaded


def reserved_key(values: Mapping[str, Any]) -> str | None:
    """Why the values cannot be used, when they set a key submit owns."""
    for key, why in RESERVED.items():
        if key in values:
            return f"chart value `{key}` cannot be set here: {why}"
    return None


def values_files(files: Sequence[Path]) -> dict[str, Any]:
    """Each `--values` file in order, merged into one layer."""
    merged: dict[str, Any] = {}
    for path in files:
        merged = merge(merged, load_values_file(Path(path)))
    return merged


def chart_defaults(chart: Path) -> dict[str, Any]:
    """The chart's own values.yaml."""
    loaded = yaml.safe_load((chart / "values.yaml").read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def effective(chart: Path, values: Mapping[str, Any]) -> dict[str, Any]:
    """What the templates read: the chart's defaults with `values` over them."""
    return merge(chart_defaults(chart), values)


def lookup(values: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """`values["a"]["b"]` for "a.b", or `default` when a level is missing or not a mapping."""
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or node.get(part) is None:
            return default
        node = node[part]
    return node
