"""Batch scoring: every image of a folder or bucket prefix through a saved model, in batches, into
the warehouse (`score_rows`) and a CSV and Parquet file beside it."""

from cifar_ops.scoring.batch import ScoreResult, score_images
from cifar_ops.scoring.sources import ImageSource, open_source

__all__ = ["ImageSource", "ScoreResult", "open_source", "score_images"]
