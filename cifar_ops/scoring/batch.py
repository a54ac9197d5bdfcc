"""Score an image source with a saved model, a batch at a time, into the warehouse.

While the model scores one batch, the next is read and decoded in a thread pool. Each batch's rows
are one bulk upsert keyed by (scoring id, path); a scoring is identified by the model file's
sha256, the data location and k, so running the same command again resumes: paths already
written are skipped. Unreadable images are reported, not scored; the rest are written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifar_ops.errors import DataError
from cifar_ops.inference import SavedModel, tta_of
from cifar_ops.redaction import redact_url
from cifar_ops.scoring.sources import ImageSource
from cifar_ops.warehouse import scores
from cifar_ops.warehouse.store import Store

DEFAULT_BATCH = 256
DEFAULT_TOP_K = 3


@dataclass
class ScoreResult:
    """What one `score_images` call did: rows written now, before, and images it could not read."""

    scoring_id: str
    images: int
    scored: int = 0
    already_scored: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float | None:
        return self.scored / self.seconds if self.scored and self.seconds > 0 else None


@dataclass(frozen=True)
class _Decoded:
    path: str
    pixels: np.ndarray
    width: int
    height: int
    mode: str


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def scoring_id(model_sha256: str, root: str, top_k: int) -> str:
    """The same model file on the same data with the same k is the same scoring."""
    key = json.dumps([model_sha256, root.rstrip("/"), top_k])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def score_images(
    saved: SavedModel,
    source: ImageSource,
    store: Store,
    *,
    model_ref: str,
    registered: tuple[str, int] | None = None,
    batch_size: int = DEFAULT_BATCH,
    top_k: int = DEFAULT_TOP_K,
    on_batch: Callable[[int], None] | None = None,
) -> ScoreResult:
    """Score every image of `source` not yet written for this scoring; `on_batch(n)` after each
    batch of n images (read or not) for a progress bar."""
    from cifar_ops.evaluation import predict_split

    k = max(1, min(top_k, len(saved.class_names)))
    sha = file_sha256(saved.path)
    header = scores.ScoringHeader(
        scoring_id=scoring_id(sha, source.root, k),
        model_ref=redact_url(model_ref),
        model_sha256=sha,
        registered_name=registered[0] if registered else None,
        registered_version=registered[1] if registered else None,
        data_location=redact_url(source.root),
        class_names=list(saved.class_names),
        top_k=k,
        image_count=len(source.paths),
    )
    done = scores.begin(store, header)
    todo = [path for path in source.paths if path not in done]
    result = ScoreResult(
        header.scoring_id, len(source.paths), already_scored=len(source.paths) - len(todo)
    )
    if on_batch is not None and result.already_scored:
        on_batch(result.already_scored)
    tta = tta_of(saved)
    started = time.perf_counter()
    for names, decoded in _decoded_batches(source, todo, batch_size, saved.image_size):
        good = [d for d in decoded if isinstance(d, _Decoded)]
        result.unreadable += [d for d in decoded if isinstance(d, tuple)]
        if good:
            pixels = np.stack([d.pixels for d in good])
            probabilities = predict_split(saved.model, pixels, tta=tta)
            scores.write_rows(store, _rows(header.scoring_id, good, probabilities, saved, k))
            result.scored += len(good)
        if on_batch is not None:
            on_batch(len(names))
    result.seconds = time.perf_counter() - started
    return result


def _rows(
    scoring: str, decoded: list[_Decoded], probabilities: np.ndarray, saved: SavedModel, k: int
) -> list[tuple[Any, ...]]:
    names = saved.class_names
    ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    rows = []
    for item, row, order in zip(decoded, probabilities, ranked, strict=True):
        best = int(order[0])
        top = [[names[int(i)], round(float(row[i]), 6)] for i in order]
        confidence = min(1.0, max(0.0, float(row[best])))
        rows.append(
            (scoring, item.path, names[best], best, confidence, json.dumps(top), item.width,
             item.height, item.mode)
        )  # fmt: skip
    return rows


def _decoded_batches(
    source: ImageSource, paths: list[str], batch_size: int, size: int
) -> Iterator[tuple[list[str], list[_Decoded | tuple[str, str]]]]:
    """Batches of decoded images (or (path, reason) for those that could not be), the next batch
    read and decoded while the caller scores this one."""
    batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    if not batches:
        return
    workers = min(16, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="score-decode") as pool:

        def start(names: list[str]) -> Future[list[_Decoded | tuple[str, str]]]:
            def run() -> list[_Decoded | tuple[str, str]]:
                contents = source.read(names)
                pairs = zip(names, contents, strict=True)
                return list(pool.map(lambda pair: _decode(pair[0], pair[1], size), pairs))

            return pool.submit(run)

        pending = start(batches[0])
        for index, names in enumerate(batches):
            current = pending.result()
            if index + 1 < len(batches):
                pending = start(batches[index + 1])
            yield names, current


def _decode(path: str, content: bytes | str, size: int) -> _Decoded | tuple[str, str]:
    from PIL import Image

    from cifar_ops.data import load_image_file

    if isinstance(content, str):
        return path, content
    try:
        with Image.open(io.BytesIO(content)) as opened:
            width, height, mode = opened.width, opened.height, opened.mode
        pixels = load_image_file(io.BytesIO(content), size)
    except DataError as exc:
        return path, str(exc).split(": ", 1)[-1]
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return path, f"cannot read image ({exc})"
    return _Decoded(path, pixels, width, height, mode)
