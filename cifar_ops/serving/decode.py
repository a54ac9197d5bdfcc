"""An uploaded image's bytes to the model's input, refusing what is not a bounded image.

The pixel count is read from the header before anything is decoded, so a decompression bomb (a
small file that inflates to gigapixels) is refused without being inflated.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np

from cifar_ops.errors import CifarOpsError

DEFAULT_MAX_PIXELS = 40_000_000  # a 50-megapixel camera's frame is refused; phones' are not


class UploadError(CifarOpsError):
    """An upload the server refuses; `status` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    pixels: np.ndarray  # (size, size, 3) uint8
    width: int
    height: int
    mode: str
    format: str | None


def decode_upload(data: bytes, size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Upload:
    """The image resized to `size`; `UploadError` (400, 413) naming what is wrong otherwise."""
    from PIL import Image, UnidentifiedImageError

    from cifar_ops.data import load_image_file
    from cifar_ops.errors import DataError

    if not data:
        raise UploadError("empty upload: send an image file (PNG, JPEG, GIF, BMP, WebP)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                width, height, mode, kind = opened.width, opened.height, opened.mode, opened.format
    except UnidentifiedImageError:
        raise UploadError(
            "not an image: the upload is no format PIL reads (PNG, JPEG, GIF, BMP, WebP, ...)"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UploadError(
            f"image too large to decode (a decompression bomb?): {exc}", status=413
        ) from None
    except (OSError, ValueError) as exc:
        raise UploadError(f"cannot read the image header ({exc})") from None
    if width * height > max_pixels:
        raise UploadError(
            f"image of {width}x{height} pixels is over the {max_pixels:,} pixel limit "
            "(a decompression bomb?); send a smaller image",
            status=413,
        )
    try:
        pixels = load_image_file(io.BytesIO(data), size)
    except DataError as exc:
        reason = str(exc).split(": ", 1)[-1]
        raise UploadError(f"cannot decode the image: {reason}") from None
    return Upload(pixels, width, height, mode, kind)
