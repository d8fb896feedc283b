from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from pipeline import layout, task
from pipeline.errors import TrainingError
from pipeline.nets import model
from pipeline.training.fit import check_finite, fit
from pipeline.training.learner import InMemoryData, Learner
from tests.conftest import toy_summary


def _arrays(n_train: int = 150, n_val: int = 40) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "X_train": rng.normal(size=(n_train, 8)).astype(np.float32),
        "y_train": rng.integers(0, 3, n_train),
        "X_val": rng.normal(size=(n_val, 8)).astype(np.float32),
        "y_val": rng.integers(0, 3, n_val),
    }


def _epoch(data: InMemoryData, split: str, epoch: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of one epoch, as Lightning draws them (it calls the sampler's set_epoch)."""
    loader = data.train_dataloader() if split == "train" else data.val_dataloader()
    loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
    return list(loader)


def _rows(ranks: int = 1, rank: int = 0) -> Any:
    """What InMemoryData reads of the Trainer: the number of ranks and this one's."""
    return SimpleNamespace(world_size=ranks, global_rank=rank)


def _data(n: int, batch_size: int, seed: int = 0, ranks: int = 1, rank: int = 0) -> InMemoryData:
    X = torch.arange(n, dtype=torch.float32)[:, None] * 10
    y = torch.arange(n)
    data = InMemoryData(
        {"X_train": X.numpy(), "y_train": y.numpy(), "X_val": X.numpy(), "y_val": y.numpy()}, batch_size, seed
    )
    data.trainer = _rows(ranks, rank)
    return data


def test_batches_cover_every_row_once_per_epoch_in_new_orders() -> None:
    data = _data(10, batch_size=4)
    epochs = []
    for epoch in range(2):
        batches = _epoch(data, "train", epoch)
        assert [len(yb) for _, yb in batches] == [4, 4, 2]
        for xb, yb in batches:  # rows stay paired
            assert torch.equal(xb[:, 0], yb.float() * 10)
        epochs.append(torch.cat([yb for _, yb in batches]))
    for order in epochs:
        assert sorted(order.tolist()) == list(range(10))
    assert not torch.equal(epochs[0], epochs[1])
    # The order depends on (seed, epoch) only: a resumed run sees the same batches.
    again = _data(10, batch_size=4)
    assert torch.equal(torch.cat([yb for _, yb in _epoch(again, "train", 1)]), epochs[1])


def test_validation_batches_keep_their_order() -> None:
    batches = _epoch(_data(7, batch_size=3), "val")
    assert [yb.tolist() for _, yb in batches] == [[0, 1, 2], [3, 4, 5], [6]]


def test_ranks_share_an_epoch_in_equal_disjoint_shards() -> None:
    # 11 rows on 2 ranks: 6 each, one row repeated so both run the same number of steps.
    shards = [torch.cat([yb for _, yb in _epoch(_data(11, 4, ranks=2, rank=r), "train", 3)]) for r in (0, 1)]
    assert [len(s) for s in shards] == [6, 6]
    assert set(torch.cat(shards).tolist()) == set(range(11))


def _fit(epochs: int = 2, **trainer_options: Any) -> tuple[dict[str, torch.Tensor], int]:
    import pytorch_lightning as pl

    torch.manual_seed(0)
    net = model.MLP(8, 3, [16], "relu", 0.2)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        **trainer_options,
    )
    fit(net, lambda p: torch.optim.Adam(p, lr=0.01), _arrays(), trainer, 16, 0)
    return {k: v.clone() for k, v in net.state_dict().items()}, trainer.global_step


def test_training_is_reproducible_and_counts_optimizer_steps() -> None:
    weights, steps = _fit()
    assert steps == 2 * 10  # one optimizer step per mini-batch (150 rows / 16 = 10 per epoch)
    again, _ = _fit()
    for key, value in weights.items():
        assert torch.equal(again[key], value), key
    # Standard Lightning semantics: accumulating 2 batches halves the optimizer steps.
    _, accumulated = _fit(accumulate_grad_batches=2)
    assert accumulated == 2 * 5


def test_a_resumed_fit_continues_as_an_uninterrupted_one(tmp_path: Path) -> None:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from pipeline.training.callbacks import AtomicCheckpointIO, EpochSeed, History

    def run(epochs: int, folder: Path, resume: Path | None = None) -> tuple[dict[str, torch.Tensor], History]:
        torch.manual_seed(0)
        net, history = model.MLP(8, 3, [16], "relu", 0.2), History()
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            deterministic=True,
            plugins=[AtomicCheckpointIO()],
            callbacks=[EpochSeed(7), history, ModelCheckpoint(dirpath=folder, save_last=True)],
        )
        fit(net, lambda p: torch.optim.Adam(p, lr=0.01), _arrays(), trainer, 16, 7, resume)
        return net.state_dict(), history

    straight, full = run(4, tmp_path / "a")
    run(2, tmp_path / "b")  # "interrupted" after 2 epochs
    resumed, continued = run(4, tmp_path / "b", tmp_path / "b" / "last.ckpt")
    assert [r["epoch"] for r in continued.rows] == [0, 1, 2, 3]
    # Same batches, dropout masks and optimizer state: the same weights, bit for bit.
    for key, value in straight.items():
        assert torch.equal(resumed[key], value), key
    assert continued.rows[-1]["val_loss"] == full.rows[-1]["val_loss"]


@pytest.mark.parametrize(
    "summary",
    [{"task": "classification"}, {"task": "regression", "target_mean": 2.0, "target_std": 3.0}],
    ids=["classification", "regression"],
)
def test_the_task_names_what_the_fit_logs(summary: dict[str, Any]) -> None:
    t = task.of(toy_summary(summary))
    learner = Learner(
        torch.nn.Linear(2, 1), lambda p: torch.optim.SGD(p, lr=0.1), target_scale=t.target_scale
    )
    second = learner.second_metric
    assert t.second_metric == second
    assert t.history_columns == ("epoch", "train_loss", f"train_{second}", "val_loss", f"val_{second}")
    assert t.objectives == ("best_val_loss", f"best_val_{second}")
    assert t.loss_fits(t.default_loss()) and type(t.default_loss()) is type(learner.loss)
    assert t.target_scale == (None if second == "acc" else (2.0, 3.0))


def test_check_finite_names_the_epoch() -> None:
    rows = [{"epoch": 0.0, "train_loss": 1.0, "val_loss": 1.0}, {"epoch": 1.0, "train_loss": math.nan}]
    with pytest.raises(TrainingError, match="epoch 1.*learning rate"):
        check_finite(rows)
    check_finite(rows[:1])


def test_train_outputs_and_mlflow_run(small_run) -> None:  # type: ignore[no-untyped-def]
    cfg, results = small_run
    run = json.loads(layout.run_file(cfg).read_text())
    assert run["run_id"] == results["train"]["run_id"]
    history = Path(cfg.paths.history).read_text().splitlines()
    assert history[0] == "epoch,train_loss,train_acc,val_loss,val_acc"
    assert len(history) == 1 + 3  # one row per epoch
    assert all("nan" not in line for line in history)

    client = MlflowClient(run["tracking_uri"])
    mlrun = client.get_run(run["run_id"])
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.params["model.hidden_sizes"] == "[128]"
    assert mlrun.data.params["optim._target_"] == "torch.optim.Adam"
    assert len(client.get_metric_history(run["run_id"], "val_loss")) == 3
    assert len(client.get_metric_history(run["run_id"], "train_acc")) == 3
    assert "best_val_loss" in mlrun.data.metrics
    # The splits are the run's MLflow datasets, read from scikit-learn's loader, at their sizes.
    splits = {i.tags[0].value: i.dataset for i in mlrun.inputs.dataset_inputs}
    sizes = json.loads(layout.summary_file(cfg).read_text())["sizes"]
    for context, split in (("training", "train"), ("validation", "val"), ("test", "test")):
        assert splits[context].name == f"digits-{split}"
        assert json.loads(splits[context].profile)["targets_shape"] == [sizes[split]]
        loader = "pipeline.data.bundled.load_digits"
        assert json.loads(splits[context].source) == {"tags": {"loader": loader}}

    net = model.load(layout.model_file(cfg))
    mlflow.set_tracking_uri(run["tracking_uri"])
    logged = mlflow.pytorch.load_model(run["model_uri"])
    x = torch.randn(4, 64)
    assert np.allclose(net(x).detach().numpy(), logged(x).detach().numpy(), atol=1e-6)
