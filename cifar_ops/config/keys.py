"""Dotted keys (`train.epochs`) into plain YAML: how `--set` and search points reach a config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifar_ops.errors import ConfigError


def set_dotted(raw: dict[str, Any], key: str, value: Any, path: Path | str) -> None:
    """Set `a.b.c` in nested dicts, creating the mappings on the way."""
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set inside {part!r}: it is a value", path=str(path), key=key)
        node = child
    node[parts[-1]] = value
