"""Lightning pieces for training, all through Lightning's public extension points: the
LightningModule, in-memory data loading, the stage's callbacks and atomic checkpoint writes.

    trainer = pl.Trainer(plugins=[AtomicCheckpointIO()], callbacks=[EpochSeed(seed), History(), ...])
    trainer.fit(Learner(net, Optimization(partial(torch.optim.Adam, lr=1e-3))),
                datamodule=InMemoryData(arrays, batch_size=64, seed=seed))
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.profilers import PassThroughProfiler
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from pipeline.errors import ConfigError


class InMemoryRows(TensorDataset):
    """A TensorDataset whose mini-batches are gathered with one indexing call per tensor.

    The DataLoader hands ``__getitems__`` (torch's hook for batched reads) a batch's row indices;
    fetching row by row and collating was 2x slower than a plain loop on these machines.
    """

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        rows = torch.as_tensor(indices)
        return tuple(tensor[rows] for tensor in self.tensors)


def whole_batch(batch: Any) -> Any:
    """The DataLoader's collate_fn: ``InMemoryRows.__getitems__`` already made the batch."""
    return batch


class InMemoryData(pl.LightningDataModule):
    """The train and validation splits as in-memory tensors, in mini-batches of ``batch_size``.

    Both loaders sample with torch's DistributedSampler, also on one device (one replica): its
    order is a function of (seed, epoch) alone and Lightning calls its ``set_epoch`` every epoch,
    resumed runs included, so a run resumed from a checkpoint sees the same batches as one that
    never stopped. Under DDP each rank takes its shard, padded by wrapping around so every rank
    runs the same number of steps. The loaders are made when Lightning asks for them, once the
    ranks are known.
    """

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, seed: int) -> None:
        super().__init__()
        self.tensors = {key: torch.from_numpy(value) for key, value in arrays.items()}
        self.batch_size, self.seed = batch_size, seed

    def loader(self, split: str, shuffle: bool) -> DataLoader[tuple[torch.Tensor, ...]]:
        assert self.trainer is not None, "Lightning sets the trainer before it asks for data"
        data = InMemoryRows(self.tensors[f"X_{split}"], self.tensors[f"y_{split}"])
        sampler: DistributedSampler[int] = DistributedSampler(
            data,
            num_replicas=self.trainer.world_size,
            rank=self.trainer.global_rank,
            shuffle=shuffle,
            seed=self.seed,
        )
        # Its own generator: making an iterator draws a base seed, which from torch's global RNG
        # would shift the dropout masks, and a resumed run makes its first iterator at another point.
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            data, batch_size=self.batch_size, sampler=sampler, collate_fn=whole_batch, generator=generator
        )

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return self.loader("val", shuffle=False)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Lightning's hook that moves a batch to the device: these loaders' (x, y) pairs of
        tensors move tensor by tensor (non-blocking off the CPU, as Lightning's own), without the
        generic walk over nested collections that the default runs each step. On the DataModule,
        which knows its batches' form: on the LightningModule, Lightning warns that a
        DataModule's run uses the module's hook."""
        if isinstance(batch, tuple | list) and all(isinstance(item, torch.Tensor) for item in batch):
            non_blocking = device.type not in ("cpu", "mps")
            return type(batch)(item.to(device, non_blocking=non_blocking) for item in batch)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)


@dataclass
class Optimization:
    """The optimizer and, optionally, a learning-rate scheduler, as ``configure_optimizers``
    returns them: ``optimizer(params)``, ``scheduler(optimizer)`` (both ``_partial_`` from config),
    and when Lightning steps the scheduler (its ``lr_scheduler`` config: ``interval``,
    ``frequency``, ``monitor``, the metric ReduceLROnPlateau watches)."""

    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
    scheduler: Callable[[torch.optim.Optimizer], Any] | None = None
    interval: str = "epoch"
    frequency: int = 1
    monitor: str | None = None

    def __call__(self, params: Iterable[nn.Parameter]) -> Any:
        optimizer = self.optimizer(params)
        if self.scheduler is None:
            return optimizer
        schedule: dict[str, Any] = {
            "scheduler": self.scheduler(optimizer),
            "interval": self.interval,
            "frequency": self.frequency,
        }
        if self.monitor is not None:
            schedule["monitor"] = self.monitor
        return {"optimizer": optimizer, "lr_scheduler": schedule}


class Learner(pl.LightningModule):
    """Training of ``net`` with Lightning's automatic optimization, so every Trainer feature
    applies (gradient clipping and accumulation, mixed precision, DDP, schedulers).

    Classification (``target_scale`` None): ``loss`` (cross-entropy by default) of the logits
    against the class; the epoch's ``<stage>_acc`` is logged beside the loss. Regression
    (``target_scale`` = the train split's (mean, std) of the target): the network's single output
    is fitted to the scaled target (y - mean) / std, so the loss and learning rate work at the scale
    of 1 whatever the target's units; ``<stage>_rmse`` is logged in the target's own units.

    Loss and the second metric are kept per epoch: each step appends its detached loss and its
    count (correct answers, or squared error), with no host sync and no per-step ``self.log``
    (tens of microseconds a call); the epoch's means are logged once, summed across DDP ranks
    with ``strategy.reduce``.
    """

    def __init__(
        self,
        net: nn.Module,
        optimization: Optimization | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
        loss: nn.Module | None = None,
        target_scale: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.optimization = (
            optimization if isinstance(optimization, Optimization) else Optimization(optimization)
        )
        self.loss = loss if loss is not None else (nn.MSELoss() if target_scale else nn.CrossEntropyLoss())
        self.target_scale = target_scale
        # stage -> [(mean loss, correct count or squared error, batch size)] of this epoch's batches
        self.tallies: dict[str, list[tuple[torch.Tensor, torch.Tensor, int]]] = {}

    @property
    def second_metric(self) -> str:
        """The metric logged beside the loss: accuracy, or RMSE (target units) for regression."""
        return "rmse" if self.target_scale else "acc"

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning records which hook is running on the module before and after every hook call,
        # some 50 assignments a training step, and nn.Module.__setattr__ looks each one up among
        # parameters, submodules and buffers. An attribute already in the instance's dict is none
        # of those (nn.Module keeps them in their own dicts), so a value that is not a tensor or a
        # module replaces it as on any object: what nn.Module itself would end up doing.
        if name in self.__dict__ and not isinstance(value, torch.Tensor | nn.Module):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def batch_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean loss of the network's output ``out`` on targets ``y`` (classes, or values in
        the target's units: scaled here)."""
        if self.target_scale is None:
            return self.loss(out, y)
        mean, std = self.target_scale
        return self.loss(out.squeeze(1), (y - mean) / std)

    def tally(self, stage: str, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """The batch's mean loss; its loss and correct count (squared error) join the epoch's tally."""
        x, y = batch
        out = self.net(x)  # (B, classes) or (B, 1)
        loss = self.batch_loss(out, y)
        if self.target_scale is None:
            score = (out.detach().argmax(dim=1) == y).sum()
        else:
            mean, std = self.target_scale
            score = torch.sum((out.detach().squeeze(1).float() * std + mean - y) ** 2)
        self.tallies.setdefault(stage, []).append((loss.detach(), score, len(y)))
        return loss

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.tally("train", batch)

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self.tally("val", batch)

    def log_epoch(self, stage: str) -> None:
        """Log the epoch's ``<stage>_loss`` and ``<stage>_acc`` or ``<stage>_rmse`` (once: later
        calls do nothing)."""
        tally = self.tallies.pop(stage, None)
        if not tally:
            return
        losses, correct, sizes = zip(*tally, strict=True)
        counts = torch.tensor(sizes, dtype=torch.float32, device=losses[0].device)
        # float32: float64 is missing on some accelerators (MPS); bf16 losses are widened first.
        sums = torch.stack(
            [torch.dot(torch.stack(losses).float(), counts), torch.stack(correct).sum().float(), counts.sum()]
        )
        # Sum over DDP ranks (a no-op on one device), then the means are the global ones.
        sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        count = sums[2].clamp(min=1)
        second = sums[1] / count if self.target_scale is None else torch.sqrt(sums[1] / count)
        for name, value in (("loss", sums[0] / count), (self.second_metric, second)):
            self.log(f"{stage}_{name}", value, on_step=False, on_epoch=True, prog_bar=True)

    def on_train_epoch_start(self) -> None:
        self.tallies.pop("train", None)

    def on_validation_epoch_start(self) -> None:
        self.tallies.pop("val", None)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.tallies.pop("val", None)  # the sanity check's few batches are not an epoch
            return
        self.log_epoch("val")

    def on_train_epoch_end(self) -> None:
        self.log_epoch("train")

    def configure_optimizers(self) -> Any:
        return self.optimization(self.parameters())


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoint writes that are atomic and cannot be cut short: the file is written beside its
    place and renamed onto it (``pipeline.io.atomic_path``), and a SIGTERM/SIGINT arriving during
    the write waits until it is done (``pipeline.io.uninterrupted``), so ``train.resume=true``
    never meets a half-written checkpoint. Given to the Trainer as ``plugins=[...]``."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        from pipeline import io

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


class WeightHistory(pl.Callback):
    """Quantiles of each Linear and convolutional layer's weights and biases before training (epoch 0)
    and after every training epoch (epoch k = after k epochs), to show how the
    weight distributions moved. Cheap: one quantile pass per layer per epoch."""

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.layers: dict[str, dict[str, Any]] = {}
        # The whole initial state, for the loss along the line to the kept weights
        # (pipeline.training.dynamics).
        self.initial: dict[str, torch.Tensor] = {}

    def record(self, pl_module: pl.LightningModule, epoch: int) -> None:
        from pipeline import stats

        if self.epochs and self.epochs[-1] == epoch:
            return  # a resumed or repeated hook must not record an epoch twice
        self.epochs.append(epoch)
        # Names as in the saved MLP's state dict ("net.0"), not the LightningModule's.
        for name, layer in getattr(pl_module, "net", pl_module).named_modules():
            if not isinstance(layer, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
                continue
            entry = self.layers.setdefault(
                name, {"shape": list(layer.weight.shape), "weight": [], "bias": [], "weight_std": []}
            )
            weight = layer.weight.detach().cpu().numpy()
            entry["weight"].append(stats.quantiles(weight))
            entry["weight_std"].append(float(weight.std()))
            bias = layer.bias.detach().cpu().numpy() if layer.bias is not None else weight[:0]
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
        from pipeline import stats

        return {"quantiles": list(stats.QUANTILES), "epochs": self.epochs, "layers": self.layers}


WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class GradientNorms(pl.Callback):
    """The L2 norm of each Linear and convolutional layer's weight gradient, averaged over each
    training epoch's optimizer steps: backpropagation made visible. Norms that shrink layer by
    layer toward the input mean vanishing gradients; norms that grow epoch by epoch, exploding ones.

    The norms are summed as tensors on the device and read once per epoch (no host sync a step).
    """

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.layers: dict[str, dict[str, Any]] = {}
        self.watched: list[tuple[str, torch.Tensor]] = []  # (layer name, its weight)
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Names as in the saved network's state dict ("net.0"), not the LightningModule's.
        net = getattr(pl_module, "net", pl_module)
        self.watched = [(name, m.weight) for name, m in net.named_modules() if isinstance(m, WEIGHTED)]
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
