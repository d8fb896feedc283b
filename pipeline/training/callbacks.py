"""What the train stage adds to Lightning's Trainer, through its public extension points: the
callbacks that seed each epoch and record the history, the weights and the gradients, those a user
names in ``train.callbacks``, atomic checkpoint writes and a profiler that records nothing cheaply.

    trainer = pl.Trainer(plugins=[AtomicCheckpointIO()], callbacks=[EpochSeed(seed), History(), ...])
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, cast

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.profilers import PassThroughProfiler
from torch import nn

from pipeline import io, stats
from pipeline.errors import ConfigError
from pipeline.nets.layers import WEIGHTED
from pipeline.training.learner import Learner


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoint writes that are atomic and cannot be cut short: the file is written beside its
    place and renamed onto it (``pipeline.io.atomic_path``), and a SIGTERM/SIGINT arriving during
    the write waits until it is done (``pipeline.io.uninterrupted``), so ``train.resume=true``
    never meets a half-written checkpoint. Given to the Trainer as ``plugins=[...]``."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:  # as TorchCheckpointIO: it has no use for them
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options")
        with io.uninterrupted(), io.atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


class NoProfiler(PassThroughProfiler):
    """Lightning's default profiler (records nothing), without the cost of recording nothing.

    Lightning wraps every hook call, and every callback's, in ``trainer.profiler.profile(name)``:
    some 100 a training step. The default PassThroughProfiler's ``profile`` is a generator-based
    context manager that calls its empty ``start`` and ``stop``, about 2 us each time; a
    ``nullcontext`` is a fraction of that. The train stage uses it when the config names no
    ``trainer.profiler``; any other profiler (``+trainer.profiler=simple``) is Lightning's own.
    """

    def profile(self, action_name: str) -> AbstractContextManager[str]:  # type: ignore[override]
        return nullcontext(action_name)


def configured_callbacks(entries: Any, key: str) -> list[pl.Callback]:
    """Lightning callbacks from config, a mapping name -> ``{_target_: ..., arguments}``; a bad
    entry raises ConfigError naming its key."""
    callbacks = []
    for name, entry in ((f"{key}.{name!s}", entry) for name, entry in entries.items()):
        if not isinstance(entry, DictConfig | dict) or "_target_" not in entry:
            raise ConfigError(
                f"Config key '{name}' must be a callback with a _target_, e.g. "
                f"+{name}._target_=pytorch_lightning.callbacks.LearningRateMonitor"
            )
        try:
            callback = instantiate(entry)
        except InstantiationException as err:
            reason = " ".join(str(err).split())
            raise ConfigError(
                f"Config key '{name}._target_' = {entry['_target_']!r} could not be built: {reason}"
            ) from err
        if not isinstance(callback, pl.Callback):
            raise ConfigError(
                f"Config key '{name}._target_' = {entry['_target_']!r} is not a Lightning callback "
                f"(a {type(callback).__name__})."
            )
        callbacks.append(callback)
    return callbacks


def packed(value: Any) -> str:
    """A callback's history (nested lists and dicts of numbers) as it goes into a checkpoint: one
    JSON string. torch.save's pickler calls back into Python for every object it writes, and the
    histories grow by some 40 numbers an epoch: as lists they were half of a late checkpoint's
    save time (3.5 ms against 2.0 ms on a 60-epoch digits run), and a run saves one or two a epoch.
    A string also loads under ``weights_only=True``."""
    return json.dumps(value)


def unpacked(value: Any) -> Any:
    """``packed``'s inverse; a checkpoint of an older glassnet holds the lists themselves."""
    return json.loads(value) if isinstance(value, str) else value


class EpochSeed(pl.Callback):
    """Seeds torch's global RNG from (seed, epoch) as each epoch starts: the dropout masks of epoch k
    are the same whether the run went straight through or was resumed from a checkpoint (the batch
    order already is: see InMemoryData)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.manual_seed(self.seed * 100_003 + trainer.current_epoch)


class History(pl.Callback):
    """Collects per-epoch metrics for the history file and the training-curve plot.

    Lightning publishes an epoch's aggregated train metrics only after the
    ``on_train_epoch_end`` hooks, so they are read when the next epoch starts
    (or the fit ends); validation metrics are read at the end of validation.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    # Saved in checkpoints, so a resumed run keeps the epochs before the interruption.
    def state_dict(self) -> dict[str, Any]:
        return {"rows": packed(self.rows)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in unpacked(state_dict["rows"])]

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # Callbacks' hooks run before the module's: have it log the epoch's val metrics now.
        if isinstance(pl_module, Learner):
            pl_module.log_epoch("val")
        row = {"epoch": float(trainer.current_epoch)}
        row.update(pick(trainer, ("val_loss", "val_acc", "val_rmse")))
        self.rows.append(row)

    def fill_train(self, trainer: pl.Trainer) -> None:
        if self.rows and "train_loss" not in self.rows[-1]:
            self.rows[-1].update(pick(trainer, ("train_loss", "train_acc", "train_rmse")))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fill_train(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fill_train(trainer)


def pick(trainer: pl.Trainer, keys: tuple[str, ...]) -> dict[str, float]:
    metrics = trainer.callback_metrics
    return {key: float(metrics[key]) for key in keys if key in metrics}


def weighted_layers(pl_module: nn.Module) -> list[tuple[str, torch.Tensor, torch.Tensor | None]]:
    """(name, weight, bias) of each weighted layer (``pipeline.nets.layers.WEIGHTED``) of the
    module's network, named as in the saved network's state dict ("net.0"), not the Learner's."""
    net = getattr(pl_module, "net", pl_module)
    return [
        (name, cast(torch.Tensor, layer.weight), cast(torch.Tensor | None, layer.bias))
        for name, layer in net.named_modules()
        if isinstance(layer, WEIGHTED)
    ]


class WeightHistory(pl.Callback):
    """Quantiles of each weighted layer's weights and biases (``pipeline.nets.layers.WEIGHTED``:
    Linear and convolutions) before training (epoch 0) and after every training epoch (epoch k =
    after k epochs), to show how the weight distributions moved. Cheap: one quantile pass per
    layer per epoch."""

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.layers: dict[str, dict[str, Any]] = {}
        # The whole initial state, for the loss along the line to the kept weights
        # (pipeline.training.dynamics).
        self.initial: dict[str, torch.Tensor] = {}

    def record(self, pl_module: pl.LightningModule, epoch: int) -> None:
        if self.epochs and self.epochs[-1] == epoch:
            return  # a resumed or repeated hook must not record an epoch twice
        self.epochs.append(epoch)
        for name, weights, biases in weighted_layers(pl_module):
            entry = self.layers.setdefault(
                name, {"shape": list(weights.shape), "weight": [], "bias": [], "weight_std": []}
            )
            weight = weights.detach().cpu().numpy()
            entry["weight"].append(stats.quantiles(weight))
            entry["weight_std"].append(float(weight.std()))
            bias = biases.detach().cpu().numpy() if biases is not None else weight[:0]
            entry["bias"].append(stats.quantiles(bias) if bias.size else [])

    # Saved in checkpoints, so a resumed run keeps the epochs before the interruption.
    def state_dict(self) -> dict[str, Any]:
        return {"epochs": packed(self.epochs), "layers": packed(self.layers), "initial": self.initial}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs, self.layers = list(unpacked(state_dict["epochs"])), unpacked(state_dict["layers"])
        self.initial = dict(state_dict.get("initial", {}))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.epochs:  # a resumed run restored its history, initial weights included
            net = getattr(pl_module, "net", pl_module)
            self.initial = {key: value.detach().cpu().clone() for key, value in net.state_dict().items()}
            self.record(pl_module, 0)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.record(pl_module, trainer.current_epoch + 1)

    def to_dict(self) -> dict[str, Any]:
        return {"quantiles": list(stats.QUANTILES), "epochs": self.epochs, "layers": self.layers}


class GradientNorms(pl.Callback):
    """The L2 norm of each weighted layer's weight gradient, averaged over each training epoch's
    optimizer steps: backpropagation made visible. Norms that shrink layer by layer toward the
    input mean vanishing gradients; norms that grow epoch by epoch, exploding ones.

    The norms are summed as tensors on the device and read once per epoch (no host sync a step).
    """

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.layers: dict[str, dict[str, Any]] = {}
        self.watched: list[tuple[str, torch.Tensor]] = []  # (layer name, its weight)
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.watched = [(name, weight) for name, weight, _ in weighted_layers(pl_module)]
        for name, weight in self.watched:
            self.layers.setdefault(name, {"shape": list(weight.shape), "grad_norm": []})

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        for name, weight in self.watched:
            grad = weight.grad
            if grad is not None:
                norm = torch.linalg.vector_norm(grad.detach()).float()
                self.sums[name] = self.sums[name] + norm if name in self.sums else norm
        self.steps += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self.steps and (not self.epochs or self.epochs[-1] != epoch):
            self.epochs.append(epoch)
            for name, _ in self.watched:
                total = self.sums.get(name)
                self.layers[name]["grad_norm"].append(float(total) / self.steps if total is not None else 0.0)
        self.sums, self.steps = {}, 0

    # Saved in checkpoints, so a resumed run keeps the epochs before the interruption.
    def state_dict(self) -> dict[str, Any]:
        return {"epochs": packed(self.epochs), "layers": packed(self.layers)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs, self.layers = list(unpacked(state_dict["epochs"])), unpacked(state_dict["layers"])

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "layers": self.layers}
