"""The fit: a network trained on the train split, validated on val every epoch, and what it leaves
(the best epoch's weights, the metrics, the loss along the line from the initial weights).

    training = build.training(cfg, task.of(summary), input_shape, train_rows, tracked, partial)
    module = training.fit(shaped(arrays, input_shape))
    fitted = training.result(module, arrays)

``fit`` alone takes any network, optimizer factory and Trainer (benchmarks and tests use it so).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn

from pipeline.errors import TrainingError
from pipeline.nets import model
from pipeline.task import Task
from pipeline.training import dynamics
from pipeline.training.callbacks import GradientNorms, History, WeightHistory
from pipeline.training.learner import InMemoryData, Learner, Optimization


def fit(
    net: nn.Module,
    optimization: Any,
    arrays: dict[str, np.ndarray],
    trainer: pl.Trainer,
    batch_size: int,
    seed: int,
    ckpt_path: Path | None = None,
    loss: nn.Module | None = None,
    target_scale: tuple[float, float] | None = None,
) -> Learner:
    """Fit ``net`` on the train split, validating on val each epoch (from a checkpoint if given).

    ``optimization``: an ``Optimization`` (see ``build.optimization``) or a plain optimizer factory
    such as ``functools.partial(torch.optim.Adam, lr=1e-3)``. ``loss``: the training loss (None:
    the task's own); ``target_scale``: a regression target's train (mean, std), see ``Learner``.
    """
    module = Learner(net, optimization, loss, target_scale)
    with warnings.catch_warnings():
        # Warnings Lightning raises inside fit that say nothing about this run:
        # - torch 2.13 deprecated constructing torch.utils._pytree.LeafSpec, which Lightning's
        #   CombinedLoader still does for every loader; the class works as before.
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        # - the data are tensors in memory: DataLoader worker processes would only copy them.
        warnings.filterwarnings("ignore", message=r"The '\w+' does not have many workers")
        # - the checkpoint folder is this run's own: the stage clears it unless resuming, and it holds
        #   the run's id and config (written before the fit) and, resuming, the checkpoints resumed from.
        checkpoint = trainer.checkpoint_callback
        if isinstance(checkpoint, ModelCheckpoint) and checkpoint.dirpath is not None:
            folder = re.escape(str(checkpoint.dirpath))
            warnings.filterwarnings(
                "ignore", message=rf"Checkpoint directory {folder} exists and is not empty"
            )
        trainer.fit(module, datamodule=InMemoryData(arrays, batch_size, seed), ckpt_path=ckpt_path)
    return module


def shaped(arrays: dict[str, np.ndarray], input_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The splits as the network takes them: images with their shape (channels, height, width),
    tables as rows."""
    return {k: v.reshape(len(v), *input_shape) if k.startswith("X_") else v for k, v in arrays.items()}


def check_finite(rows: list[dict[str, float]]) -> None:
    """Raise naming the first epoch whose loss is NaN or infinite."""
    for row in rows:
        for key in ("train_loss", "val_loss"):
            if key in row and not math.isfinite(row[key]):
                raise TrainingError(
                    f"Training diverged: {key} is {row[key]} at epoch {int(row['epoch'])}. "
                    "Lower the learning rate (e.g. optim.lr=0.0001) or the batch size and rerun."
                )


def best_weights(checkpoint: str) -> dict[str, torch.Tensor]:
    """The network's weights from a Lightning checkpoint, loaded without unpickling code."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return {key.removeprefix("net."): value for key, value in state.items()}


def last_linear(net: nn.Module) -> nn.Linear | None:
    """The network's last ``nn.Linear`` module (in registration order) with a single output."""
    found = [m for m in net.modules() if isinstance(m, nn.Linear)]
    return found[-1] if found and found[-1].out_features == 1 else None


def fold_target_scale(net: nn.Module, mean: float, std: float) -> None:
    """Fold the target's scaling into the last Linear layer (W -> W * std, b -> b * std + mean), so
    the saved network predicts in the target's own units and every later stage (and a user loading
    the MLflow model) reads its output as it is. Valid when that layer's output is the network's
    output, which ``build.check_foldable`` verifies before training."""
    layer = last_linear(net)
    assert layer is not None and layer.bias is not None, "check_foldable ran before training"
    with torch.no_grad():
        layer.weight.mul_(std)
        layer.bias.mul_(std).add_(mean)


@dataclass
class StageCallbacks:
    """The train stage's own callbacks, by what they record."""

    history: History
    weight_history: WeightHistory
    gradient_norms: GradientNorms
    checkpoint: ModelCheckpoint


@dataclass
class Fitted:
    """What a fit leaves: the network with the best epoch's weights (eval mode, a regression
    target's scaling folded in), its metrics (``train.json``), the best epoch's history row and
    the loss along the line from the initial weights (empty for a run resumed from a checkpoint
    that holds no initial weights)."""

    net: nn.Module
    metrics: dict[str, float | int]
    best: dict[str, float]
    loss_line: dict[str, list[float]]


@dataclass
class Training:
    """One fit, built from config and checked (``build.training``): the network and its
    constructor ``arguments``, the loss, the optimizer, the Trainer and the stage's callbacks."""

    task: Task
    input_shape: tuple[int, ...]
    net: nn.Module
    arguments: dict[str, Any]
    loss: nn.Module
    optimization: Optimization
    trainer: pl.Trainer
    callbacks: StageCallbacks
    batch_size: int
    seed: int

    def fit(self, arrays: dict[str, np.ndarray], ckpt_path: Path | None = None) -> Learner:
        """The fit on ``arrays`` shaped for the network (``shaped``), from ``ckpt_path`` if given;
        stops naming the epoch where the loss stopped being finite."""
        module = fit(
            self.net,
            self.optimization,
            arrays,
            self.trainer,
            self.batch_size,
            self.seed,
            ckpt_path,
            self.loss,
            self.task.target_scale,
        )
        check_finite(self.callbacks.history.rows)
        return module

    def result(self, module: Learner, arrays: dict[str, np.ndarray]) -> Fitted:
        """After the fit: the best weights kept, the metrics, the loss line (``arrays``: the flat
        splits). The line is measured with the loss the optimizer saw, so before the target's
        scaling is folded into the weights."""
        history, checkpoint = self.callbacks.history, self.callbacks.checkpoint
        net = module.net
        if checkpoint.best_model_path:
            net.load_state_dict(best_weights(checkpoint.best_model_path))
        net.eval()
        best = min(history.rows, key=lambda row: row["val_loss"])
        second = self.task.second_metric
        metrics = {
            "best_val_loss": best["val_loss"],
            f"best_val_{second}": best[f"val_{second}"],
            "best_epoch": int(best["epoch"]),
            "epochs_run": len(history.rows),
            "n_parameters": model.n_parameters(net),
        }
        initial = self.callbacks.weight_history.initial
        line = (
            dynamics.loss_line(net, initial, arrays, self.input_shape, self.seed, module.batch_loss)
            if initial
            else {}
        )
        if module.target_scale is not None:
            fold_target_scale(net, *module.target_scale)
        return Fitted(net, metrics, best, line)
