"""Object-store URLs versus local paths (no fsspec import: the CLI's --help stays light)."""

from __future__ import annotations

import re

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_url(text: str | None) -> bool:
    """Whether `text` names an object (scheme://...) rather than a local path; file:// is local."""
    if not text:
        return False
    return bool(_SCHEME.match(text)) and not text.lower().startswith("file://")


def join(base: str, *parts: str) -> str:
    """`base/part/...` with exactly one slash between the pieces."""
    pieces = [base.rstrip("/"), *(p.strip("/") for p in parts if p.strip("/"))]
    return "/".join(pieces)
