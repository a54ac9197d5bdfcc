"""Run and search configs: strict pydantic models, YAML loading, `--set` overrides, grid expansion.

A config file is a run config; a file with a `search:` section is a search whose trials are run
configs. `base: other.yaml` (relative to the file) is deep-merged under a file's own keys, so a grid
can reuse a model's config. Every error names the file, the dotted key, the bad value and what is
allowed, and raises `ConfigError` (CLI exit code 2).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from cifar_ops.errors import ConfigError

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
OpenFraction = Annotated[float, Field(gt=0.0, lt=1.0)]
# A Kubernetes resource quantity; `--set resources.cpu=8` parses as a number, kept as text.
Quantity = Annotated[
    str,
    BeforeValidator(lambda v: str(v) if isinstance(v, int | float) else v),
    Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"),
]
LabelValue = Annotated[str, Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")]


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --- data ---------------------------------------------------------------------------------------


class DataConfig(Strict):
    source: Literal["cifar10", "folder", "synthetic"] = "cifar10"
    dir: str | None = None  # folder root, or where cifar-10-python.tar.gz lies / is cached
    limit: PositiveInt | None = None  # cap on images per split (smoke runs)
    validation_split: OpenFraction = 0.2  # of the training images, stratified
    test_split: OpenFraction = 0.2  # held out when the source has no test split
    image_size: PositiveInt = 32  # pixels; folder images are resized to this square
    synthetic_images: PositiveInt = 2000  # total images of the synthetic source
    num_classes: PositiveInt = 10  # synthetic source only; others read it from the data

    @model_validator(mode="after")
    def _folder_needs_dir(self) -> DataConfig:
        if self.source == "folder" and not self.dir:
            raise ValueError("data.dir is required when data.source is 'folder'")
        return self


class AugmentationConfig(Strict):
    flip: bool = False  # random horizontal flip
    rotation: Annotated[float, Field(ge=0, le=180)] = 0.0  # degrees, +/-
    width_shift: Fraction = 0.0  # fraction of width, +/-
    height_shift: Fraction = 0.0  # fraction of height, +/-
    zoom: Fraction = 0.0  # fraction, +/-
    crop_padding: NonNegativeInt = 0  # pixels of reflect padding before a random crop
    cutout: NonNegativeInt = 0  # side of a zeroed square, pixels


# --- models: one options class per family, chosen by `name` ----------------------------------


class _ModelBase(Strict):
    dropout: Fraction = 0.0


class SimpleCnnModel(_ModelBase):
    name: Literal["simple_cnn"]
    filters: list[PositiveInt] = [32, 64]
    dense_units: PositiveInt = 128


class Conv4BnModel(_ModelBase):
    name: Literal["conv4_bn"]
    filters: list[PositiveInt] = [32, 32, 64, 64]
    dense_units: PositiveInt = 128


class CustomCnnModel(_ModelBase):
    name: Literal["custom_cnn"]
    filters: list[PositiveInt] = [32, 64, 128]
    dense_units: PositiveInt = 128


class Vgg10Model(_ModelBase):
    name: Literal["vgg10"]
    filters: list[PositiveInt] = [32, 64, 96]  # with Dense 128: seed 004's ~403K parameters
    dense_units: PositiveInt = 128
    batch_norm: bool = False


class ResNet20Model(_ModelBase):
    name: Literal["resnet20"]
    depth: PositiveInt = 20  # 6n+2
    base_filters: PositiveInt = 16

    @field_validator("depth")
    @classmethod
    def _depth_is_6n_plus_2(cls, depth: int) -> int:
        if (depth - 2) % 6:
            raise ValueError("must be 6n+2 (20, 32, 44, 56, ...)")
        return depth


class ResNetWideModel(_ModelBase):
    name: Literal["resnet_wide"]
    filters: list[PositiveInt] = [64, 128, 256, 512]
    dense_units: list[PositiveInt] = [256]


class TransferModel(_ModelBase):
    name: Literal["mobilenetv2", "efficientnetv2b0"]
    input_size: Annotated[int, Field(ge=32, le=512)] = 96  # pixels; images are resized to it
    weights: str = "imagenet"  # imagenet | none | path to a .weights.h5 / .keras file
    dense_units: NonNegativeInt = 0  # hidden units of the head; 0 means none


WHITENED_STEM_FILTERS = 24  # each 2x2x3 patch direction and its negative


class FastModel(_ModelBase):
    name: Literal["fast"]
    widths: list[PositiveInt] = [64, 256, 256]  # airbench-style block widths
    stem_filters: PositiveInt = 24
    batch_norm_momentum: OpenFraction = 0.6
    # A 2x2 stem fitted to the training images' patch covariance (airbench's whitening) instead
    # of a learned one; it has 2 x 4 x channels filters (24 for RGB), which stem_filters must be.
    whiten: bool = False
    # Each conv's first in-channels filters start as the identity (airbench's dirac init), so a
    # fresh group passes its input through; the other filters start random.
    dirac_init: bool = False

    @model_validator(mode="after")
    def _whitened_stem_has_24_filters(self) -> FastModel:
        if self.whiten and self.stem_filters != WHITENED_STEM_FILTERS:
            raise ValueError(
                f"model.stem_filters: a whitened 2x2 stem on RGB images has "
                f"{WHITENED_STEM_FILTERS} filters (2 x 2 x 2 x 3), not {self.stem_filters}; set "
                f"stem_filters: {WHITENED_STEM_FILTERS} or whiten: false"
            )
        return self


ModelConfig = Annotated[
    SimpleCnnModel
    | Conv4BnModel
    | CustomCnnModel
    | Vgg10Model
    | ResNet20Model
    | ResNetWideModel
    | TransferModel
    | FastModel,
    Field(discriminator="name"),
]

MODEL_NAMES = (
    "simple_cnn",
    "conv4_bn",
    "custom_cnn",
    "vgg10",
    "resnet20",
    "resnet_wide",
    "mobilenetv2",
    "efficientnetv2b0",
    "fast",
)


# --- optimisation -------------------------------------------------------------------------------


class OptimizerConfig(Strict):
    name: Literal["sgd", "adam", "adamw"] = "adam"
    learning_rate: PositiveFloat = 1e-3
    momentum: Fraction = 0.0  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: NonNegativeFloat = 0.0  # decoupled for adamw, L2-style for sgd/adam
    # sgd only: BatchNorm shifts (`beta`) learn this many times faster (airbench: 64)
    batch_norm_lr_scale: PositiveFloat = 1.0

    @model_validator(mode="after")
    def _lr_scale_is_for_sgd(self) -> OptimizerConfig:
        if self.batch_norm_lr_scale != 1.0 and self.name != "sgd":
            raise ValueError(
                "optimizer.batch_norm_lr_scale works with name 'sgd' only (adaptive optimizers "
                f"undo a gradient scale); remove it or use sgd, not {self.name!r}"
            )
        return self


class Stage(Strict):
    epochs: PositiveInt
    learning_rate: PositiveFloat


class ScheduleConfig(Strict):
    name: Literal["constant", "piecewise", "cosine", "one_cycle", "plateau"] = "constant"
    stages: list[Stage] = []  # piecewise: consecutive (epochs, learning_rate) stages
    warmup_epochs: NonNegativeFloat = 0.0  # cosine: linear warm-up length, epochs
    min_learning_rate: NonNegativeFloat = 0.0  # cosine / plateau floor
    peak_fraction: OpenFraction = 0.25  # one_cycle: fraction of training spent rising
    start_fraction: OpenFraction = 0.04  # one_cycle: first rate as a fraction of the peak
    factor: OpenFraction = 0.5  # plateau: multiply the rate by this
    patience: PositiveInt = 3  # plateau: epochs without improvement

    @model_validator(mode="after")
    def _piecewise_needs_stages(self) -> ScheduleConfig:
        if self.name == "piecewise" and not self.stages:
            raise ValueError("schedule.stages is required when schedule.name is 'piecewise'")
        return self


class EarlyStoppingConfig(Strict):
    monitor: Literal["val_loss", "val_accuracy"] = "val_accuracy"
    patience: PositiveInt = 5
    restore_best_weights: bool = True


class FineTuneConfig(Strict):
    """Second phase of transfer learning: unfreeze the base's last layers at a lower rate."""

    epochs: PositiveInt
    learning_rate: PositiveFloat
    unfreeze_layers: PositiveInt = 30


class TrainConfig(Strict):
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 64
    label_smoothing: Fraction = 0.0
    early_stopping: EarlyStoppingConfig | None = None
    fine_tune: FineTuneConfig | None = None
    mixed_precision: bool = False
    xla: bool = False
    checkpoint: bool = True  # save every epoch so a retried pod resumes


TtaLevel = Literal["none", "flip", "flip_translate"]


class EvaluationConfig(Strict):
    log_predictions: bool = True  # one warehouse row per test image
    calibration_bins: Annotated[int, Field(ge=2, le=100)] = 15
    # Test-time augmentation: `flip` averages each image with its mirror, `flip_translate` adds
    # one-pixel shifts of both (airbench's levels 1 and 2); evaluate and predict replay it.
    tta: TtaLevel = "none"

    @model_validator(mode="before")
    @classmethod
    def _flip_tta_is_the_old_name(cls, data: Any) -> Any:
        """`flip_tta: true|false` (before `tta`) still reads, as tta `flip` or `none`."""
        if not isinstance(data, dict) or "flip_tta" not in data:
            return data
        if "tta" in data:
            raise ValueError("evaluation.flip_tta is the old name of evaluation.tta; give only tta")
        data = dict(data)
        data["tta"] = "flip" if data.pop("flip_tta") is True else "none"
        return data


class MonitoringConfig(Strict):
    port: Annotated[int, Field(ge=0, le=65535)] | None = None  # serve /metrics here
    pushgateway: str | None = None  # URL; push at each epoch end and at run end


class ExecutorConfig(Strict):
    kind: Literal["local", "kubernetes"] = "local"
    namespace: str | None = None  # kubernetes: defaults to the kubeconfig's namespace
    image: str | None = None  # kubernetes: defaults to the chart's image


class ResourcesConfig(Strict):
    gpus: NonNegativeInt = 1  # nvidia.com/gpu limit
    cpu: Quantity = "4"  # Kubernetes quantity: 4, 500m, 2.5
    memory: Quantity = "16Gi"
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    priority_class: str | None = None
    active_deadline_seconds: PositiveInt | None = 86400
    backoff_limit: NonNegativeInt = 3


# Sections that say where or how a run is watched, not what it computes: left out of the hash.
_UNHASHED = {"experiment", "description", "monitoring", "executor", "resources"}


class RunConfig(Strict):
    experiment: LabelValue
    description: str = ""
    seed: int = 42
    data: DataConfig = DataConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    model: ModelConfig
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainConfig = TrainConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    executor: ExecutorConfig = ExecutorConfig()
    resources: ResourcesConfig = ResourcesConfig()

    @model_validator(mode="after")
    def _stages_cover_epochs(self) -> RunConfig:
        stages = self.schedule.stages
        if self.schedule.name == "piecewise" and sum(s.epochs for s in stages) != self.train.epochs:
            total = sum(s.epochs for s in stages)
            raise ValueError(
                f"schedule.stages cover {total} epochs but train.epochs is {self.train.epochs}"
            )
        return self

    def config_hash(self) -> str:
        """Stable SHA-256 of what the run computes (not where it runs or how it is watched)."""
        payload = self.model_dump(mode="json", exclude=_UNHASHED)
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


# --- searches -----------------------------------------------------------------------------------


class Distribution(Strict):
    """A random-search range: exactly one of uniform, log_uniform or int_uniform as [low, high]."""

    uniform: tuple[float, float] | None = None
    log_uniform: tuple[PositiveFloat, PositiveFloat] | None = None
    int_uniform: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Distribution:
        given = [k for k in ("uniform", "log_uniform", "int_uniform") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of uniform, log_uniform, int_uniform: [low, high]")
        low, high = getattr(self, given[0])
        if low > high:
            raise ValueError(f"{given[0]} low {low} is above high {high}")
        return self

    def sample(self, rng: random.Random) -> float | int:
        if self.uniform:
            return rng.uniform(*self.uniform)
        if self.log_uniform:
            low, high = self.log_uniform
            return float(10 ** rng.uniform(_log10(low), _log10(high)))
        assert self.int_uniform is not None
        return rng.randint(*self.int_uniform)


def _log10(x: float) -> float:
    import math

    return math.log10(x)


class SearchSpec(Strict):
    method: Literal["grid", "random"] = "grid"
    parameters: dict[str, list[Any] | Distribution]  # dotted run-config key -> values or range
    trials: PositiveInt | None = None  # random: how many; grid: derived
    seed: int = 0  # random: sampling seed
    parallelism: PositiveInt = 1  # trials at once (Indexed Job parallelism, local --parallel)

    @model_validator(mode="after")
    def _method_fits(self) -> SearchSpec:
        if not self.parameters:
            raise ValueError("search.parameters must name at least one key")
        if self.method == "grid":
            for key, values in self.parameters.items():
                if not isinstance(values, list) or not values:
                    raise ValueError(f"grid parameter {key!r} needs a non-empty list of values")
            if self.trials is not None:
                raise ValueError("search.trials is for method 'random'; a grid runs every point")
        elif self.trials is None:
            raise ValueError("search.trials is required when search.method is 'random'")
        return self


class Trial(BaseModel):
    """One point of a search: its index (the Indexed Job completion index) and its run config."""

    index: int
    params: dict[str, Any]
    config: RunConfig


class SearchConfig(BaseModel):
    """A search: the base run config, the search spec, and the path it came from."""

    run: RunConfig
    search: SearchSpec
    trials: list[Trial]

    @property
    def experiment(self) -> str:
        return self.run.experiment


# --- loading ------------------------------------------------------------------------------------


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig | SearchConfig:
    """Load a run or search config from YAML, apply `key=value` overrides, validate strictly."""
    path = Path(path)
    raw = _read_with_base(path, seen=())
    for item in overrides or []:
        key, value = _parse_override(item, path)
        _set_dotted(raw, key, value, path)
    search_raw = raw.pop("search", None)
    run = _validate_run(raw, path)
    if search_raw is None:
        return run
    return _build_search(run, raw, search_raw, path)


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


def _set_dotted(raw: dict[str, Any], key: str, value: Any, path: Path) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set inside {part!r}: it is a value", path=str(path), key=key)
        node = child
    node[parts[-1]] = value


def _validate_run(raw: dict[str, Any], path: Path) -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, RunConfig), path=str(path)) from None


def _build_search(run: RunConfig, raw: dict[str, Any], search_raw: Any, path: Path) -> SearchConfig:
    try:
        spec = SearchSpec.model_validate(search_raw)
    except ValidationError as exc:
        detail = format_validation_error(exc, SearchSpec, "search.")
        raise ConfigError(detail, path=str(path)) from None
    for key in spec.parameters:
        if key.split(".")[0] in ("experiment", "search"):
            raise ConfigError(f"cannot search over {key!r}", path=str(path), key=f"search.{key}")
    trials = []
    for index, params in enumerate(_points(spec)):
        trial_raw = json.loads(json.dumps(raw))  # deep copy of plain YAML data
        for key, value in params.items():
            _set_dotted(trial_raw, key, value, path)
        try:
            trial_config = RunConfig.model_validate(trial_raw)
        except ValidationError as exc:
            point = ", ".join(f"{k}={v!r}" for k, v in params.items())
            detail = format_validation_error(exc, RunConfig)
            message = f"search trial {index} ({point}): {detail}"
            raise ConfigError(message, path=str(path)) from None
        trials.append(Trial(index=index, params=params, config=trial_config))
    return SearchConfig(run=run, search=spec, trials=trials)


def _points(spec: SearchSpec) -> list[dict[str, Any]]:
    keys = list(spec.parameters)
    if spec.method == "grid":
        value_lists = [spec.parameters[k] for k in keys]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*value_lists)]
    rng = random.Random(spec.seed)
    points = []
    for _ in range(spec.trials or 0):
        point = {}
        for key in keys:
            dist = spec.parameters[key]
            point[key] = rng.choice(dist) if isinstance(dist, list) else dist.sample(rng)
        points.append(point)
    return points


# --- error messages -----------------------------------------------------------------------------


def format_validation_error(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """One line per problem: dotted key, the value given, and what is allowed there."""
    lines = []
    for error in exc.errors():
        loc = _strip_union_tags(error["loc"])
        key = prefix + ".".join(str(p) for p in loc) if loc else prefix.rstrip(".") or "(top)"
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, error["loc"][:-1])
            hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
            lines.append(f"{key}: unknown key{hint}")
            continue
        if error["type"] == "union_tag_invalid" or (
            error["type"] == "union_tag_not_found" and loc and loc[-1] == "model"
        ):
            lines.append(f"{key}.name: must be one of {', '.join(MODEL_NAMES)}")
            continue
        message = error["msg"].removeprefix("Value error, ")
        given = error.get("input")
        shown = "" if isinstance(given, dict) or error["type"] == "missing" else f"got {given!r}: "
        lines.append(f"{key}: {shown}{message}")
    return "\n".join(lines)


def _strip_union_tags(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Pydantic puts the family in the location (model.vgg10.x); users wrote model.x."""
    cleaned: list[Any] = []
    for i, part in enumerate(loc):
        if i and loc[i - 1] == "model" and part in MODEL_NAMES:
            continue
        if part in ("list[any]", "Distribution", "list[Any]"):
            continue
        cleaned.append(part)
    return tuple(cleaned)


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model at `loc` (pydantic's location, union tags included)."""
    current: Any = model
    for part in loc:
        if part in MODEL_NAMES and not isinstance(current, type):
            current = _family(current, str(part))
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _model_type(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _family(union: Any, name: str) -> Any:
    """The member of the model-family union whose `name` literal is `name`."""
    for candidate in getattr(union, "__args__", ()) or ():
        field = getattr(candidate, "model_fields", {}).get("name")
        if field is not None and name in getattr(field.annotation, "__args__", ()):
            return candidate
    return union


def _model_type(annotation: Any) -> Any:
    """The BaseModel inside `X | None`; the union of model families stays as it is."""
    models = [
        candidate
        for candidate in getattr(annotation, "__args__", ()) or ()
        if isinstance(candidate, type) and issubclass(candidate, BaseModel)
    ]
    return models[0] if len(models) == 1 else annotation
