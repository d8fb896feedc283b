"""Lightning pieces for training: the LightningModule and whole-batch data loading."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, IterableDataset


class TensorBatches(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    """Yields whole batches sliced from in-memory tensors.

    Fetching sample by sample and collating was 2x slower than a plain loop on
    these machines; indexing a batch at once costs one gather per batch.
    """

    def __init__(
        self, X: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0
    ) -> None:
        self.X, self.y, self.batch_size, self.shuffle, self.seed = X, y, batch_size, shuffle, seed
        # The order is a function of (seed, epoch) alone, so a run resumed from a checkpoint
        # sees the same batches as one that never stopped. EpochSeed sets the epoch.
        self.epoch = 0

    def __len__(self) -> int:
        _, world = _rank_and_world()
        return math.ceil(math.ceil(len(self.y) / world) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rank, world = _rank_and_world()
        n = len(self.y)
        # Every rank draws the same permutation (same seed), then takes its own shard.
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=generator) if self.shuffle else None
        if world == 1:
            for start in range(0, n, self.batch_size):
                if order is None:  # contiguous slices are views: no copy at all
                    yield self.X[start : start + self.batch_size], self.y[start : start + self.batch_size]
                else:
                    idx = order[start : start + self.batch_size]
                    yield self.X[idx], self.y[idx]
            return
        # Like DistributedSampler: pad by wrapping around so every rank runs the same number of
        # steps (a rank with fewer batches would leave the others waiting in all-reduce forever).
        order = order if order is not None else torch.arange(n)
        per_rank = math.ceil(n / world)
        padded = torch.cat([order, order[: per_rank * world - n]]) if per_rank * world > n else order
        shard = padded[rank::world]
        for start in range(0, len(shard), self.batch_size):
            idx = shard[start : start + self.batch_size]
            yield self.X[idx], self.y[idx]


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def batches(
    X: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0
) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
    # batch_size=None: the dataset already yields batches, the loader must not collate again.
    return DataLoader(TensorBatches(X, y, batch_size, shuffle, seed), batch_size=None)


class Classifier(pl.LightningModule):
    """Cross-entropy training of ``net``; logs loss and accuracy per epoch.

    Per-step ``self.log`` calls cost Lightning's logger connector tens of microseconds each,
    which at batch 64 was a sizeable share of a step. Instead each step adds its summed loss,
    correct count and sample count to a 3-element tensor (no host sync, no allocation beyond
    the adds), and the epoch's means are logged once, after summing across DDP ranks.
    """

    def __init__(self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer]) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self._sums: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets ``_current_fx_name`` around every hook of every callback (about 40 times
        # a step); nn.Module.__setattr__'s parameter/module/buffer checks made that ~10% of a
        # batch-64 step. A string or None is a plain attribute, so store it directly.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        sums = self._sums.get(stage)
        if sums is None:  # float32: float64 is missing on some accelerators (MPS)
            sums = self._sums[stage] = torch.zeros(3, device=loss.device)
        with torch.no_grad():
            sums[0] += loss.detach() * len(y)  # loss summed over samples: epoch mean is weighted
            sums[1] += (logits.argmax(dim=1) == y).sum()
            sums[2] += len(y)
        return loss

    def log_epoch(self, stage: str) -> None:
        """Log the epoch's ``<stage>_loss`` and ``<stage>_acc`` (once: later calls do nothing)."""
        sums = self._sums.pop(stage, None)
        if sums is None:
            return
        # Sum over DDP ranks (a no-op on one device), then the means are the global ones.
        sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        count = sums[2].clamp(min=1)
        for name, value in (("loss", sums[0] / count), ("acc", sums[1] / count)):
            self.log(f"{stage}_{name}", value, on_step=False, on_epoch=True, prog_bar=True)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def on_train_epoch_start(self) -> None:
        self._sums.pop("train", None)

    def on_validation_epoch_start(self) -> None:
        self._sums.pop("val", None)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._sums.pop("val", None)  # the sanity check's few batches are not an epoch
            return
        self.log_epoch("val")

    def on_train_epoch_end(self) -> None:
        self.log_epoch("train")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())


def safe_checkpoint(**kwargs: Any) -> pl.Callback:
    """Lightning's ModelCheckpoint whose saves cannot be cut short by SIGTERM/SIGINT.

    A stop signal arriving while a checkpoint is written waits until the file is complete
    (pipeline.io.uninterrupted), so `train.resume=true` never meets a half-written checkpoint.
    """
    from pytorch_lightning.callbacks import ModelCheckpoint

    from pipeline import io

    class _SafeCheckpoint(ModelCheckpoint):
        def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
            with io.uninterrupted():
                super()._save_checkpoint(trainer, filepath)

    return _SafeCheckpoint(**kwargs)


class EpochSeed(pl.Callback):
    """Seeds each epoch from (seed, epoch): the batch order and the dropout masks of epoch k are
    the same whether the run went straight through or was resumed from a checkpoint."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        loader = trainer.train_dataloader
        if isinstance(getattr(loader, "dataset", None), TensorBatches):
            loader.dataset.epoch = epoch  # type: ignore[union-attr]
        torch.manual_seed(self.seed * 100_003 + epoch)


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
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict["rows"]]

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # Callbacks' hooks run before the module's: have it log the epoch's val metrics now.
        if isinstance(pl_module, Classifier):
            pl_module.log_epoch("val")
        row = {"epoch": float(trainer.current_epoch)}
        row.update(_pick(trainer, ("val_loss", "val_acc")))
        self.rows.append(row)

    def _fill_train(self, trainer: pl.Trainer) -> None:
        if self.rows and "train_loss" not in self.rows[-1]:
            self.rows[-1].update(_pick(trainer, ("train_loss", "train_acc")))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fill_train(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fill_train(trainer)


def _pick(trainer: pl.Trainer, keys: tuple[str, ...]) -> dict[str, float]:
    metrics = trainer.callback_metrics
    return {key: float(metrics[key]) for key in keys if key in metrics}


class WeightHistory(pl.Callback):
    """Quantiles of each Linear layer's weights and biases before training (epoch 0)
    and after every training epoch (epoch k = after k epochs), to show how the
    weight distributions moved. Cheap: one quantile pass per layer per epoch."""

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.layers: dict[str, dict[str, Any]] = {}

    def _record(self, pl_module: pl.LightningModule, epoch: int) -> None:
        from pipeline import stats

        if self.epochs and self.epochs[-1] == epoch:
            return  # a resumed or repeated hook must not record an epoch twice
        self.epochs.append(epoch)
        # Names as in the saved MLP's state dict ("net.0"), not the LightningModule's.
        for name, layer in getattr(pl_module, "net", pl_module).named_modules():
            if not isinstance(layer, nn.Linear):
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
        return {"epochs": list(self.epochs), "layers": self.layers}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs, self.layers = list(state_dict["epochs"]), state_dict["layers"]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.epochs:  # a resumed run restored its history, initial weights included
            self._record(pl_module, 0)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(pl_module, trainer.current_epoch + 1)

    def to_dict(self) -> dict[str, Any]:
        from pipeline import stats

        return {"quantiles": list(stats.QUANTILES), "epochs": self.epochs, "layers": self.layers}
