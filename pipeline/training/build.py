"""What the train stage fits, built from config and checked before any training: the network
(``model``), the loss (``loss``), the optimizer and scheduler (``optim``, ``scheduler``) and the
Trainer (``trainer``, ``train``) with the stage's callbacks. A bad key, a class that cannot be
imported, a network whose output does not fit the task or a loss of the other task each stop
here with a line naming the key.

    training = build.training(cfg, task.of(summary), input_shape, train_rows, tracked=True, partial=folder)
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytorch_lightning as pl
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from torch import nn

from pipeline import progress, signature
from pipeline.config import STAGE_TRAINER_ARGS, Config, SchedulerConfig, plain
from pipeline.errors import ConfigError, GlassnetError
from pipeline.nets import model
from pipeline.nets.arch import SHAPE_ARGUMENTS
from pipeline.signature import check_arguments
from pipeline.task import Task
from pipeline.training.callbacks import (
    AtomicCheckpointIO,
    EpochSeed,
    GradientNorms,
    History,
    NoProfiler,
    WeightHistory,
    configured_callbacks,
)
from pipeline.training.fit import StageCallbacks, Training, fold_target_scale, last_linear
from pipeline.training.learner import Optimization


def training(
    cfg: Config, task: Task, input_shape: tuple[int, ...], train_rows: int, tracked: bool, partial: Path
) -> Training:
    """The seeded network (and its constructor arguments), the loss, the optimizer and the Trainer,
    all checked. ``tracked``: the Trainer's logger will be set once the MLflow run exists;
    ``partial``: the folder the fit checkpoints into; ``train_rows``: the train split's size."""
    if cfg.train.objective.value not in task.objectives:
        raise ConfigError(
            f"Config key 'train.objective' = {cfg.train.objective.value!r} does not exist for a "
            f"{task.name} run: use one of {', '.join(task.objectives)}."
        )
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    net, arguments = build_net(cfg, input_shape, task.summary.n_classes, regression=task.regression)
    loss = build_loss(cfg, task)
    trainer, callbacks = build_trainer(cfg, tracked, partial, train_rows=train_rows)
    return Training(
        task,
        input_shape,
        net,
        arguments,
        loss,
        optimization(cfg),
        trainer,
        callbacks,
        cfg.train.batch_size,
        cfg.seed,
    )


def build_net(
    cfg: Config, input_shape: Sequence[int], n_classes: int, *, regression: bool = False
) -> tuple[nn.Module, dict[str, Any]]:
    """The network ``model._target_`` names, with the ``model`` keys as its arguments and the data's
    shape and class count for the arguments that name them (``arch.SHAPE_ARGUMENTS``); and the
    arguments used. Checked before any training: a key the constructor does not take or needs, a
    class that cannot be imported, an output that is not (batch, classes) each stop with a line
    naming the key or the shape. ``regression``: one output, from a final Linear layer (see
    ``check_foldable``); ``n_classes`` is then 1."""
    target = str(cfg.model._target_)
    try:
        cls = get_class(target)
    except Exception as err:  # Hydra raises ImportError or ValueError, depending on what failed
        cause = err.__cause__ or err  # Hydra's own message spans lines; the import's error says it
        raise ConfigError(
            f"Config key 'model._target_' = {target!r} cannot be imported ({type(cause).__name__}: "
            f"{' '.join(str(cause).split())}). Check the name, and that its module is on PYTHONPATH "
            "(e.g. `PYTHONPATH=. python -m pipeline train`)."
        ) from err
    raw = plain(cfg.model)
    given = {str(k): v for k, v in raw.items() if not (str(k).startswith("_") and str(k).endswith("_"))}
    reserved = {name: "it passes the data's shape and class count" for name in SHAPE_ARGUMENTS}
    signature.check_keys(cls, given, "model", target=target, reserved=reserved, setter="the train stage")
    arguments: dict[str, Any] = {**model.shape_arguments(cls, input_shape, n_classes), **given}
    missing = signature.missing_required(cls, arguments)
    if missing:
        raise ConfigError(
            f"Config key 'model.{missing[0]}' is required by {target}: set it, e.g. "
            f"`+model.{missing[0]}=...` (the train stage passes only {', '.join(SHAPE_ARGUMENTS)} itself)."
        )
    try:
        net = model.build(target, arguments)
    except GlassnetError:
        raise
    except Exception as err:  # the user's constructor rejected its arguments
        raise ConfigError(
            f"model._target_ {target} could not be built from model.*: {type(err).__name__}: {err}"
        ) from err
    if not isinstance(net, nn.Module):
        raise ConfigError(f"model._target_ {target} made a {type(net).__name__}, not a torch.nn.Module.")
    probe = torch.zeros(2, *input_shape)
    check_output(net, target, probe, n_classes, regression)
    if regression:
        check_foldable(net, target, probe)
    return net, arguments


def check_output(net: nn.Module, target: str, probe: torch.Tensor, n_classes: int, regression: bool) -> None:
    """The network runs on a batch of two rows and returns one output per class (regression: one
    prediction) per row."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(probe)
    except Exception as err:  # noqa: BLE001 -- any failure of the user's forward is reported the same way
        raise ConfigError(
            f"model._target_ {target} fails on a batch of shape {tuple(probe.shape)} (batch, "
            f"*input_shape): {type(err).__name__}: {err}. The data's rows have shape "
            f"{tuple(probe.shape[1:])}."
        ) from err
    finally:
        net.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, n_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        wanted = (
            "one prediction per row, shaped (batch, 1) = (2, 1) (a regression: its output is the target)"
            if regression
            else f"logits shaped (batch, classes) = (2, {n_classes})"
        )
        raise ConfigError(
            f"model._target_ {target} returns {shape} for a batch of shape {tuple(probe.shape)}: "
            f"it must return {wanted}."
        )


def check_foldable(net: nn.Module, target: str, probe: torch.Tensor) -> None:
    """A regression network must end in a Linear layer with one output (its prediction) and a
    bias, so the target's scaling can be folded into it (``fit.fold_target_scale``): checked on a
    copy with a made-up scale."""
    layer = last_linear(net)
    ok = layer is not None and layer.bias is not None
    if ok:
        trial = copy.deepcopy(net).eval()
        probe = torch.randn(probe.shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            before = trial(probe)
            fold_target_scale(trial, 3.0, 2.0)
            after = trial(probe)
        ok = bool(torch.allclose(after, before * 2.0 + 3.0, rtol=1e-4, atol=1e-4))
    if not ok:
        raise ConfigError(
            f"model._target_ {target} cannot be trained for regression: its output must come straight "
            "from a final nn.Linear layer with one output and a bias (nothing after it), so the "
            "predictions can be given in the target's own units. End the network with nn.Linear(..., 1)."
        )


def build_loss(cfg: Config, task: Task) -> nn.Module:
    """The training loss: ``loss._target_`` with its own keys, or the task's own (cross-entropy for
    classes, MSE for regression). Probed on a made-up batch so that a loss that does not fit the
    task stops before training (``Task.loss_fits``)."""
    check_loss(cfg)  # the task's own loss takes no keys
    node = cfg.loss
    if node._target_ is None:
        return task.default_loss()
    name = str(node._target_)
    try:
        loss = instantiate(node)
    except Exception as err:  # Hydra wraps the import or constructor error
        reason = " ".join(str(err).split())
        raise ConfigError(f"Config key 'loss._target_' = {name!r} could not be built: {reason}") from err
    if not isinstance(loss, nn.Module):
        raise ConfigError(
            f"Config key 'loss._target_' = {name!r} made a {type(loss).__name__}, not a torch.nn loss."
        )
    try:
        # A loss of the other task may warn about broadcasting before it fails the probe: quiet.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits = task.loss_fits(loss)
    except Exception:  # noqa: BLE001 -- any failure on the task's batch means the loss does not fit it
        fits = False
    if not fits:
        raise ConfigError(
            f"Config key 'loss._target_' = {name!r} is not a {task.name} loss (tried on a made-up "
            f"{task.name} batch, it does not fall as the predictions improve): use {task.suggested_losses}."
        )
    return loss


def optimization(cfg: Config) -> Optimization:
    """The optimizer (``optim``) and learning-rate scheduler (``scheduler``), as ``fit`` takes them."""
    # Keys left at None belong to other optimizers (momentum is SGD's, not Adam's).
    options = {k: v for k, v in plain(cfg.optim).items() if v is not None}
    schedule = cfg.scheduler
    scheduler = None
    if schedule._target_ is not None:
        # The scheduler's own arguments; interval, frequency and monitor are Lightning's.
        lightning = ("interval", "frequency", "monitor")
        scheduler = instantiate({k: v for k, v in plain(schedule).items() if k not in lightning})
    return Optimization(
        instantiate(options), scheduler, schedule.interval.value, schedule.frequency, schedule.monitor
    )


def drop_advert(record: logging.LogRecord) -> bool:
    """A logging filter: every Trainer without Lightning's cloud logger logs a "Tip" to install
    it (litlogger); glassnet logs to MLflow, so nobody running a stage can act on it."""
    return "litlogger" not in record.getMessage()


def build_trainer(
    cfg: Config, tracked: bool, partial: Path, *, train_rows: int | None = None
) -> tuple[pl.Trainer, StageCallbacks]:
    """The Trainer of the train stage: ``cfg.trainer`` (any Trainer argument, checked against its
    signature), the stage's callbacks and those of ``train.callbacks``, checkpoints written
    atomically into ``partial``; and the stage's callbacks by role. ``tracked``: its logger
    (``trainer.logger``) will be set once the MLflow run exists.

    ``train_rows`` (the train split's size) sets ``log_every_n_steps`` where the config does not:
    Lightning warns when an epoch has fewer steps than that interval (default 50).
    """
    check_open(cfg)
    stage = StageCallbacks(
        history=History(),
        weight_history=WeightHistory(),
        gradient_norms=GradientNorms(),
        checkpoint=ModelCheckpoint(
            dirpath=partial, filename="best", monitor="val_loss", mode="min", save_last=True
        ),
    )
    callbacks: list[pl.Callback] = [
        EpochSeed(cfg.seed),
        stage.history,
        stage.weight_history,
        stage.gradient_norms,
        stage.checkpoint,
        EarlyStopping(monitor="val_loss", mode="min", patience=cfg.train.early_stopping_patience),
        *configured_callbacks(cfg.train.callbacks, "train.callbacks"),
    ]
    options: dict[str, Any] = {}
    given: Any = cfg.trainer  # a DictConfig, open: it has .get and `in`
    # Lightning's bar (on stdout) follows GLASSNET_PROGRESS as glassnet's own bars do: written to
    # a pipe or a log it is one final line, and its per-step updates took 3% of a default digits fit.
    if given.enable_progress_bar and not progress.shown(sys.stdout):
        options["enable_progress_bar"] = False
    if given.get("profiler") is None:  # Lightning's default, which records nothing, made cheaper
        options["profiler"] = NoProfiler()
    if tracked and train_rows and "log_every_n_steps" not in given and not given.get("barebones"):
        options["log_every_n_steps"] = log_interval(cfg, train_rows)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        if drop_advert not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(drop_advert)
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=False,
        plugins=[AtomicCheckpointIO()],
        enable_model_summary=False,
        **options,
    )
    return trainer, stage


def log_interval(cfg: Config, train_rows: int) -> int:
    """Lightning's ``log_every_n_steps`` (default 50), at most the steps of one epoch on one rank:
    the split over the devices named (1 if "auto"), in batches, cut by limit_train_batches."""
    given: Any = cfg.trainer
    ranks = 1
    if isinstance(given.devices, int) and given.devices > 0:
        ranks = given.devices
    elif OmegaConf.is_list(given.devices):
        ranks = len(given.devices)
    steps = math.ceil(math.ceil(train_rows / (ranks * given.num_nodes)) / cfg.train.batch_size)
    limit = given.get("limit_train_batches")
    if isinstance(limit, float):
        steps = int(steps * limit)
    elif isinstance(limit, int):
        steps = min(steps, limit)
    return max(1, min(50, steps))


def check_open(cfg: Config) -> None:
    """Check the open sections' keys against their targets' signatures (imports the targets)."""
    check_arguments(cfg.trainer, "trainer", reserved=STAGE_TRAINER_ARGS)
    scheduler = cast(DictConfig, cfg.scheduler)
    lightning_keys = {f.name for f in dataclasses.fields(SchedulerConfig)}
    if scheduler["_target_"] is None:
        extra = [str(name) for name in scheduler if name not in lightning_keys]
        if extra:
            raise ConfigError(
                f"Config key 'scheduler.{extra[0]}' is set but scheduler._target_ is null (a constant "
                "learning rate): pick a scheduler, e.g. scheduler=cosine, or drop the key."
            )
        return
    check_arguments(
        scheduler,
        "scheduler",
        exclude=lightning_keys,
        reserved={"optimizer": "it passes the optimizer built from optim"},
    )


def check_loss(cfg: Config) -> None:
    """The loss node's keys against its ``_target_``'s signature; with no ``_target_`` (the task's
    own loss) it takes no keys."""
    loss = cast(DictConfig, cfg.loss)
    if loss["_target_"] is None:
        extra = [str(name) for name in loss if name != "_target_"]
        if extra:
            raise ConfigError(
                f"Config key 'loss.{extra[0]}' is set but loss._target_ is null (the task's own loss): "
                "pick a loss, e.g. loss=huber, or drop the key."
            )
        return
    check_arguments(loss, "loss")
