"""Typed parameters: params.yaml (the single source) plus per-invocation overrides.

The package carries a byte-identical copy of params.yaml (``mtl/defaults.yaml``), so ``mtl`` runs from
any folder. Layers, lowest precedence first: the packaged defaults, the project's params.yaml (found from
the working folder up), the file in ``$MTL_PARAMS``, ``--params FILE``, then ``--set KEY=VALUE``; a file
may hold only the keys it changes. ``mtl params show`` prints the result and where each value came from.

``load_params(overrides=["train.epochs=1"])`` reads the layers, applies dotted ``KEY=VALUE`` overrides
(values parsed as YAML, like ``dvc exp run -S``) and validates the result. Every key lives in params.yaml;
the models below only give it a type, so an override of an unknown key or of the wrong type is an error
that names the key.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mtl.errors import ConfigError
from mtl.paths import PARAMS_FILE, project_root


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- data ------------------------------------------------------------------------------------------


class LabelRate(Section):
    """Plausible range of a task's positive rate in every split (validated by the GX suites)."""

    min: float = Field(ge=0.0, le=1.0)
    max: float = Field(ge=0.0, le=1.0)


class DatasetValidationParams(Section):
    """Per-dataset bounds; a split's emptiness is critical, everything here is a warning (mtl.validation)."""

    label_rates: dict[str, LabelRate]  # plausible positive rate of a task in every split
    min_rows: dict[str, int]  # per split name: fewer rows is a warning (none at all is critical)
    split_shares: dict[str, LabelRate] = {}  # per split name: plausible share of all prepared rows


class DriftThresholds(Section):
    """How far the new prepared version may move from the one it replaces before a warning."""

    rows: float = Field(default=0.5, ge=0.0)  # relative change of a split's row count
    label_rate: float = Field(default=0.5, ge=0.0)  # relative change of a task's positive rate
    unknown_rate: float = Field(default=0.1, ge=0.0)  # absolute change of a field's unknown-id (id 0) share
    dense_mean: float = Field(default=0.5, ge=0.0)  # change of a dense mean, in previous standard deviations


class ValidationParams(Section):
    fail_on_warning: bool = False  # true: warnings (label rates, split sizes, drift) stop the pipeline too
    drift: DriftThresholds = DriftThresholds()


class AliccpSynthetic(Section):
    train_rows: int = Field(gt=0)
    test_rows: int = Field(gt=0)
    vocab_scale: float = Field(gt=0.0, le=1.0)
    click_rate: float = Field(gt=0.0, lt=1.0)
    purchase_given_click_rate: float = Field(gt=0.0, lt=1.0)
    seed: int


class AliccpPrepare(Section):
    max_multi_len: int = Field(ge=1)
    min_count: int = Field(ge=1)
    valid_fraction: float = Field(gt=0.0, lt=1.0)
    split_seed: int
    oracle_max_rows: int = Field(gt=0)  # synthetic: rows per split scored for the oracle AUC (bounds memory)


class AliccpParams(Section):
    source: Literal["paddlerec", "tianchi", "csv", "synthetic"]
    location: str | None  # URL or local path overriding the source's default location
    models: list[str]
    synthetic: AliccpSynthetic
    prepare: AliccpPrepare
    validation: DatasetValidationParams
    train: dict[str, Any] = {}  # train.* keys for this dataset's models only (Params.for_dataset)


class CensusSynthetic(Section):
    train_rows: int = Field(gt=0)
    test_rows: int = Field(gt=0)
    income_rate: float = Field(gt=0.0, lt=1.0)  # share of income > 50k (UCI: ~6.2%)
    never_married_rate: float = Field(gt=0.0, lt=1.0)  # share never married (UCI: ~43%, children included)
    seed: int


class CensusPrepare(Section):
    min_count: int = Field(ge=1)
    split_seed: int


class CensusParams(Section):
    source: Literal["uci", "paddlerec", "csv", "synthetic"]
    location: str | None
    models: list[str]
    synthetic: CensusSynthetic
    prepare: CensusPrepare
    validation: DatasetValidationParams
    train: dict[str, Any] = {}  # train.* keys for this dataset's models only (Params.for_dataset)


class LookalikeSynthetic(Section):
    users: int = Field(gt=0)
    train_campaigns: int = Field(gt=0)
    hot_campaigns: int = Field(gt=0)
    cold_campaigns: int = Field(gt=0)
    hot_rows: list[int]  # [min, max] stage1 rows of a hot campaign
    cold_rows: list[int]  # [min, max] stage1 rows of a cold campaign
    train_rows: list[int]  # [min, max] stage1 rows of a train campaign
    stage2_fraction: float = Field(gt=0.0)  # stage2 rows = fraction x stage1 rows
    positive_rate: float = Field(gt=0.0, lt=1.0)
    seed: int

    @model_validator(mode="after")
    def _row_ranges(self) -> LookalikeSynthetic:
        for name in ("train_rows", "hot_rows", "cold_rows"):
            bounds = getattr(self, name)
            if len(bounds) != 2 or not 1 <= bounds[0] <= bounds[1]:
                raise ValueError(f"{name} must be [min, max] with 1 <= min <= max, got {bounds}")
        return self


class LookalikePrepare(Section):
    pass


class LookalikeParams(Section):
    source: Literal["paddlerec", "synthetic"]
    location: str | None
    models: list[str]
    synthetic: LookalikeSynthetic
    prepare: LookalikePrepare
    validation: DatasetValidationParams
    train: dict[str, Any] = {}  # train.* keys for this dataset's models only (Params.for_dataset)


class DatasetsParams(Section):
    aliccp: AliccpParams
    census: CensusParams
    lookalike: LookalikeParams


class DownloadParams(Section):
    retries: int = Field(ge=0)
    backoff_seconds: float = Field(ge=0.0)
    timeout_seconds: float = Field(gt=0.0)


class DataParams(Section):
    row_group_rows: int = Field(gt=0)  # Parquet row group size of prepared splits
    chunk_rows: int = Field(gt=0)  # rows per chunk when streaming raw files / validating


class GateDataset(Section):
    """The promotion gate of one dataset's models (see mtl.registry)."""

    primary: str  # output whose test AUC is compared with the champion's
    tolerance: float = Field(ge=0.0, le=1.0)  # largest allowed drop of the primary AUC
    floors: dict[str, float]  # output -> minimum test AUC
    prediction_rate_ratio: list[float]  # [min, max] of mean prediction / positive rate (calibration sanity)

    @model_validator(mode="after")
    def _check(self) -> GateDataset:
        for output, floor in self.floors.items():
            if not 0.0 <= floor <= 1.0:
                raise ValueError(f"floor of {output!r} must lie in [0, 1], got {floor}")
        low, high = self.prediction_rate_ratio
        if not 0.0 < low <= 1.0 <= high:
            raise ValueError("prediction_rate_ratio must be [min, max] with 0 < min <= 1 <= max")
        return self


class GateParams(Section):
    aliccp: GateDataset
    census: GateDataset
    lookalike: GateDataset

    def for_dataset(self, name: str) -> GateDataset:
        return getattr(self, name)


class TrackingParams(Section):
    enabled: bool
    uri: str | None  # null: $MLFLOW_TRACKING_URI, else sqlite:///<state>/mlflow/mlflow.db
    registry_uri: str | None  # null: $MLFLOW_REGISTRY_URI, else the tracking URI
    artifact_root: str | None  # null: <state>/mlflow/artifacts (for experiments this project creates)
    experiment_prefix: str


class OrchestrationParams(Section):
    schedule: str | None  # cron or preset of the retraining DAGs
    owner: str
    retries: int = Field(ge=0)
    retry_delay_seconds: float = Field(ge=0.0)
    download_retries: int = Field(ge=0)


# --- training --------------------------------------------------------------------------------------


class EarlyStoppingParams(Section):
    metric: Literal["auc_mean", "logloss_mean", "loss"]  # computed on train.validation_split only
    patience: int = Field(ge=1)  # stop after this many epochs in a row without improvement
    min_delta: float = Field(ge=0.0)  # smaller changes do not count as an improvement


class DistributedParams(Section):
    """How ``mtl train`` (and the DAG's train task) launches training: one process, or ``torchrun``."""

    nproc_per_node: int = Field(ge=1)  # > 1: DDP over this many processes (GPUs) per node
    nnodes: int = Field(ge=1)  # > 1: multi-node; every node runs the same task with its node_rank
    node_rank: int = Field(ge=0)
    rdzv_endpoint: str | None  # host:port of the rendezvous (multi-node); None: this host


class TrainParams(Section):
    device: str = Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)  # global batch: split across DDP ranks
    eval_batch_size: int = Field(ge=1)
    lr: float = Field(gt=0.0)  # AdamW, dense parameters
    embedding_lr: float = Field(gt=0.0)  # embedding tables (train.embedding_optimizer)
    weight_decay: float = Field(ge=0.0)  # dense weight matrices only
    embedding_gradients: Literal["auto", "sparse", "dense"]
    embedding_optimizer: Literal["adam", "adagrad"]  # row-wise (lazy) on the rows a step touched
    embedding_weight_decay: float = Field(ge=0.0)  # L2 on the embedding rows a step touched, at each use
    embedding_row_decay: float = Field(ge=0.0)  # L2 per epoch on every row, spread over its uses
    precision: Literal["auto", "fp32", "bf16", "fp16"]
    compile: bool
    validation_split: str
    # weights validated, selected and kept: a moving average of the epoch-end weights, a <- d*a + (1-d)*w
    # (0: the epoch-end weights themselves)
    weight_average_decay: float = Field(ge=0.0, lt=1.0)
    early_stopping: EarlyStoppingParams
    max_in_memory_rows: int = Field(ge=1)  # larger splits stream from Parquet row groups
    stream_chunk_rows: int = Field(ge=1)
    resume: bool
    progress: bool | Literal["auto"]
    num_threads: int = Field(ge=0)  # torch intra-op threads; 0 = torch's default
    nan_check_interval: int = Field(ge=1)  # CUDA: steps between NaN/inf loss checks (CPU: every step)
    distributed: DistributedParams


# --- models ----------------------------------------------------------------------------------------


class ModelParams(Section):
    """Hyperparameters every model shares (the input layer, MLP blocks and initialisation)."""

    embed_dim: int = Field(ge=1)
    multi_pooling: Literal["mean", "sum"]
    dropout: float = Field(ge=0.0, lt=1.0)
    norm: Literal["none", "batch", "layer"]
    embed_init_std: float = Field(gt=0.0)
    interaction: Literal["none", "dot"]  # dot: pairwise dot products of the field vectors join the input


class SingleTaskParams(ModelParams):
    tower_dims: list[int] = Field(min_length=1)
    # on a funnel dataset, the later task's network: clicked = pCVR trained on clicked rows (the ESMM
    # paper's BASE; pCTCVR = pCTR x pCVR), all = pCTCVR trained on every row (MTReclib's singletask).
    # The default is for a model.json saved before the key existed: those models are the "all" kind
    funnel_cvr: Literal["clicked", "all"] = "all"


class SharedBottomParams(ModelParams):
    bottom_dims: list[int] = Field(min_length=1)
    tower_dims: list[int]


class EsmmParams(ModelParams):
    tower_dims: list[int] = Field(min_length=1)


class MmoeParams(ModelParams):
    n_experts: int = Field(ge=1)
    expert_dims: list[int] = Field(min_length=1)
    tower_dims: list[int]


class PleParams(ModelParams):
    levels: int = Field(ge=1)  # 1 level = CGC
    specific_experts: int = Field(ge=1)  # per task, per level
    shared_experts: int = Field(ge=1)  # per level
    expert_dims: list[int] = Field(min_length=1)
    tower_dims: list[int]


class AitmParams(ModelParams):
    tower_dims: list[int] = Field(min_length=1)
    calibrator_weight: float = Field(ge=0.0)


class MetaheacParams(ModelParams):
    n_experts: int = Field(ge=1)  # hybrid experts over the user representation
    expert_dims: list[int] = Field(min_length=1)
    n_critics: int = Field(ge=1)  # sigmoid heads mixed by the critic gate
    gate_dims: list[int]  # hidden widths of each gate (on the task representation)


class ModelsParams(Section):
    single_task: SingleTaskParams
    shared_bottom: SharedBottomParams
    esmm: EsmmParams
    mmoe: MmoeParams
    ple: PleParams
    aitm: AitmParams
    metaheac: MetaheacParams


# --- MetaHeac: meta-training, per-campaign adaptation, baselines --------------------------------------


class MetaTrainingParams(Section):
    epochs: int = Field(ge=1)  # one epoch = ceil(train rows / batch_size) meta-steps
    batch_size: int = Field(ge=1)  # rows of each support batch and of each query batch
    task_count: int = Field(ge=1)  # campaigns per meta-step
    task_sampling: Literal["rows", "sqrt", "uniform"]  # campaign probability ∝ rows, sqrt(rows), 1
    task_replacement: bool
    small_campaigns: Literal["replace", "all"]  # campaigns with fewer rows than batch_size
    query: Literal["independent", "disjoint"]  # query rows drawn apart from the support's or not
    start: Literal["fresh", "plain"]  # from the initialisation, or from the trained plain baseline
    inner_steps: int = Field(ge=1)
    inner_lr: float = Field(gt=0.0)
    second_order: bool  # False: first-order MAML (inner gradients treated as constants)
    outer_lr: float = Field(gt=0.0)
    weight_decay: float = Field(ge=0.0)  # decoupled (AdamW) on the outer step
    embedding_weight_decay: float = Field(ge=0.0)  # coupled L2 on every embedding row (meta.add_embedding_l2)
    checkpoint_every: int = Field(ge=1)  # meta-steps between checkpoints (and history records)


class AdaptationParams(Section):
    epochs: int = Field(ge=0)  # 0: score the meta-trained weights without fine-tuning
    optimizer: Literal["adam", "sgd"]  # a fresh one per campaign
    lr: float = Field(gt=0.0)
    batch_size: int = Field(ge=1)
    batched: bool | Literal["auto"]  # many campaigns at once (vmap); auto: on CUDA only
    group_size: int = Field(ge=1)  # campaigns per batched group (memory: a weight copy each)
    top_fraction: float = Field(gt=0.0, le=1.0)  # precision/recall at this top share of a campaign


class BaselineParams(Section):
    enabled: bool  # also train the same network without meta-learning and evaluate it beside MetaHeac
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0.0)
    weight_decay: float = Field(ge=0.0)  # decoupled (AdamW), as the meta-training's outer step
    embedding_weight_decay: float = Field(ge=0.0)  # coupled L2 on every embedding row, as the outer step


class MetaheacTrainingParams(Section):
    meta: MetaTrainingParams
    adaptation: AdaptationParams
    baselines: BaselineParams


class Params(Section):
    seed: int
    data: DataParams
    download: DownloadParams
    datasets: DatasetsParams
    validation: ValidationParams = ValidationParams()
    gate: GateParams
    tracking: TrackingParams
    orchestration: OrchestrationParams
    train: TrainParams
    models: ModelsParams
    metaheac: MetaheacTrainingParams

    @model_validator(mode="after")
    def _dataset_sections(self) -> Params:
        for name in ("aliccp", "census", "lookalike"):
            settings = getattr(self.datasets, name).validation
            for key in ("label_rates", "split_shares"):
                for task, rate in getattr(settings, key).items():
                    if rate.min > rate.max:
                        raise ValueError(f"datasets.{name}.validation.{key}.{task}: min > max")
            self.for_dataset(name)  # its train overrides are train keys with valid values
        return self

    def dataset(self, name: str) -> AliccpParams | CensusParams | LookalikeParams:
        try:
            return getattr(self.datasets, name)
        except AttributeError:
            raise ConfigError(
                f"unknown dataset {name!r}; expected one of {sorted(DatasetsParams.model_fields)}"
            ) from None

    def for_dataset(self, name: str) -> Params:
        """These parameters with ``datasets.<name>.train`` laid over ``train``: what a model of dataset
        ``name`` trains and is scored with."""
        overrides = self.dataset(name).train
        if not overrides:
            return self
        unknown = sorted(set(overrides) - set(TrainParams.model_fields))
        if unknown:
            raise ConfigError(
                f"datasets.{name}.train: unknown key(s) {unknown}; expected keys of train: "
                f"{sorted(TrainParams.model_fields)}"
            )
        try:
            train = TrainParams.model_validate({**self.train.model_dump(), **overrides})
        except ValidationError as error:
            raise ConfigError(f"datasets.{name}.train: {error}") from None
        return self.model_copy(update={"train": train})

    def model(self, name: str) -> ModelParams:
        """The hyperparameters of model ``name`` (``models.<name>``)."""
        section = getattr(self.models, name, None)
        if not isinstance(section, ModelParams):
            raise ConfigError(f"unknown model {name!r}; expected one of {sorted(ModelsParams.model_fields)}")
        return section

    def flat(self) -> dict[str, Any]:
        """Every parameter as ``dotted.key: value`` (for MLflow params and run summaries)."""
        return flatten(self.model_dump(mode="json"))


# --- loading and overrides -------------------------------------------------------------------------


DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")  # byte-identical copy of params.yaml (make params)
PARAMS_ENV = "MTL_PARAMS"


def default_params_path() -> Path:
    """The parameters file a plain run reads on top of the packaged defaults: ``$MTL_PARAMS``, else the
    project's params.yaml (found from the working folder up), else the packaged defaults themselves."""
    env = os.environ.get(PARAMS_ENV)
    if env:
        return Path(env)
    local = project_root() / PARAMS_FILE
    return local if local.is_file() else DEFAULTS_FILE


def parameter_layers(path: Path | None = None) -> list[tuple[str, Path]]:
    """The files whose keys make up the parameters, lowest precedence first, each with its label:
    the packaged defaults, ./params.yaml of the project (if any), ``$MTL_PARAMS``, ``--params``."""
    layers = [("packaged defaults", DEFAULTS_FILE)]
    local = project_root() / PARAMS_FILE
    if local.is_file():
        layers.append(("params.yaml", local))
    env = os.environ.get(PARAMS_ENV)
    if env:
        if not Path(env).is_file():
            raise ConfigError(f"{PARAMS_ENV}={env}: no such parameters file")
        layers.append((PARAMS_ENV, Path(env)))
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"--params {path}: no such parameters file")
        layers.append(("--params", Path(path)))
    unique: list[tuple[str, Path]] = []
    for label, file in layers:  # the same file named twice counts once, at its highest precedence
        unique = [(lab, f) for lab, f in unique if f.resolve() != file.resolve()]
        unique.append((label, file))
    return unique


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read parameters file {path}: {exc.strerror}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of parameter sections, got {type(data).__name__}")
    return data


def effective_params(path: Path | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The merged parameter tree and, for every dotted key, the label of the layer that set it."""
    data: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for index, (label, file) in enumerate(parameter_layers(path)):
        layer = _read_yaml(file)
        if index == 0:
            data = layer
        else:
            data = _merge(data, layer, f"{file}")
        for key in flatten(layer):
            origin[key] = label if index == 0 else f"{label} ({file})"
            for known in [k for k in origin if k.startswith(key + ".")]:  # a mapping replaced whole
                origin[known] = origin[key]
    return data, origin


def _merge(base: dict[str, Any], layer: Mapping[str, Any], where: str, prefix: str = "") -> dict[str, Any]:
    """``base`` with ``layer``'s keys (mappings merged key by key, other values replaced); a key the
    defaults do not have is an error naming the file."""
    out = dict(base)
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            hint = difflib.get_close_matches(str(key), [str(k) for k in base], n=1)
            suggestion = f" (did you mean {prefix + hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{where}: unknown parameter {dotted!r}{suggestion}")
        if isinstance(value, Mapping) and isinstance(base[key], dict) and value:
            out[key] = _merge(base[key], value, where, f"{dotted}.")
        else:
            out[key] = value
    return out


def read_params_file(path: Path | None = None) -> dict[str, Any]:
    """The effective parameter tree: packaged defaults <- ./params.yaml <- $MTL_PARAMS <- ``path``."""
    return effective_params(path)[0]


def parse_override(text: str) -> tuple[str, Any]:
    """``'train.epochs=2'`` -> ``('train.epochs', 2)``; the value is parsed as YAML."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like KEY=VALUE, e.g. train.epochs=2")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key, parsed


def _open_mapping_keys(path: list[str]) -> set[str]:
    """Keys an override may add at ``path``: ``datasets.<dataset>.train`` takes any key of ``train``."""
    if len(path) == 3 and path[0] == "datasets" and path[2] == "train":
        return set(TrainParams.model_fields)
    return set()


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted keys replaced; every key must already exist."""
    result = _deep_copy(data)
    for dotted, value in overrides.items():
        node: Any = result
        parts = dotted.split(".")
        for depth, part in enumerate(parts):
            open_keys = _open_mapping_keys(parts[:depth])
            if isinstance(node, dict) and part not in node and part in open_keys and depth == len(parts) - 1:
                node[part] = value  # a new key where any key of its schema may go (datasets.<d>.train)
                continue
            if not isinstance(node, dict) or part not in node:
                where = ".".join(parts[:depth]) or "the top level"
                choices = sorted(set(node) | open_keys) if isinstance(node, dict) else []
                hint = difflib.get_close_matches(part, choices, n=1)
                suggestion = f" (did you mean {'.'.join([*parts[:depth], hint[0]])!r}?)" if hint else ""
                raise ConfigError(
                    f"unknown parameter {dotted!r}: {where} has no key {part!r}{suggestion}; "
                    f"known keys there: {', '.join(choices) or 'none'}"
                )
            if depth == len(parts) - 1:
                node[part] = value
            else:
                node = node[part]
    return result


def load_params(
    overrides: Iterable[str] | Mapping[str, Any] | None = None, path: Path | None = None
) -> Params:
    """The effective parameters (``read_params_file``) + overrides (``["k=v", ...]`` or ``{"k": v}``),
    validated."""
    data = read_params_file(path)
    if overrides:
        pairs = (
            dict(overrides.items())
            if isinstance(overrides, Mapping)
            else dict(map(parse_override, overrides))
        )
        data = apply_overrides(data, pairs)
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {err['msg']}"
            + (
                f" (got {err['input']!r})"
                if err["type"] != "missing" and not isinstance(err["input"], dict)
                else ""
            )
            for err in exc.errors()
        )
        raise ConfigError(f"invalid parameters: {problems}") from None


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def _deep_copy(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _deep_copy(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_deep_copy(v) for v in tree]
    return tree
