"""Use a saved `.keras` model: class probabilities for image files, or a full evaluation on a split.

A run saves `classes.json` and `config.json` next to its `model.keras`; with them `evaluate` reads
the data the way the run did (image size, splits, seed) and `predict` names the classes. Without
them the classes are `class_0..` and the model's input size decides the image size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifar_ops.config import DataConfig
from cifar_ops.errors import DataError, ModelError
from cifar_ops.records import EvaluationRecord
from cifar_ops.redaction import redact_url


@dataclass(frozen=True)
class SavedModel:
    """A loaded model with what it needs to be used: class names, input size, the run's config."""

    path: Path
    model: Any
    class_names: list[str]
    image_size: int
    run_config: dict[str, Any] | None


@dataclass(frozen=True)
class ImagePrediction:
    """One image file: its original size and mode, and the model's class probabilities."""

    path: str
    width: int
    height: int
    mode: str
    probabilities: dict[str, float]
    predicted: str
    confidence: float


def load_saved_model(path: str | Path) -> SavedModel:
    """Load a `.keras` file (no compile needed); `ModelError` if it is missing or unreadable."""
    import keras

    import cifar_ops.losses  # noqa: F401  (registers the custom loss a saved model may carry)
    import cifar_ops.models  # noqa: F401  (registers custom layers)
    import cifar_ops.schedules  # noqa: F401  (registers the one-cycle schedule)

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file; pass a .keras file saved by `cifar-ops run`")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        raise ModelError(f"{path}: cannot load the model ({type(exc).__name__}: {exc})") from None
    shape = model.input_shape
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2]:
        raise ModelError(f"{path}: expected a square image input, the model takes {shape}")
    if shape[3] != 3:
        raise ModelError(
            f"{path}: the model takes {shape[3]} channel(s); cifar-ops feeds it RGB images "
            "(3 channels)"
        )
    classes = int(model.output_shape[-1])
    names = _read_json(path.parent / "classes.json")
    if not isinstance(names, list) or len(names) != classes:
        names = [f"class_{i}" for i in range(classes)]
    run_config = _read_json(path.parent / "config.json")
    config = run_config.get("config") if isinstance(run_config, dict) else None
    return SavedModel(path, model, [str(n) for n in names], int(shape[1]), config)


def predict_files(saved: SavedModel, images: list[Path]) -> list[ImagePrediction]:
    """Probabilities for each image file, resized to the model's input (any size and mode)."""
    from PIL import Image

    from cifar_ops.data import load_image_file
    from cifar_ops.evaluation import predict_split

    pixels, described = [], []
    for image_path in images:
        pixels.append(load_image_file(image_path, saved.image_size))
        with Image.open(image_path) as opened:
            described.append((str(image_path), opened.width, opened.height, opened.mode))
    probabilities = predict_split(
        saved.model, np.stack(pixels), tta=tta_of(saved), average=tta_average_of(saved)
    )
    results = []
    for (name, width, height, mode), row in zip(described, probabilities, strict=True):
        best = int(row.argmax())
        results.append(
            ImagePrediction(
                path=name,
                width=width,
                height=height,
                mode=mode,
                probabilities={c: float(p) for c, p in zip(saved.class_names, row, strict=True)},
                predicted=saved.class_names[best],
                confidence=float(row[best]),
            )
        )
    return results


def evaluate_saved_model(
    saved: SavedModel, data_dir: str | Path | None, split: str = "test", *, bins: int = 15
) -> EvaluationRecord:
    """Score a saved model on one split of an image folder or the CIFAR-10 archive."""
    from cifar_ops.data import load_dataset
    from cifar_ops.evaluation import predict_split, score_probabilities

    data, seed = data_config_for(saved, data_dir)
    dataset = load_dataset(data, seed)
    where = redact_url(str(data_dir)) if data_dir is not None else f"the {data.source} data"
    if dataset.class_names != saved.class_names:
        names = saved.path.parent / "classes.json"
        source = str(names) if names.is_file() else f"numbered: no {names.name} beside the model"
        raise DataError(
            f"{where}: classes {dataset.class_names} differ from the model's "
            f"{saved.class_names} ({source})"
        )
    chosen = dataset.split(split)
    if len(chosen) == 0:
        raise DataError(f"{where}: the {split} split has no images")
    probabilities = predict_split(
        saved.model, chosen.images, tta=tta_of(saved), average=tta_average_of(saved)
    )
    return score_probabilities(
        chosen.labels,
        probabilities,
        dataset.class_names,
        split=split,
        bins=bins,
        refs=chosen.refs,
    )


def tta_of(saved: SavedModel) -> str:
    """The test-time augmentation the run scored with (its config.json), to do the same.

    Runs saved before `evaluation.tta` existed recorded `flip_tta: true|false`.
    """
    from typing import get_args

    from cifar_ops.config import TtaLevel

    evaluation = (saved.run_config or {}).get("evaluation") or {}
    if "tta" not in evaluation:
        return "flip" if evaluation.get("flip_tta") else "none"
    level = evaluation["tta"]
    if level not in get_args(TtaLevel):
        raise ModelError(
            f"{saved.path.parent / 'config.json'}: evaluation.tta is {level!r}, expected one of "
            f"{', '.join(get_args(TtaLevel))}"
        )
    return str(level)


def tta_average_of(saved: SavedModel) -> str:
    """How the run combined its TTA views (`evaluation.tta_average`; probabilities before it)."""
    evaluation = (saved.run_config or {}).get("evaluation") or {}
    average = evaluation.get("tta_average", "probabilities")
    if average not in ("probabilities", "logits"):
        raise ModelError(
            f"{saved.path.parent / 'config.json'}: evaluation.tta_average is {average!r}, "
            "expected one of probabilities, logits"
        )
    return str(average)


def data_config_for(saved: SavedModel, data_dir: str | Path | None) -> tuple[DataConfig, int]:
    """The run's data settings pointed at `data_dir`: a CIFAR-10 archive dir, else a folder.

    Without `data_dir`, the run's own source; a folder only when it is an object-store URL (a
    local folder of the training machine is not assumed to be here).
    """
    from cifar_ops.storage.urls import is_url

    recorded = dict((saved.run_config or {}).get("data") or {})
    seed = int((saved.run_config or {}).get("seed", 42))
    recorded.pop("limit", None)
    recorded["image_size"] = saved.image_size
    if data_dir is None:
        if saved.run_config is None:
            raise DataError(
                f"--data-dir is required: {saved.path.parent / 'config.json'} (the run's data "
                "settings) is missing or unreadable"
            )
        if recorded.get("source") not in ("cifar10", "synthetic") and not is_url(
            recorded.get("dir")
        ):
            raise DataError("--data-dir is required: the model's run read an image folder")
    elif is_url(str(data_dir)):
        recorded["source"], recorded["dir"] = "folder", str(data_dir)
    else:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise DataError(f"{data_dir}: no such data directory")
        recorded["source"] = "cifar10" if _looks_like_cifar10(data_dir) else "folder"
        recorded["dir"] = str(data_dir)
    return DataConfig.model_validate(recorded), seed


def _looks_like_cifar10(folder: Path) -> bool:
    return (folder / "cifar-10-batches-py").is_dir() or (folder / "cifar-10-python.tar.gz").exists()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
