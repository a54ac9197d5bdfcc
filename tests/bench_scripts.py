"""Bench scripts are files under bench/, not a package: their tests load them by path."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.conftest import REPO


def load_bench(script: str) -> ModuleType:
    """bench/<script>.py as a module, registered under its name (dataclasses resolve their
    annotations through sys.modules)."""
    spec = importlib.util.spec_from_file_location(f"bench_{script}", REPO / f"bench/{script}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
