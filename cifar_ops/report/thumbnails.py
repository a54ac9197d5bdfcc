"""Small base64 PNG thumbnails of the images behind stored predictions, embedded in the page.

Only the folder source records a file per image (`image_ref`); other sources, or a file that has
moved since training, get `None` and the report shows a labelled placeholder instead.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

THUMBNAIL_PIXELS = 64


def thumbnail_data_uri(image_ref: str | None, size: int = THUMBNAIL_PIXELS) -> str | None:
    """A `data:image/png;base64,...` URI of the file shrunk to `size` pixels; None if unreadable."""
    if not image_ref:
        return None
    path = Path(image_ref)
    try:
        with Image.open(path) as image:
            thumb = image.convert("RGB")
            thumb.thumbnail((size, size), Image.Resampling.NEAREST)
            buffer = io.BytesIO()
            thumb.save(buffer, format="PNG")
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
