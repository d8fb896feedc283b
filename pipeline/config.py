"""Typed schema of the configuration, registered in Hydra's ConfigStore.

``to_config`` merges a composed config (from ``conf/`` or ``params.yaml``) into
the schema, so an unknown key or a wrong type fails before any work, naming the
full key, and then checks value ranges.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf, open_dict

from pipeline.errors import ConfigError
from pipeline.task import Kind


class Objective(str, enum.Enum):
    """What the train stage returns to a Hydra sweeper (e.g. Optuna) to optimise."""

    best_val_loss = "best_val_loss"
    best_val_acc = "best_val_acc"
    best_val_rmse = "best_val_rmse"  # regression


class ModelFormat(str, enum.Enum):
    """How the train stage logs the model to MLflow (mlflow.pytorch's serialization_format)."""

    pickle = "pickle"  # the MLP object itself, with glassnet's code shipped beside it
    pt2 = "pt2"  # a torch.export graph: no code needed to load, but exporting costs ~1.8 s


class Activation(str, enum.Enum):
    relu = "relu"
    tanh = "tanh"
    sigmoid = "sigmoid"


@dataclass
class DataConfig:
    name: str = "digits"
    loader: dict[str, Any] = field(default_factory=lambda: {"_target_": "pipeline.data.bundled.load_digits"})
    test_size: float = 0.2
    val_size: float = 0.1
    # Any scikit-learn transformer (``_target_``), fitted on the train split; null: none.
    scaler: dict[str, Any] | None = field(
        default_factory=lambda: {"_target_": "sklearn.preprocessing.StandardScaler"}
    )


@dataclass
class ModelConfig:
    """The tutorial's MLP (``model=mlp``, the default)."""

    _target_: str = "pipeline.nets.model.MLP"
    hidden_sizes: list[int] = field(default_factory=lambda: [128])
    activation: Activation = Activation.relu
    dropout: float = 0.2


class Pool(str, enum.Enum):
    max = "max"
    avg = "avg"
    none = "none"


@dataclass
class CNNConfig:
    """The small convolutional network (``model=cnn``)."""

    _target_: str = "pipeline.nets.model.CNN"
    channels: list[int] = field(default_factory=lambda: [16, 32])
    kernel_size: int = 3
    pool: Pool = Pool.max
    pool_size: int = 2
    hidden_sizes: list[int] = field(default_factory=lambda: [64])
    activation: Activation = Activation.relu
    dropout: float = 0.25


# The networks glassnet ships, by ``_target_``: their keys are typed and closed, checked in every
# stage. Any other network (``model=custom``) is open: its keys are its constructor's own, checked
# against its signature by the train stage, which imports it.
MODEL_SCHEMAS: dict[str, type] = {
    "pipeline.nets.model.MLP": ModelConfig,
    "pipeline.nets.model.CNN": CNNConfig,
}


@dataclass
class OptimConfig:
    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 1e-3
    weight_decay: float = 0.0
    # Optimizer-specific keys; None means "not passed to the optimizer".
    momentum: float | None = None
    nesterov: bool | None = None


@dataclass
class TrainerConfig:
    """``pytorch_lightning.Trainer`` arguments. The fields here are typed because the stages read
    them; the node is open (see ``OPEN_SECTIONS``): any other keyword the Trainer takes can be added,
    e.g. ``+trainer.gradient_clip_val=1.0``, and is checked against its signature when the train stage
    builds the Trainer (``check_arguments``)."""

    _target_: str = "pytorch_lightning.Trainer"
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    max_epochs: int = 60
    deterministic: bool = True
    enable_progress_bar: bool = True


@dataclass
class LossConfig:
    """The training loss, any ``torch.nn`` loss module (``_target_`` and its own arguments; the node
    is open, checked against its signature). ``_target_: null`` (``loss=auto``, the default) is the
    task's own: cross-entropy for classification, mean squared error for regression. Regression
    losses see the network's single output against the target scaled on the train split."""

    _target_: str | None = None


class Interval(str, enum.Enum):
    """When Lightning steps a learning-rate scheduler."""

    epoch = "epoch"
    step = "step"


@dataclass
class SchedulerConfig:
    """A learning-rate scheduler built like the optimizer (``_target_``, ``_partial_: true``), with
    its own keyword arguments (the node is open, checked against the scheduler's signature), and
    how Lightning steps it (the typed fields, Lightning's ``lr_scheduler`` config). ``_target_:
    null`` keeps the learning rate constant."""

    _target_: str | None = None
    _partial_: bool = True
    interval: Interval = Interval.epoch
    frequency: int = 1
    monitor: str | None = None  # the logged metric ReduceLROnPlateau watches, e.g. val_loss


# Trainer arguments the train stage sets itself, and what to do instead.
STAGE_TRAINER_ARGS = {
    "callbacks": "add yours under train.callbacks, e.g. "
    "+train.callbacks.lr._target_=pytorch_lightning.callbacks.LearningRateMonitor",
    "logger": "the stage logs to MLflow; set tracking.uri and tracking.experiment",
    "plugins": "the stage passes its atomic checkpoint writer",
    "enable_checkpointing": "the stage keeps the best epoch's weights through its checkpoints",
    "enable_model_summary": "the stage turns it off; the report shows the network's layers",
}


@dataclass
class TrainConfig:
    batch_size: int = 64
    early_stopping_patience: int = 10
    objective: Objective = Objective.best_val_loss
    resume: bool = False
    # Extra Lightning callbacks: name -> {_target_: ..., its arguments}, built and appended to the
    # train stage's own callbacks. Named, not a list: the command line can add one at a time
    # (+train.callbacks.lr._target_=...), where a list would have to be given whole.
    callbacks: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvaluateConfig:
    calibration_bins: int = 10


@dataclass
class TrustConfig:
    """How the explanation's trustworthiness is measured (see pipeline/explain/trust.py)."""

    removal_steps: int = 10
    random_orders: int = 5
    ig_steps: int = 50


@dataclass
class SanityConfig:
    """The weight-randomisation sanity check (pipeline/explain/sanity.py)."""

    enabled: bool = True
    n_samples: int = 50  # of the explained samples, re-explained after each randomisation step
    threshold: float = 0.5  # median rank correlation above it, every layer random: the check fails
    n_maps: int = 4  # example images drawn per step


@dataclass
class SurrogateConfig:
    """The decision tree fitted to the network's predictions (pipeline/explain/surrogate.py)."""

    enabled: bool = True
    max_depth: int = 8
    tolerance: float = 0.01  # chosen depth: the smallest within this much fidelity of the best
    n_rules: int = 5


@dataclass
class ExplainConfig:
    # The explainer: its function (``_target_``, called by the stage: ``_partial_: true``) and that
    # function's keyword options (e.g. nsamples, max_evals), checked against its signature when the
    # stage starts (pipeline.explain.explainers.from_config).
    options: dict[str, Any] = field(
        default_factory=lambda: {"_target_": "pipeline.explain.explainers.deep_shap", "_partial_": True}
    )
    n_samples: int = 200
    n_background: int = 100
    n_examples: int = 6
    trust: TrustConfig = field(default_factory=TrustConfig)
    sanity: SanityConfig = field(default_factory=SanityConfig)
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)


@dataclass
class VisualizeConfig:
    n_units: int = 64
    tsne_max_samples: int = 1000
    tsne_perplexity: float = 30.0
    pca_before_tsne: int = 50
    saturation_margin: float = 0.01
    saturation_share: float = 0.9
    n_errors: int = 12


@dataclass
class ReportConfig:
    title: str = "glassnet report"
    dpi: int = 150


@dataclass
class TrackingConfig:
    uri: str | None = None
    experiment: str = "glassnet"
    run_name: str | None = None
    fallback_to_local: bool = False
    model_format: ModelFormat = ModelFormat.pickle


@dataclass
class CompareConfig:
    """Which MLflow runs ``python -m pipeline compare`` ranks, and by what."""

    experiment: str | None = None  # None: tracking.experiment
    run_name_prefix: str | None = None
    filter: str | None = None  # an MLflow search filter, e.g. "tags.sweep = 'lr'"
    # null: test_accuracy when the runs are classifiers, test_rmse when they are regressions
    metric: str | None = None
    # null: from the metric's name (lower is better for rmse, mae, loss, error, ece; else higher)
    higher_is_better: bool | None = None
    max_runs: int = 500
    output: str = "reports/compare.html"


@dataclass
class PathsConfig:
    prepare: str = "artifacts/prepare"
    train: str = "artifacts/train"
    evaluate: str = "artifacts/evaluate"
    explain: str = "artifacts/explain"
    train_metrics: str = "artifacts/metrics/train.json"
    evaluate_metrics: str = "artifacts/metrics/evaluate.json"
    explain_metrics: str = "artifacts/metrics/explain.json"
    sanity_plot: str = "artifacts/plots/sanity.csv"
    surrogate_plot: str = "artifacts/plots/surrogate.csv"
    history: str = "artifacts/plots/history.csv"
    predictions: str = "artifacts/plots/predictions.csv"
    calibration: str = "artifacts/plots/calibration.csv"
    regression_plot: str = "artifacts/plots/regression.csv"  # (actual, predicted) of a regression
    report: str = "reports/index.html"
    visualize: str = "artifacts/visualize"
    visualize_metrics: str = "artifacts/metrics/visualize.json"
    published: str = "artifacts/published.json"


@dataclass
class Config:
    seed: int = 42
    # classification | regression; None: inferred by prepare from the target (see pipeline.task)
    task: Kind | None = None
    data: DataConfig = field(default_factory=DataConfig)
    # Typed by its ``_target_`` (see MODEL_SCHEMAS and to_config).
    model: Any = field(default_factory=lambda: OmegaConf.structured(ModelConfig))
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    visualize: VisualizeConfig = field(default_factory=VisualizeConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


ConfigStore.instance().store(name="glassnet_schema", node=Config)

# Sections whose target takes more keyword arguments than the schema types. OmegaConf's structured
# configs are closed, so ``to_config`` merges only their typed keys into the schema and adds the
# others back as given (interpolations kept); ``check_open`` checks those against the target's
# signature where the train stage imports it (Lightning takes ~4 s to import: not in every stage).
OPEN_SECTIONS: dict[str, type] = {"trainer": TrainerConfig, "scheduler": SchedulerConfig, "loss": LossConfig}

# (key, test, what must hold). Checked after the type merge, so values have their types.
_RANGES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("seed", lambda v: v >= 0, "a non-negative integer"),
    ("data.test_size", lambda v: 0 < v < 1, "a fraction in (0, 1)"),
    ("data.val_size", lambda v: 0 < v < 1, "a fraction in (0, 1)"),
    ("optim.lr", lambda v: v > 0, "a positive learning rate, e.g. 0.001"),
    ("optim.weight_decay", lambda v: v >= 0, "non-negative"),
    ("trainer.max_epochs", lambda v: v >= 1, "at least 1"),
    ("train.batch_size", lambda v: v >= 1, "at least 1"),
    ("scheduler.frequency", lambda v: v >= 1, "at least 1"),
    ("train.early_stopping_patience", lambda v: v >= 1, "at least 1"),
    ("evaluate.calibration_bins", lambda v: v >= 1, "at least 1"),
    ("explain.n_samples", lambda v: v >= 1, "at least 1"),
    ("explain.n_background", lambda v: v >= 1, "at least 1"),
    ("explain.n_examples", lambda v: v >= 0, "non-negative"),
    ("explain.trust.removal_steps", lambda v: v >= 1, "at least 1"),
    ("explain.trust.random_orders", lambda v: v >= 1, "at least 1"),
    ("explain.trust.ig_steps", lambda v: v >= 2, "at least 2"),
    ("explain.sanity.n_samples", lambda v: v >= 2, "at least 2"),
    ("explain.sanity.threshold", lambda v: -1 <= v <= 1, "a correlation in [-1, 1], e.g. 0.5"),
    ("explain.sanity.n_maps", lambda v: v >= 0, "non-negative"),
    ("explain.surrogate.max_depth", lambda v: 1 <= v <= 30, "between 1 and 30"),
    ("explain.surrogate.tolerance", lambda v: 0 <= v < 1, "a fraction in [0, 1), e.g. 0.01"),
    ("explain.surrogate.n_rules", lambda v: v >= 1, "at least 1"),
    ("report.dpi", lambda v: 20 <= v <= 600, "between 20 and 600"),
    ("compare.max_runs", lambda v: v >= 1, "at least 1"),
    ("visualize.n_units", lambda v: v >= 1, "at least 1"),
    ("visualize.tsne_max_samples", lambda v: v >= 10, "at least 10"),
    ("visualize.tsne_perplexity", lambda v: v > 0, "positive, e.g. 30"),
    ("visualize.pca_before_tsne", lambda v: v >= 2, "at least 2"),
    ("visualize.saturation_margin", lambda v: 0 < v < 0.5, "in (0, 0.5), e.g. 0.01"),
    ("visualize.saturation_share", lambda v: 0 < v <= 1, "a fraction in (0, 1]"),
    ("visualize.n_errors", lambda v: v >= 0, "non-negative"),
]


_WIDTHS = ("model.hidden_sizes", lambda v: all(h > 0 for h in v), "positive layer widths")
_DROPOUT = ("model.dropout", lambda v: 0 <= v < 1, "a probability in [0, 1)")
# Ranges of the shipped networks' keys, by ``_target_``.
_MODEL_RANGES: dict[str, list[tuple[str, Callable[[Any], bool], str]]] = {
    "pipeline.nets.model.MLP": [
        ("model.hidden_sizes", lambda v: len(v) > 0, "a non-empty list of layer widths, e.g. [128]"),
        _WIDTHS,
        _DROPOUT,
    ],
    "pipeline.nets.model.CNN": [
        ("model.channels", lambda v: len(v) > 0, "a non-empty list of channel counts, e.g. [16, 32]"),
        ("model.channels", lambda v: all(c > 0 for c in v), "positive channel counts"),
        ("model.kernel_size", lambda v: v >= 1, "at least 1"),
        ("model.pool_size", lambda v: v >= 1, "at least 1"),
        _WIDTHS,
        _DROPOUT,
    ],
}


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first key whose value is out of range."""
    for key, ok, expected in [*_RANGES, *_MODEL_RANGES.get(str(cfg.model.get("_target_")), [])]:
        value = OmegaConf.select(cfg, key)
        if not ok(value):
            raise ConfigError(
                f"Config key '{key}' = {value!r} is invalid: expected {expected}. "
                f"Override it, e.g. `python -m pipeline train {key}=...`, or fix conf/."
            )
    if cfg.data.test_size + cfg.data.val_size >= 1:
        raise ConfigError(
            "Config keys 'data.test_size' + 'data.val_size' must leave data for training "
            f"(got {cfg.data.test_size} + {cfg.data.val_size} >= 1)."
        )


def _split_open(cfg: DictConfig | dict[str, Any]) -> tuple[DictConfig, dict[str, dict[str, Any]]]:
    """A copy of ``cfg`` without the untyped keys of ``OPEN_SECTIONS``, and those keys by section."""
    plain = OmegaConf.create(
        OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
    )
    assert isinstance(plain, DictConfig)
    extras: dict[str, dict[str, Any]] = {}
    for section, schema in OPEN_SECTIONS.items():
        node = plain.get(section)
        if not isinstance(node, DictConfig):
            continue
        typed = {f.name for f in dataclasses.fields(schema)}
        raw = OmegaConf.to_container(node, resolve=False)
        assert isinstance(raw, dict)
        extras[section] = {str(key): value for key, value in raw.items() if key not in typed}
        for key in extras[section]:
            del node[key]
    return plain, extras


def to_config(cfg: DictConfig | dict[str, Any]) -> Config:
    """Merge into the schema (unknown keys and wrong types raise, naming the key), then validate.

    The result stays an OmegaConf DictConfig (so ``instantiate`` works on its
    sub-configs) but is typed as ``Config`` for the type checker.
    """
    schema = OmegaConf.structured(Config)
    typed, extras = _split_open(cfg)
    network = typed.pop("model", None)
    merged = OmegaConf.merge(schema, typed)
    assert isinstance(merged, DictConfig)
    for section, values in extras.items():
        with open_dict(merged[section]):
            for key, value in values.items():
                merged[section][key] = value
    if network is not None:
        merged.model = typed_model(network)
    validate(merged)
    return cast(Config, merged)


def typed_model(node: Any) -> DictConfig:
    """The ``model`` section merged into its network's schema (``MODEL_SCHEMAS``: unknown keys and
    wrong types raise, naming ``model.<key>``), or, for any other ``_target_``, as given."""
    if isinstance(node, DictConfig) and OmegaConf.is_missing(node, "_target_"):
        raise ConfigError(
            "Config key 'model._target_' has no value: name your network's class, e.g. "
            "`model=custom model._target_=mynets.TinyNet` (its module on PYTHONPATH)."
        )
    target = node.get("_target_") if isinstance(node, DictConfig | dict) else None
    if not isinstance(target, str) or not target:
        raise ConfigError(
            "Config key 'model._target_' is missing: name the network class, e.g. model=mlp, model=cnn, "
            "or model=custom model._target_=mynets.TinyNet."
        )
    schema = MODEL_SCHEMAS.get(target)
    if schema is None:
        open_node = OmegaConf.create(node)
        assert isinstance(open_node, DictConfig)
        return open_node
    # Merged under a "model" key, so an error names the full key (model.hidden_sizes).
    merged = OmegaConf.merge(OmegaConf.create({"model": OmegaConf.structured(schema)}), {"model": node})
    assert isinstance(merged, DictConfig)
    return cast(DictConfig, merged.model)


def plain(value: Any) -> Any:
    """A config value as plain data: sections as nested dicts and lists (interpolations resolved),
    enums as their values; what MLflow params, config.yaml files and the report show."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True, enum_to_str=True)
    return value.value if isinstance(value, enum.Enum) else value
