"""Stage 2: train the network with PyTorch Lightning, tracked in a new MLflow run.

    python -m pipeline train
    python -m pipeline train trainer.max_epochs=1 model.hidden_sizes=[32]
    python -m pipeline train +experiment=keras_two_layer

Writes ``<paths.train>/model.pt`` (architecture + weights of the best epoch by
validation loss), ``run.json`` (the MLflow run every later stage attaches to),
``weight_history.json`` (weight quantiles per layer before training and after each epoch),
the per-epoch history (a DVC plot) and the train metrics (a DVC metric).
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import shutil
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pipeline import artifacts, io, layout, progress, task
from pipeline.config import Config
from pipeline.data import datasets
from pipeline.errors import ConfigError, GlassnetError, TrainingError
from pipeline.nets.arch import summary_line
from pipeline.tracking import inputs, location, models, provenance, runs
from pipeline.tracking.logger import RunLogger

if TYPE_CHECKING:
    import pytorch_lightning as pl
    import torch
    from torch import nn

    from pipeline.training.lit import Learner, Optimization

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")
REGRESSION_HISTORY_COLUMNS = ("epoch", "train_loss", "train_rmse", "val_loss", "val_rmse")


def history_columns(summary: dict[str, Any]) -> tuple[str, ...]:
    """The history file's columns: accuracy beside the loss, or RMSE (target units) for regression."""
    return REGRESSION_HISTORY_COLUMNS if task.is_regression(summary) else HISTORY_COLUMNS


def build_net(cfg: Config, input_shape: Sequence[int], n_classes: int) -> tuple[nn.Module, dict[str, Any]]:
    """The network ``model._target_`` names, with the ``model`` keys as its arguments and the data's
    shape and class count for the arguments that name them (``model.SHAPE_ARGUMENTS``); and the
    arguments used. Checked before any training: a key the constructor does not take or needs, a
    class that cannot be imported, an output that is not (batch, classes) each stop with a line
    naming the key or the shape. ``n_classes`` 0 means regression: one output, from a final Linear
    layer (see ``check_foldable``), passed to the constructor as a class count of 1."""
    import torch
    from hydra.utils import get_class

    from pipeline.config import check_arguments
    from pipeline.nets import model

    target = str(cfg.model._target_)
    regression = n_classes == 0
    n_classes = n_classes or 1
    try:
        cls = get_class(target)
    except Exception as err:  # Hydra raises ImportError or ValueError, depending on what failed
        cause = err.__cause__ or err  # Hydra's own message spans lines; the import's error says it
        raise ConfigError(
            f"Config key 'model._target_' = {target!r} cannot be imported ({type(cause).__name__}: "
            f"{' '.join(str(cause).split())}). Check the name, and that its module is on PYTHONPATH "
            "(e.g. `PYTHONPATH=. python -m pipeline train`)."
        ) from err
    raw = OmegaConf.to_container(cfg.model, resolve=True, enum_to_str=True)
    assert isinstance(raw, dict)
    given: dict[str, Any] = {
        str(k): v for k, v in raw.items() if not (str(k).startswith("_") and str(k).endswith("_"))
    }
    reserved = {name: "it passes the data's shape and class count" for name in model.SHAPE_ARGUMENTS}
    check_arguments(cfg.model, "model", reserved=reserved)
    arguments: dict[str, Any] = {**model.shape_arguments(cls, input_shape, n_classes), **given}
    params = inspect.signature(cls).parameters
    for name, p in params.items():
        if (
            p.default is inspect.Parameter.empty
            and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            and name not in arguments
        ):
            raise ConfigError(
                f"Config key 'model.{name}' is required by {target}: set it, e.g. `+model.{name}=...` "
                f"(the train stage passes only {', '.join(model.SHAPE_ARGUMENTS)} itself)."
            )
    try:
        net = model.build(target, arguments)
    except GlassnetError:
        raise
    except Exception as err:  # the user's constructor rejected its arguments
        raise ConfigError(
            f"model._target_ {target} could not be built from model.*: {type(err).__name__}: {err}"
        ) from err
    if not isinstance(net, torch.nn.Module):
        raise ConfigError(f"model._target_ {target} made a {type(net).__name__}, not a torch.nn.Module.")
    probe = torch.zeros(2, *input_shape)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(probe)
    except Exception as err:  # noqa: BLE001 -- any failure of the user's forward is reported the same way
        raise ConfigError(
            f"model._target_ {target} fails on a batch of shape {tuple(probe.shape)} (batch, "
            f"*input_shape): {type(err).__name__}: {err}. The data's rows have shape {tuple(input_shape)}."
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
    if regression:
        check_foldable(net, target, probe)
    return net, arguments


def last_linear(net: nn.Module) -> nn.Linear | None:
    """The network's last ``nn.Linear`` module (in registration order) with a single output."""
    from torch import nn

    found = [m for m in net.modules() if isinstance(m, nn.Linear)]
    return found[-1] if found and found[-1].out_features == 1 else None


def fold_target_scale(net: nn.Module, mean: float, std: float) -> None:
    """Fold the target's scaling into the last Linear layer (W -> W * std, b -> b * std + mean), so
    the saved network predicts in the target's own units and every later stage (and a user loading
    the MLflow model) reads its output as it is. Valid when that layer's output is the network's
    output, which ``check_foldable`` verifies before training."""
    import torch

    layer = last_linear(net)
    assert layer is not None and layer.bias is not None, "check_foldable ran before training"
    with torch.no_grad():
        layer.weight.mul_(std)
        layer.bias.mul_(std).add_(mean)


def check_foldable(net: nn.Module, target: str, probe: torch.Tensor) -> None:
    """A regression network must end in a Linear layer with one output (its prediction) and a
    bias, so the target's scaling can be folded into it: checked on a copy with a made-up scale."""
    import copy

    import torch

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


def build_loss(cfg: Config, summary: dict[str, Any]) -> nn.Module:
    """The training loss: ``loss._target_`` with its own keys, or the task's own (cross-entropy for
    classes, MSE for regression). Probed on a made-up batch so that a loss that does not fit the
    task stops before training: a regression loss must be 0 where the prediction equals the target
    and grow with the error; a classification loss must prefer logits that favour the true class."""
    import warnings

    import torch
    from torch import nn

    from pipeline.config import check_loss

    regression = task.is_regression(summary)
    node = cfg.loss
    if node._target_ is None:
        check_loss(cfg)  # the task's own loss takes no keys
        return nn.MSELoss() if regression else nn.CrossEntropyLoss()
    check_loss(cfg)
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
            if regression:
                y = torch.tensor([0.5, -1.0, 2.0])
                fits = float(loss(y, y)) < 1e-6 < float(loss(y + 1.0, y)) < float(loss(y + 2.0, y))
            else:
                y = torch.tensor([0, 1, 2])
                right, wrong = torch.eye(3) * 4.0, torch.eye(3)[[1, 2, 0]] * 4.0
                fits = float(loss(right, y)) < float(loss(wrong, y))
    except Exception:  # noqa: BLE001 -- any failure on the task's batch means the loss does not fit it
        fits = False
    if not fits:
        kind = task.name_of(summary)
        hint = "loss=mse, loss=huber or loss=l1" if regression else "loss=cross_entropy (or loss=auto)"
        raise ConfigError(
            f"Config key 'loss._target_' = {name!r} is not a {kind} loss (tried on a made-up {kind} "
            f"batch, it does not fall as the predictions improve): use {hint}."
        )
    return loss


def optimizer_factory(cfg: Config) -> Optimization:
    """The optimizer (``optim``) and learning-rate scheduler (``scheduler``), as ``fit`` takes them."""
    from pipeline.training.lit import Optimization

    # Keys left at None belong to other optimizers (momentum is SGD's, not Adam's).
    options = {k: v for k, v in OmegaConf.to_container(cfg.optim).items() if v is not None}  # type: ignore[union-attr]
    schedule = cfg.scheduler
    scheduler = None
    if schedule._target_ is not None:
        # The scheduler's own arguments; interval, frequency and monitor are Lightning's.
        lightning = ("interval", "frequency", "monitor")
        own = OmegaConf.to_container(schedule, resolve=True)
        assert isinstance(own, dict)
        scheduler = instantiate({k: v for k, v in own.items() if k not in lightning})
    return Optimization(
        instantiate(options), scheduler, schedule.interval.value, schedule.frequency, schedule.monitor
    )


def check_finite(rows: list[dict[str, float]]) -> None:
    """Raise naming the first epoch whose loss is NaN or infinite."""
    for row in rows:
        for key in ("train_loss", "val_loss"):
            if key in row and not math.isfinite(row[key]):
                raise TrainingError(
                    f"Training diverged: {key} is {row[key]} at epoch {int(row['epoch'])}. "
                    "Lower the learning rate (e.g. optim.lr=0.0001) or the batch size and rerun."
                )


def fit(
    net: torch.nn.Module,
    optimization: Any,
    arrays: dict[str, np.ndarray],
    trainer: pl.Trainer,
    batch_size: int,
    seed: int,
    ckpt_path: Path | None = None,
    loss: nn.Module | None = None,
    target_scale: tuple[float, float] | None = None,
) -> Learner:
    """Core: fit ``net`` on the train split, validating on val each epoch (from a checkpoint if given).

    ``optimization``: a ``lit.Optimization`` (see optimizer_factory) or a plain optimizer factory
    such as ``functools.partial(torch.optim.Adam, lr=1e-3)``. ``loss``: the training loss (None:
    the task's own); ``target_scale``: a regression target's train (mean, std), see ``lit.Learner``.
    """
    import re
    import warnings

    from pytorch_lightning.callbacks import ModelCheckpoint

    from pipeline.training.lit import InMemoryData, Learner

    module = Learner(net, optimization, loss, target_scale)
    with warnings.catch_warnings():
        # Warnings Lightning raises inside fit that say nothing about this run:
        # - torch 2.13 deprecated constructing torch.utils._pytree.LeafSpec, which Lightning's
        #   CombinedLoader still does for every loader; the class works as before.
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        # - the data are tensors in memory: DataLoader worker processes would only copy them.
        warnings.filterwarnings("ignore", message=r"The '\w+' does not have many workers")
        # - the checkpoint folder is this run's own: run() clears it unless resuming, and it holds
        #   the run's id and config (written before the fit) and, resuming, the checkpoints resumed from.
        checkpoint = trainer.checkpoint_callback
        if isinstance(checkpoint, ModelCheckpoint) and checkpoint.dirpath is not None:
            folder = re.escape(str(checkpoint.dirpath))
            warnings.filterwarnings(
                "ignore", message=rf"Checkpoint directory {folder} exists and is not empty"
            )
        trainer.fit(module, datamodule=InMemoryData(arrays, batch_size, seed), ckpt_path=ckpt_path)
    return module


def best_weights(checkpoint: str) -> dict[str, torch.Tensor]:
    """The network's weights from a Lightning checkpoint, loaded without unpickling code."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return {key.removeprefix("net."): value for key, value in state.items()}


def run_tags(summary: dict[str, Any], data_md5s: dict[str, str]) -> dict[str, str]:
    """What a run needs to be reproduced: code version, data fingerprint, libraries, DVC context.
    ``data_md5s``: {file: MD5} of the prepared data folder (``provenance.file_md5s``)."""
    tags = {
        **provenance.git_info(location.project_root()),
        **provenance.versions(),
        "dataset": summary["dataset"],
        "task": task.name_of(summary),
        "data_md5": provenance.combined_md5(data_md5s),
        "dvc_stage": "train",
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("GLASSNET_SWEEP"):  # set by pipeline.cli in a Hydra multirun
        tags["sweep"] = os.environ["GLASSNET_SWEEP"]
        tags["sweep_job"] = os.environ.get("GLASSNET_SWEEP_JOB", "")
    return tags


def tracked_config(cfg: Config) -> dict[str, Any]:
    """The config sections this stage reads, as plain values: the run's params and config.yaml.
    The publish stage logs the later stages' sections to the same run."""
    sections = {
        "seed": cfg.seed,
        "task": cfg.task.value if cfg.task is not None else None,
        "data": cfg.data,
        "model": cfg.model,
        "optim": cfg.optim,
        "scheduler": cfg.scheduler,
        "loss": cfg.loss,
        "trainer": cfg.trainer,
        "train": cfg.train,
        "tracking": cfg.tracking,
    }
    return {
        name: OmegaConf.to_container(value, resolve=True, enum_to_str=True)
        if OmegaConf.is_config(value)
        else value
        for name, value in sections.items()
    }


def resumable_config(cfg: Config) -> str:
    """The config as a resumed run must match it (whether to resume aside)."""
    plain = tracked_config(cfg)
    plain["train"]["resume"] = False
    return yaml.safe_dump(plain, sort_keys=True)


def resume_point(cfg: Config, partial: Path) -> tuple[Path | None, str | None]:
    """(checkpoint, MLflow run id) of an interrupted run to continue, if asked and possible."""
    last, run_id, config = partial / "last.ckpt", partial / "run_id", partial / "config.yaml"
    if not cfg.train.resume:
        return None, None
    if not (last.exists() and run_id.exists() and config.exists()):
        log.warning("train.resume=true but %s holds no interrupted run: training from scratch", partial)
        return None, None
    if config.read_text() != resumable_config(cfg):
        raise ConfigError(
            f"train.resume=true, but the interrupted run in {partial} used a different configuration "
            f"(see {config}). Resume with that configuration, or drop train.resume to start afresh."
        )
    return last, run_id.read_text().strip()


def drop_advert(record: logging.LogRecord) -> bool:
    """A logging filter: every Trainer without Lightning's cloud logger logs a "Tip" to install
    it (litlogger); glassnet logs to MLflow, so nobody running a stage can act on it."""
    return "litlogger" not in record.getMessage()


def build_trainer(
    cfg: Config, tracked: bool, partial: Path, *, train_rows: int | None = None
) -> tuple[pl.Trainer, dict[str, Any]]:
    """The Trainer of the train stage: ``cfg.trainer`` (any Trainer argument, checked against its
    signature), the stage's callbacks and those of ``train.callbacks``, checkpoints written
    atomically into ``partial``; and the stage's callbacks by role (history, weight_history,
    checkpoint). ``tracked``: its logger (``trainer.logger``) will be set once the MLflow run exists.

    ``train_rows`` (the train split's size) sets ``log_every_n_steps`` where the config does not:
    Lightning warns when an epoch has fewer steps than that interval (default 50).
    """
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from pipeline.config import check_open
    from pipeline.training.lit import (
        AtomicCheckpointIO,
        EpochSeed,
        GradientNorms,
        History,
        NoProfiler,
        WeightHistory,
        configured_callbacks,
    )

    check_open(cfg)
    roles = {
        "history": History(),
        "weight_history": WeightHistory(),
        "gradient_norms": GradientNorms(),
        "checkpoint": ModelCheckpoint(
            dirpath=partial, filename="best", monitor="val_loss", mode="min", save_last=True
        ),
    }
    callbacks: list[pl.Callback] = [
        EpochSeed(cfg.seed),
        roles["history"],
        roles["weight_history"],
        roles["gradient_norms"],
        roles["checkpoint"],
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
        # Steps per epoch on one rank: the split over the devices named (1 if "auto"), in batches,
        # cut by limit_train_batches. Lightning's default interval is 50 steps.
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
        options["log_every_n_steps"] = max(1, min(50, steps))
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
    return trainer, roles


def run(cfg: Config) -> dict[str, Any]:
    arrays, summary = artifacts.load_data(cfg)
    datasets.check_batch_size(len(arrays["y_train"]), cfg.train.batch_size)
    uri = location.prepare_uri(location.resolve_uri(cfg.tracking.uri), cfg.tracking.fallback_to_local)
    data_md5s = provenance.file_md5s(layout.data_file(cfg))
    tags = run_tags(summary, data_md5s)

    # Checkpoints of this fit go to a folder that replaces the last good one only on success: a
    # failed or killed run leaves the previous outputs alone, and `train.resume=true` continues it.
    partial = layout.checkpoint_dir(cfg).with_name("checkpoints.partial")
    ckpt_path, resumed_run = resume_point(cfg, partial)
    stale = None  # the run of a stage that died without a word, if not resumed: still RUNNING
    if ckpt_path is None:
        if (partial / "run_id").exists():
            stale = (partial / "run_id").read_text().strip()
        shutil.rmtree(partial, ignore_errors=True)
    tracked = runs.launch_rank() == 0  # under DDP only rank 0 tracks
    # The network and the Trainer are built and checked before the run opens: a bad model or
    # Trainer key stops here, leaving no FAILED run behind in the user's MLflow list.
    net, arguments, loss, trainer, roles = _build(cfg, arrays, summary, tracked, partial)
    if not tracked:
        return _train(
            cfg, arrays, summary, net, arguments, loss, trainer, roles, None, partial, ckpt_path, tags
        )

    # client.create_run sets no source tags (MLflow's fluent API does): name this command.
    source = {"mlflow.source.name": sys.argv[0], "mlflow.source.type": "LOCAL"}
    params = runs.flatten(tracked_config(cfg))
    experiment, name = cfg.tracking.experiment, cfg.tracking.run_name
    started = runs.start(uri, experiment, name, {**tags, **source}, params, resume=resumed_run, stale=stale)
    if started.warning:
        log.warning("%s", started.warning)
    if started.killed:
        log.warning(
            "MLflow run %s of an earlier train stage that stopped without a word (killed?) "
            "was still RUNNING: marked KILLED",
            started.killed,
        )
    try:
        logger = RunLogger(uri, started.run_id)
        trainer.logger = logger
        if not started.resumed:  # a resumed run holds its inputs already
            inputs.log_splits(
                uri,
                started.run_id,
                layout.data_file(cfg).resolve(),
                summary["dataset"],
                summary.get("uri"),
                str(summary.get("loader", "")),
                inputs.split_digests(data_md5s),
            )
        return _train(
            cfg, arrays, summary, net, arguments, loss, trainer, roles, logger, partial, ckpt_path, tags
        )
    except BaseException as err:
        killed = isinstance(err, KeyboardInterrupt | SystemExit)
        _end_run(uri, started.run_id, "KILLED" if killed else "FAILED")
        raise


def _build(
    cfg: Config, arrays: dict[str, np.ndarray], summary: dict[str, Any], tracked: bool, partial: Path
) -> tuple[torch.nn.Module, dict[str, Any], nn.Module, pl.Trainer, dict[str, Any]]:
    """The seeded network (and its constructor arguments), the loss and the Trainer, all checked."""
    import pytorch_lightning as pl

    regression = task.is_regression(summary)
    objectives = ("best_val_loss", "best_val_rmse" if regression else "best_val_acc")
    if cfg.train.objective.value not in objectives:
        raise ConfigError(
            f"Config key 'train.objective' = {cfg.train.objective.value!r} does not exist for a "
            f"{task.name_of(summary)} run: use one of {', '.join(objectives)}."
        )
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    net, arguments = build_net(cfg, artifacts.input_shape(summary), 0 if regression else summary["n_classes"])
    loss = build_loss(cfg, summary)
    trainer, roles = build_trainer(cfg, tracked, partial, train_rows=len(arrays["y_train"]))
    return net, arguments, loss, trainer, roles


def _end_run(uri: str, run_id: str, status: str) -> None:
    """Mark the run ``status`` (FAILED, KILLED); best effort, never raises (the store may be what failed)."""
    try:
        runs.terminate(uri, run_id, status)
    except Exception as err:  # noqa: BLE001 -- already failing; keep the original error
        log.warning("Could not mark MLflow run %s as %s: %s", run_id, status, err)


def _train(
    cfg: Config,
    arrays: dict[str, np.ndarray],
    summary: dict[str, Any],
    net: torch.nn.Module,
    arguments: dict[str, Any],
    loss: nn.Module,
    trainer: pl.Trainer,
    roles: dict[str, Any],
    logger: RunLogger | None,
    partial: Path,
    ckpt_path: Path | None,
    tags: dict[str, str],
) -> dict[str, Any]:
    if trainer.is_global_zero:
        if logger is None:
            raise TrainingError(
                "Lightning made this process rank 0, but RANK / LOCAL_RANK / SLURM_PROCID in the "
                "environment said otherwise, so it did not start MLflow tracking. Unset them and rerun."
            )
        io.write_text(partial / "run_id", str(logger.run_id))
        io.write_text(partial / "config.yaml", resumable_config(cfg))
    started = datetime.now(timezone.utc)
    # Images reach the network with their shape (channels, height, width); tables as rows.
    shape = artifacts.input_shape(summary)
    shaped = {k: v.reshape(len(v), *shape) if k.startswith("X_") else v for k, v in arrays.items()}
    scale = (summary["target_mean"], summary["target_std"]) if task.is_regression(summary) else None
    module = fit(
        net, optimizer_factory(cfg), shaped, trainer, cfg.train.batch_size, cfg.seed, ckpt_path, loss, scale
    )
    check_finite(roles["history"].rows)
    if not trainer.is_global_zero or logger is None:
        # Under DDP every rank trains; only rank 0 logs to MLflow and writes the outputs.
        if logger is not None:  # the environment named no rank, yet Lightning made this one non-zero
            runs.terminate(logger.uri, str(logger.run_id), "KILLED")
        return {"rank": trainer.global_rank, "objective": float("nan")}
    return _finish(cfg, module, summary, arguments, shape, arrays, roles, partial, logger, tags, started)


def loss_line(
    net: torch.nn.Module,
    initial: dict[str, torch.Tensor],
    arrays: dict[str, np.ndarray],
    shape: tuple[int, ...],
    seed: int,
    criterion: Any = None,
) -> dict[str, list[float]]:
    """The loss on the line from the initial to the kept weights (pipeline.training.dynamics), on at most
    ``dynamics.MAX_ROWS`` seeded rows of the train and validation splits each; ``criterion``: the
    loss trained on (``Learner.batch_loss``; None: cross-entropy)."""
    from pipeline import stats
    from pipeline.training import dynamics

    splits = {}
    for split in ("train", "val"):
        y = arrays[f"y_{split}"]
        rows = stats.subsample(len(y), dynamics.MAX_ROWS, seed)
        splits[split] = (np.asarray(arrays[f"X_{split}"][rows]).reshape(len(rows), *shape), y[rows])
    found = dynamics.loss_along_line(net, initial, splits, criterion=criterion)
    return {"alpha": [float(a) for a in dynamics.ALPHAS], **found}


def _finish(
    cfg: Config,
    module: Learner,
    summary: dict[str, Any],
    arguments: dict[str, Any],
    shape: tuple[int, ...],
    arrays: dict[str, np.ndarray],
    roles: dict[str, Any],
    partial: Path,
    logger: RunLogger,
    tags: dict[str, str],
    started: datetime,
) -> dict[str, Any]:
    """After a successful fit: keep the best weights, log the model, write every output."""
    from pipeline.nets import model

    history, weight_history, checkpoint = roles["history"], roles["weight_history"], roles["checkpoint"]
    net = module.net
    if checkpoint.best_model_path:
        net.load_state_dict(best_weights(checkpoint.best_model_path))
    net.eval()
    best = min(history.rows, key=lambda row: row["val_loss"])
    second = module.second_metric  # acc, or rmse (target units) for regression
    metrics = {
        "best_val_loss": best["val_loss"],
        f"best_val_{second}": best[f"val_{second}"],
        "best_epoch": int(best["epoch"]),
        "epochs_run": len(history.rows),
        "n_parameters": model.n_parameters(net),
    }
    # The loss the optimizer saw, so before the target's scaling is folded into the weights.
    # (A run resumed from a checkpoint of an older glassnet holds no initial weights: no line.)
    line = (
        loss_line(net, weight_history.initial, arrays, shape, cfg.seed, module.batch_loss)
        if weight_history.initial
        else {}
    )
    if module.target_scale is not None:
        fold_target_scale(net, *module.target_scale)
    staged_model = partial / "model.pt"
    target = str(cfg.model._target_)
    model.save(net, staged_model, target=target, arguments=arguments, input_shape=shape)
    uri, run_id = logger.uri, str(logger.run_id)
    fmt = cfg.tracking.model_format.value
    model_uri = models.log_saved(uri, run_id, staged_model.resolve(), arrays["X_test"][:5], fmt)
    texts = {"config.yaml": yaml.safe_dump(tracked_config(cfg), sort_keys=False)}
    runs.finish(uri, run_id, {k: float(v) for k, v in metrics.items()}, texts)
    info = runs.RunInfo(uri, cfg.tracking.experiment, str(logger.experiment_id), run_id, model_uri)

    # All outputs change together or not at all (a stop signal waits for the block to end).
    with io.uninterrupted():
        (partial / "run_id").unlink(missing_ok=True)
        (partial / "config.yaml").unlink(missing_ok=True)
        layout.model_file(cfg).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged_model, layout.model_file(cfg))
        shutil.rmtree(layout.checkpoint_dir(cfg), ignore_errors=True)
        partial.rename(layout.checkpoint_dir(cfg))
        io.write_json(
            layout.run_file(cfg),
            {
                **info.to_dict(),
                **tags,
                "started": started.isoformat(timespec="seconds"),
                "layers": model.describe(net),
                "arch": {"_target_": target, **model.plain(arguments)},
            },
        )
        columns = history_columns(summary)
        io.write_csv(
            cfg.paths.history,
            columns,
            [[int(r["epoch"]), *(r.get(c, float("nan")) for c in columns[1:])] for r in history.rows],
        )
        io.write_json(cfg.paths.train_metrics, metrics)
        io.write_json(layout.weight_history_file(cfg), weight_history.to_dict())
        io.write_json(layout.gradient_norms_file(cfg), roles["gradient_norms"].to_dict())
        io.write_json(layout.loss_line_file(cfg), line)
    log.info(
        "Trained %s: best val_loss %.4f, val_%s %.4f%s at epoch %d; MLflow run %s (%s)",
        summary_line({"_target_": target, **model.plain(arguments)}),
        best["val_loss"],
        second,
        best[f"val_{second}"],
        f" {task.target_name(summary)}" if second == "rmse" else "",
        best["epoch"],
        info.run_id,
        location.ui_command(info.tracking_uri),
    )
    return {**metrics, "run_id": info.run_id, "objective": float(metrics[cfg.train.objective.value])}


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
