"""The LightningModule that trains a network, its optimizer, and the data it trains on (in memory).

trainer.fit(Learner(net, Optimization(partial(torch.optim.Adam, lr=1e-3))),
            datamodule=InMemoryData(arrays, batch_size=64, seed=seed))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


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
