"""The config schema: strict pydantic models of a run and of a search's `search:` section.

Unknown keys are errors, and every number a run sizes memory or loops by is bounded, so
`cifar-ops validate` refuses what `cifar-ops run` would crash on. Closed sets of names come from
`cifar_ops.vocabulary` (executor kinds, search methods) or from the models here (`MODEL_NAMES`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from cifar_ops.kube.chartvalues import reserved_key
from cifar_ops.kube.grammar import (
    DnsLabel,
    DnsSubdomain,
    ImageReference,
    LabelKey,
    Quantity,
    Toleration,
)
from cifar_ops.kube.grammar import LabelValue as LabelText
from cifar_ops.redaction import has_credentials
from cifar_ops.vocabulary import ExecutorKind, SearchMethod, SearchPruner

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
OpenFraction = Annotated[float, Field(gt=0.0, lt=1.0)]
LabelValue = Annotated[str, Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")]

# Bounds on what a run allocates or loops over: far above any sensible run, far below a crash.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy's and TensorFlow's seed range
Epochs = Annotated[int, Field(ge=1, le=10_000)]
BatchSize = Annotated[int, Field(ge=1, le=65_536)]
Units = Annotated[int, Field(ge=1, le=16_384)]  # filters of a conv layer, units of a dense one
Pixels = Annotated[int, Field(ge=0, le=512)]  # padding or a square's side, in pixels
ImageSize = Annotated[int, Field(ge=1, le=512)]  # side of the square images a run trains on
SYNTHETIC_BYTES_LIMIT = 8 * 2**30  # the synthetic source holds its uint8 images in memory


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --- data ---------------------------------------------------------------------------------------


class DataConfig(Strict):
    source: Literal["cifar10", "folder", "synthetic"] = "cifar10"
    dir: str | None = None  # folder root (a path or s3://bucket/prefix/), or where the archive lies
    archive: str | None = None  # cifar10: the archive's URL (s3://, https://) instead of Toronto's
    limit: PositiveInt | None = None  # cap on images per split (smoke runs)
    validation_split: OpenFraction = 0.2  # of the training images, stratified
    test_split: OpenFraction = 0.2  # held out when the source has no test split
    image_size: ImageSize = 32  # pixels; folder images are resized to this square
    synthetic_images: Annotated[int, Field(ge=1, le=1_000_000)] = 2000  # synthetic source: total
    num_classes: Annotated[int, Field(ge=2, le=1000)] = 10  # synthetic only; others read the data
    # `host`: tf.data gathers and augments batches beside the model (TensorFlow backend only);
    # `device`: the uint8 training split is held where the model runs and each compiled step
    # gathers and augments its own batch (any Keras backend); `auto`: device when the uint8
    # training split is at most 2 GiB (data/device.py DEVICE_BYTES_LIMIT), else host
    pipeline: Literal["host", "device", "auto"] = "host"

    @field_validator("dir", "archive")
    @classmethod
    def _no_credentials_in_the_location(cls, location: str | None) -> str | None:
        """A config is stored and shown: object-store keys come from the environment only."""
        if location is not None and has_credentials(location):
            raise ValueError(
                "a location with a user, password or secret in it is refused (configs are "
                "stored and shown): give object-store credentials through the environment "
                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from a Secret) or the pod's identity"
            )
        return location

    @model_validator(mode="after")
    def _folder_needs_dir(self) -> DataConfig:
        if self.source == "folder" and not self.dir:
            raise ValueError("data.dir is required when data.source is 'folder'")
        return self

    @model_validator(mode="after")
    def _synthetic_fits_in_memory(self) -> DataConfig:
        size = self.synthetic_images * self.image_size**2 * 3
        if self.source == "synthetic" and size > SYNTHETIC_BYTES_LIMIT:
            raise ValueError(
                f"data.synthetic_images: {self.synthetic_images} images of {self.image_size} px "
                f"take {size / 2**30:.0f} GiB; the synthetic source holds at most "
                f"{SYNTHETIC_BYTES_LIMIT // 2**30} GiB in memory"
            )
        return self


class AugmentationConfig(Strict):
    # random horizontal flip; `alternating`: each image's flip is drawn once and then toggles
    # every epoch (airbench's derandomised flip), keyed on the image index and the epoch
    flip: bool | Literal["alternating"] = False
    rotation: Annotated[float, Field(ge=0, le=180)] = 0.0  # degrees, +/-
    width_shift: Fraction = 0.0  # fraction of width, +/-
    height_shift: Fraction = 0.0  # fraction of height, +/-
    zoom: Fraction = 0.0  # fraction, +/-
    crop_padding: Pixels = 0  # pixels of reflect padding before a random crop
    cutout: Pixels = 0  # side of a zeroed square, pixels


# --- models: one options class per family, chosen by `name` ----------------------------------


class _ModelBase(Strict):
    dropout: Fraction = 0.0


class SimpleCnnModel(_ModelBase):
    name: Literal["simple_cnn"]
    filters: list[Units] = [32, 64]
    dense_units: Units = 128


class Conv4BnModel(_ModelBase):
    name: Literal["conv4_bn"]
    filters: list[Units] = [32, 32, 64, 64]
    dense_units: Units = 128


class CustomCnnModel(_ModelBase):
    name: Literal["custom_cnn"]
    filters: list[Units] = [32, 64, 128]
    dense_units: Units = 128


class Vgg10Model(_ModelBase):
    name: Literal["vgg10"]
    filters: list[Units] = [32, 64, 96]  # with Dense 128: ~403K parameters
    dense_units: Units = 128
    batch_norm: bool = False


class ResNet20Model(_ModelBase):
    name: Literal["resnet20"]
    depth: Annotated[int, Field(ge=2, le=1202)] = 20  # 6n+2, up to He et al.'s deepest
    base_filters: Units = 16

    @field_validator("depth")
    @classmethod
    def _depth_is_6n_plus_2(cls, depth: int) -> int:
        if (depth - 2) % 6:
            raise ValueError("must be 6n+2 (20, 32, 44, 56, ...)")
        return depth


class ResNetWideModel(_ModelBase):
    name: Literal["resnet_wide"]
    filters: list[Units] = [64, 128, 256, 512]
    dense_units: list[Units] = [256]


class TransferModel(_ModelBase):
    name: Literal["mobilenetv2", "efficientnetv2b0"]
    input_size: Annotated[int, Field(ge=32, le=512)] = 96  # pixels; images are resized to it
    weights: str = "imagenet"  # imagenet | none | path to a .weights.h5 / .keras file
    dense_units: Annotated[int, Field(ge=0, le=16_384)] = 0  # hidden units of the head; 0: none


WHITENED_STEM_FILTERS = 24  # each 2x2x3 patch direction and its negative


class FastModel(_ModelBase):
    name: Literal["fast"]
    widths: list[Units] = [64, 256, 256]  # airbench-style block widths
    stem_filters: Units = 24
    batch_norm_momentum: OpenFraction = 0.6
    batch_norm_epsilon: Annotated[float, Field(gt=0, le=0.1)] = 1e-5  # airbench: 1e-12
    # A 2x2 stem fitted to the training images' patch covariance (airbench's whitening) instead
    # of a learned one; it has 2 x 4 x channels filters (24 for RGB), which stem_filters must be.
    whiten: bool = False
    # Each conv's first in-channels filters start as the identity (airbench's dirac init), so a
    # fresh group passes its input through; the other filters start random.
    dirac_init: bool = False
    # random conv filters and the head: glorot uniform, or torch's default U(+-1/sqrt(fan_in))
    # (airbench's; a third of glorot's squared norm on the square convs)
    init: Literal["glorot", "torch"] = "glorot"
    # whiten: the whitening bias trains for this many epochs, then stays fixed (airbench: 3)
    whiten_bias_epochs: NonNegativeInt | None = None

    @model_validator(mode="after")
    def _whitened_stem_has_24_filters(self) -> FastModel:
        if self.whiten and self.stem_filters != WHITENED_STEM_FILTERS:
            raise ValueError(
                f"model.stem_filters: a whitened 2x2 stem on RGB images has "
                f"{WHITENED_STEM_FILTERS} filters (2 x 2 x 2 x 3), not {self.stem_filters}; set "
                f"stem_filters: {WHITENED_STEM_FILTERS} or whiten: false"
            )
        if self.whiten_bias_epochs is not None and not self.whiten:
            raise ValueError(
                "model.whiten_bias_epochs freezes the whitened stem's bias; set whiten: true "
                "or remove whiten_bias_epochs"
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


def _family_names(union: Any) -> tuple[str, ...]:
    """The `name` literals of the union's members, in the union's order."""
    (members, *_) = get_args(union)
    return tuple(
        name
        for member in get_args(members)
        for name in get_args(member.model_fields["name"].annotation)
    )


MODEL_NAMES = _family_names(ModelConfig)  # the model families a config may name


# --- optimisation -------------------------------------------------------------------------------


class OptimizerConfig(Strict):
    name: Literal["sgd", "adam", "adamw"] = "adam"
    learning_rate: PositiveFloat = 1e-3
    momentum: Fraction = 0.0  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: NonNegativeFloat = 0.0  # decoupled for adamw, L2-style for sgd/adam
    # sgd only: BatchNorm shifts (`beta`) learn this many times faster (airbench: 64)
    batch_norm_lr_scale: PositiveFloat = 1.0
    # also decay biases and BatchNorm shifts, each by the kernels' per-step amount (the shifts'
    # coefficient divided by batch_norm_lr_scale), as airbench decays every trained parameter;
    # false: kernels only
    decay_shifts: bool = False

    @model_validator(mode="after")
    def _shift_decay_needs_decay(self) -> OptimizerConfig:
        if self.decay_shifts and (self.weight_decay == 0 or self.name == "adamw"):
            raise ValueError(
                "optimizer.decay_shifts extends the L2 weight decay of sgd/adam to biases and "
                "BatchNorm shifts: set weight_decay above 0 with name sgd or adam, or remove it"
            )
        return self

    @model_validator(mode="after")
    def _lr_scale_is_for_sgd(self) -> OptimizerConfig:
        if self.batch_norm_lr_scale != 1.0 and self.name != "sgd":
            raise ValueError(
                "optimizer.batch_norm_lr_scale works with name 'sgd' only (adaptive optimizers "
                f"undo a gradient scale); remove it or use sgd, not {self.name!r}"
            )
        return self


class Stage(Strict):
    epochs: Epochs
    learning_rate: PositiveFloat


class ScheduleConfig(Strict):
    name: Literal["constant", "piecewise", "cosine", "one_cycle", "plateau"] = "constant"
    stages: list[Stage] = []  # piecewise: consecutive (epochs, learning_rate) stages
    warmup_epochs: NonNegativeFloat = 0.0  # cosine: linear warm-up length, epochs
    min_learning_rate: NonNegativeFloat = 0.0  # cosine / plateau floor
    peak_fraction: OpenFraction = 0.25  # one_cycle: fraction of training spent rising
    start_fraction: OpenFraction = 0.04  # one_cycle: first rate as a fraction of the peak
    # one_cycle: last rate as a fraction of the peak; unset, start_fraction / 10^4 (airbench: 0.07)
    end_fraction: Fraction | None = None
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

    epochs: Epochs
    learning_rate: PositiveFloat
    unfreeze_layers: Annotated[int, Field(ge=1, le=10_000)] = 30


class LookaheadConfig(Strict):
    """Lookahead weights (airbench): every `every` steps the slow copy moves towards the trained
    weights by 1 - decay and the trained weights restart from it; decay is
    `decay_per_step ** steps * (step / total) ** 3`, so 0 early (plain training) and up to
    0.95 ** 5 = 0.77 at the end. The weights also sync at every epoch's last step, so validation,
    checkpoints and the final model hold the slow weights and a resume needs no extra state."""

    every: Annotated[int, Field(ge=1, le=10_000)] = 5  # steps between syncs
    decay_per_step: OpenFraction = 0.95


class TrainConfig(Strict):
    """How the model is fitted. Every epoch is checkpointed, so a stopped run resumes."""

    epochs: Epochs = 10
    batch_size: BatchSize = 64
    label_smoothing: Fraction = 0.0
    early_stopping: EarlyStoppingConfig | None = None
    fine_tune: FineTuneConfig | None = None
    mixed_precision: bool = False
    xla: bool = False
    lookahead: LookaheadConfig | None = None
    # Over N replicas (resources.gpus > 1): false, batch_size is each replica's batch and the
    # global batch N x batch_size; true, batch_size is the global batch, split N ways.
    batch_size_is_global: bool = False
    # With a per-replica batch over N replicas, every learning rate of the config is multiplied
    # by N (the linear scaling rule); false keeps the rates as written.
    scale_learning_rate: bool = True
    # Training steps per call of the compiled step: the host's per-step work (Python, the feed,
    # callbacks) runs once per group. The same batches and weights as 1 (so unhashed), but
    # per-batch callbacks run once per group: refused with lookahead and whiten_bias_epochs;
    # a stop signal or a NaN loss is noticed at the end of a group, up to N-1 steps late.
    steps_per_execution: Annotated[int, Field(ge=1, le=10_000)] = 1

    @model_validator(mode="before")
    @classmethod
    def _checkpoint_is_retired(cls, data: Any) -> Any:
        """`checkpoint: true|false`, a switch that was never read, still loads and is ignored."""
        if isinstance(data, dict) and isinstance(data.get("checkpoint"), bool):
            data = {key: value for key, value in data.items() if key != "checkpoint"}
        return data


TtaLevel = Literal["none", "flip", "flip_translate"]


class EvaluationConfig(Strict):
    log_predictions: bool = True  # one warehouse row per test image
    calibration_bins: Annotated[int, Field(ge=2, le=100)] = 15
    # Test-time augmentation: `flip` averages each image with its mirror, `flip_translate` adds
    # one-pixel shifts of both (airbench's levels 1 and 2); evaluate and predict replay it.
    tta: TtaLevel = "none"
    # how the TTA views combine: mean of probabilities, or of log-probabilities (the same as
    # airbench's mean of logits, up to a constant per image that softmax removes)
    tta_average: Literal["probabilities", "logits"] = "probabilities"
    # score the train split (its overfitting gap) on this many images drawn with a fixed seed;
    # unset: the whole split
    train_sample: Annotated[int, Field(ge=1, le=10_000_000)] | None = None

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

    @field_validator("pushgateway")
    @classmethod
    def _no_credentials_in_the_url(cls, url: str | None) -> str | None:
        """A config is stored (warehouse, ConfigMap) and printed: no secret may be in it."""
        if url is not None and has_credentials(url):
            raise ValueError(
                "a Pushgateway URL with a user or password is refused (configs are stored and "
                "shown): set CIFAR_OPS_PUSHGATEWAY_USERNAME and CIFAR_OPS_PUSHGATEWAY_PASSWORD "
                "in the environment instead (from a Secret on Kubernetes)"
            )
        return url


class ExecutorConfig(Strict):
    kind: ExecutorKind = ExecutorKind.LOCAL  # where `cifar-ops submit` sends it; `run` is local
    namespace: DnsLabel | None = None  # kubernetes: defaults to the kubeconfig's namespace
    image: ImageReference | None = None  # kubernetes: defaults to the chart's image
    queue: LabelValue | None = None  # kubernetes: Kueue LocalQueue (kueue.x-k8s.io/queue-name)
    # kubernetes: chart values merged over the ones submit derives (before `submit --values`);
    # values.schema.json checks the result
    values: dict[str, Any] = {}

    @field_validator("values")
    @classmethod
    def _no_values_submit_writes(cls, values: dict[str, Any]) -> dict[str, Any]:
        reserved = reserved_key(values)
        if reserved:
            raise ValueError(reserved)
        return values


class ResourcesConfig(Strict):
    gpus: NonNegativeInt = 1  # nvidia.com/gpu limit
    cpu: Quantity = "4"  # Kubernetes quantity: 4, 500m, 2.5
    memory: Quantity = "16Gi"
    node_selector: dict[LabelKey, LabelText] = {}
    tolerations: list[Toleration] = []
    priority_class: DnsSubdomain | None = None
    active_deadline_seconds: PositiveInt | None = 86400
    backoff_limit: NonNegativeInt = 3


# Sections that say where or how a run is watched, not what it computes: left out of the hash
# (but for `resources.gpus` where it changes the math, hashed as "replicas": see `dump_hash`).
_UNHASHED = {"experiment", "description", "monitoring", "executor", "resources"}
# Keys that never change what is computed: data.archive says where the (checksummed) archive is
# fetched from; train.steps_per_execution groups the same steps into fewer calls.
_UNHASHED_KEYS = {("data", "archive"), ("train", "steps_per_execution")}
# Keys added after runs were recorded, with the value that computes what those runs computed:
# hashed only when set to something else, so an older config keeps its hash (and its resume).
_HASHED_WHEN_CHANGED: dict[tuple[str, str], Any] = {
    ("data", "pipeline"): "host",
    ("optimizer", "decay_shifts"): False,
    ("model", "batch_norm_epsilon"): 1e-5,
    ("model", "whiten_bias_epochs"): None,
    ("model", "init"): "glorot",
    ("schedule", "end_fraction"): None,
    ("train", "lookahead"): None,
    ("evaluation", "tta_average"): "probabilities",
    ("evaluation", "train_sample"): None,
    ("train", "batch_size_is_global"): False,
    ("train", "scale_learning_rate"): True,
}


class RunConfig(Strict):
    experiment: LabelValue
    description: str = ""
    seed: Seed = 42
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

    @model_validator(mode="after")
    def _grouped_steps_keep_per_step_callbacks(self) -> RunConfig:
        """Lookahead and the whitening-bias freeze act after every step, which a group of
        steps per call would skip."""
        group = self.train.steps_per_execution
        per_step = []
        if self.train.lookahead is not None:
            per_step.append("train.lookahead")
        if isinstance(self.model, FastModel) and self.model.whiten_bias_epochs is not None:
            per_step.append("model.whiten_bias_epochs")
        if group > 1 and per_step:
            keys = " and ".join(per_step)
            raise ValueError(
                f"train.steps_per_execution {group} runs callbacks once per group of steps, and "
                f"{keys} must act after every step: set train.steps_per_execution: 1 or remove "
                f"{keys}"
            )
        return self

    def config_hash(self) -> str:
        """Stable SHA-256 of what the run computes (not where it runs or how it is watched)."""
        return dump_hash(self.model_dump(mode="json"))


def dump_hash(dump: dict[str, Any]) -> str:
    """`RunConfig.config_hash` of a config's JSON dump (`model_dump(mode="json")`), which may be
    one a run directory stored under an older schema."""
    payload = {key: value for key, value in dump.items() if key not in _UNHASHED}
    payload.setdefault("data", {})  # hashed as an empty section when a dump lacks it
    for section, key in _UNHASHED_KEYS:
        part = payload.get(section)
        if isinstance(part, dict) and key in part:
            payload[section] = {k: v for k, v in part.items() if k != key}
    for (section, key), unchanged in _HASHED_WHEN_CHANGED.items():
        part = payload.get(section)
        if isinstance(part, dict) and key in part and part[key] == unchanged:
            payload[section] = {k: v for k, v in part.items() if k != key}
    # Over N > 1 replicas a per-replica batch makes the global batch N x batch_size (and, with
    # scale_learning_rate, the rates N x the written ones): N is then part of what is computed.
    # A global batch is split N ways with the rates as written whatever scale_learning_rate says
    # (`plan.global_batch`), so there, as on one replica, the hash stays as it was before gpus
    # counted. It is the configured count: CIFAR_OPS_REPLICAS, or fewer visible GPUs, are caught
    # on resume by the global batch the run dir recorded (`RunDir.check`).
    resources, train = dump.get("resources"), dump.get("train")
    gpus = resources.get("gpus", 1) if isinstance(resources, dict) else 1
    per_replica = not (isinstance(train, dict) and train.get("batch_size_is_global", False))
    if isinstance(gpus, int) and gpus > 1 and per_replica:
        payload["replicas"] = gpus
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


class PruningSpec(Strict):
    """The pruner's settings, in epochs and trials (Optuna's names in the comments)."""

    min_epochs: PositiveInt = 1  # asha/hyperband min_resource; median n_warmup_steps + 1
    reduction_factor: Annotated[int, Field(ge=2, le=16)] = 3  # asha/hyperband
    warmup_trials: Annotated[int, Field(ge=0, le=1000)] = 3  # median n_startup_trials


class SearchSpec(Strict):
    method: SearchMethod = SearchMethod.GRID
    parameters: dict[str, list[Any] | Distribution]  # dotted run-config key -> values or range
    trials: PositiveInt | None = None  # random/tpe/cmaes: how many; grid: derived (all capped)
    seed: int = 0  # random/tpe/cmaes: sampling seed
    parallelism: PositiveInt = 1  # trials at once (Indexed Job parallelism, local --parallel)
    pruner: SearchPruner = SearchPruner.NONE  # stops losing trials after an epoch
    pruning: PruningSpec = PruningSpec()
    metric: Literal["val_accuracy", "val_loss"] = "val_accuracy"  # reported every epoch
    direction: Literal["maximize", "minimize"] | None = None  # default: by the metric
    heartbeat_seconds: Annotated[int, Field(ge=1, le=3600)] = 60  # a live trial's heartbeat
    grace_seconds: Annotated[int, Field(ge=2, le=86400)] | None = None  # default 3 heartbeats

    @property
    def adaptive(self) -> bool:
        """Trials picked from earlier results (tpe, cmaes): none is known up front."""
        return self.method in (SearchMethod.TPE, SearchMethod.CMAES)

    @property
    def uses_study(self) -> bool:
        """Run through an Optuna study in the warehouse: an adaptive method, or any pruner."""
        return self.adaptive or self.pruner != SearchPruner.NONE

    @property
    def objective_direction(self) -> Literal["maximize", "minimize"]:
        if self.direction is not None:
            return self.direction
        return "minimize" if self.metric == "val_loss" else "maximize"

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
            raise ValueError(f"search.trials is required when search.method is '{self.method}'")
        if self.grace_seconds is not None and self.grace_seconds <= self.heartbeat_seconds:
            raise ValueError("search.grace_seconds must exceed search.heartbeat_seconds")
        return self


class Trial(BaseModel):
    """One point of a search: its index (the Indexed Job completion index) and its run config."""

    index: int
    params: dict[str, Any]
    config: RunConfig


class SearchConfig(BaseModel):
    """A search: the base run config, its spec, and the trials known before it starts.

    `base` is the merged YAML of the run (without `search:`), from which `cifar_ops.search` builds
    each trial's config; a method that decides trials as it goes builds them from it later.
    """

    run: RunConfig
    search: SearchSpec
    trials: list[Trial]
    base: dict[str, Any] = Field(default_factory=dict, repr=False)

    @property
    def experiment(self) -> str:
        return self.run.experiment
