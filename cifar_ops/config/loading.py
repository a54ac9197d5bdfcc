"""Reading a config file: YAML, `base:` files merged underneath, `--set` overrides, validation.

A config file is a run config; a file with a `search:` section is a search whose trials are run
configs (expanded by `cifar_ops.search`). `base: other.yaml` (relative to the file) is deep-merged
under a file's own keys, so a grid can reuse a model's config. Every error names the file, the
dotted key, the bad value and what is allowed, and raises `ConfigError` (CLI exit code 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cifar_ops.config.keys import set_dotted
from cifar_ops.config.messages import format_validation_error
from cifar_ops.config.schema import RunConfig, SearchConfig, SearchSpec
from cifar_ops.errors import ConfigError
from cifar_ops.search import expand  # a module: cifar_ops.search imports this package's schema


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig | SearchConfig:
    """Load a run or search config from YAML, apply `key=value` overrides, validate strictly."""
    path = Path(path)
    raw = _read_with_base(path, seen=())
    for item in overrides or []:
        key, value = _parse_override(item, path)
        set_dotted(raw, key, value, path)
    search_raw = raw.pop("search", None)
    run = _validate_run(raw, path)
    if search_raw is None:
        return run
    try:
        spec = SearchSpec.model_validate(search_raw)
    except ValidationError as exc:
        detail = format_validation_error(exc, SearchSpec, "search.")
        raise ConfigError(detail, path=str(path)) from None
    return expand.search_config(run, raw, spec, path)


def load_run_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Like `load_config` but refuses a search file (e.g. for `cifar-ops evaluate`)."""
    config = load_config(path, overrides)
    if isinstance(config, SearchConfig):
        raise ConfigError("is a search config; expected a single run", path=str(path))
    return config


def _read_with_base(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError("no such config file", path=str(path))
    resolved = path.resolve()
    if resolved in seen:
        raise ConfigError("`base` files include each other in a cycle", path=str(path))
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", exc)
        raise ConfigError(f"{where}invalid YAML ({problem})", path=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping of keys", path=str(path))
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError("must be a path to another config file", path=str(path), key="base")
    return _deep_merge(_read_with_base(path.parent / base, seen + (resolved,)), data)


def _deep_merge(under: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(under)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _parse_override(item: str, path: Path) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set takes key=value, got {item!r}", path=str(path))
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def _validate_run(raw: dict[str, Any], path: Path) -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, RunConfig), path=str(path)) from None
