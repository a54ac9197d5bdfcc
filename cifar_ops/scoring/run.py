"""One scoring from start to files: what `cifar-ops score` and a scoring pod both call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cifar_ops.errors import DataError
from cifar_ops.redaction import redact_url
from cifar_ops.scoring.batch import DEFAULT_BATCH, DEFAULT_TOP_K, ScoreResult

_SHOWN_UNREADABLE = 5


@dataclass(frozen=True)
class ScoringRequest:
    """What to score with what: any model reference, a folder or prefix, where the files go."""

    model: str
    data_dir: str
    output: str | None = None
    batch_size: int = DEFAULT_BATCH
    top_k: int = DEFAULT_TOP_K


def load_model(reference: str) -> tuple[object, tuple[str, int] | None]:
    """The loaded model of any model reference, and its (name, version) when registered."""
    from cifar_ops.inference import load_saved_model
    from cifar_ops.storage.models import MODELS_SCHEME, local_model

    registered = None
    location = reference
    if reference.startswith(MODELS_SCHEME):
        from cifar_ops.warehouse.registry import resolve_reference

        version = resolve_reference(reference)
        registered, location = (version.name, version.version), version.model_uri
    return load_saved_model(local_model(location)), registered


def run_scoring(
    request: ScoringRequest,
    *,
    database_url: str | None = None,
    on_total: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[ScoreResult, list[str]]:
    """Load the model, list the images, score what is not yet scored, write the files, record
    the throughput; returns the result and the files written."""
    from cifar_ops.scoring.batch import score_images
    from cifar_ops.scoring.output import default_location, write_files
    from cifar_ops.scoring.sources import open_source
    from cifar_ops.warehouse import open_store, scores

    saved, registered = load_model(request.model)
    source = open_source(request.data_dir)
    if on_total is not None:
        on_total(len(source.paths))
    with open_store(database_url) as store:
        result = score_images(
            saved,  # type: ignore[arg-type]
            source,
            store,
            model_ref=request.model,
            registered=registered,
            batch_size=request.batch_size,
            top_k=request.top_k,
            on_batch=on_batch,
        )
        location = request.output or default_location(result.scoring_id)
        files = write_files(*scores.rows(store, result.scoring_id), location)
        scores.finish(
            store,
            result.scoring_id,
            images_per_second=result.images_per_second,
            output_uri=redact_url(location),
        )
    return result, files


def require_readable(result: ScoreResult, data_dir: str) -> None:
    """`DataError` (exit 3) naming the images that could not be read; the rest are written, and
    the same scoring run again scores only these."""
    if not result.unreadable:
        return
    shown = "; ".join(f"{p}: {r}" for p, r in result.unreadable[:_SHOWN_UNREADABLE])
    more = len(result.unreadable) - _SHOWN_UNREADABLE
    raise DataError(
        f"{len(result.unreadable)} image(s) under {redact_url(data_dir)} could not be read "
        f"and were not scored ({shown}{f'; and {more} more' if more > 0 else ''}); "
        "replace or delete them and run again to score the rest"
    )
