from __future__ import annotations

import json
import math
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from pipeline import layout, model
from pipeline.errors import TrainingError
from pipeline.lit import TensorBatches
from pipeline.train import check_finite


def _minibatches(batches: TensorBatches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [pair for block in batches for pair in block]


def test_batches_cover_every_row_once_per_epoch_in_new_orders() -> None:
    X = torch.arange(10, dtype=torch.float32)[:, None]
    y = torch.arange(10)
    batches = TensorBatches(X, y, batch_size=4, shuffle=True, seed=0)
    assert len(batches) == 3
    epochs = []
    for epoch in range(2):
        batches.epoch = epoch
        epochs.append(torch.cat([b[1] for b in _minibatches(batches)]))
    for order in epochs:
        assert sorted(order.tolist()) == list(range(10))
    assert not torch.equal(epochs[0], epochs[1])
    again = TensorBatches(X, y, batch_size=4, shuffle=True, seed=0)
    again.epoch = 1  # the order depends on (seed, epoch) only: a resumed run sees the same batches
    assert torch.equal(torch.cat([b[1] for b in _minibatches(again)]), epochs[1])


def test_unshuffled_batches_keep_order_and_pair_rows() -> None:
    X = torch.arange(7, dtype=torch.float32)[:, None] * 10
    y = torch.arange(7)
    got = _minibatches(TensorBatches(X, y, batch_size=3, shuffle=False))
    assert [len(b[1]) for b in got] == [3, 3, 1]
    for xb, yb in got:
        assert torch.equal(xb[:, 0], yb.float() * 10)


@pytest.mark.parametrize("shuffle", [True, False])
def test_blocks_hold_the_same_minibatches_whatever_the_chunk(shuffle: bool) -> None:
    X = torch.arange(23, dtype=torch.float32)[:, None] * 10
    y = torch.arange(23)
    one = _minibatches(TensorBatches(X, y, batch_size=4, shuffle=shuffle, seed=3))
    blocks = TensorBatches(X, y, batch_size=4, shuffle=shuffle, seed=3, chunk=3)
    assert len(blocks) == 2  # 6 mini-batches of 4 (the last of 3) in blocks of 3
    assert [len(block) for block in blocks] == [12, 11]
    chunked = _minibatches(blocks)
    assert len(chunked) == len(one) == 6
    for (xa, ya), (xb, yb) in zip(one, chunked, strict=True):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    for block in blocks:  # a whole block pairs rows too (one forward pass in validation)
        xs, ys = block.tensors()
        assert torch.equal(xs[:, 0], ys.float() * 10)


def test_block_moves_to_a_device_as_a_whole() -> None:
    X = torch.arange(10, dtype=torch.float32)[:, None]
    y = torch.arange(10)
    block = next(iter(TensorBatches(X, y, batch_size=2, shuffle=True, seed=0, chunk=3)))
    assert block.to("cpu") is block  # already there: stays lazy
    # What Lightning does for an accelerator, with "meta" standing in for a GPU.
    moved = block.to("meta")
    assert moved.X.device.type == "meta" and len(moved) == len(block) == 6
    assert [len(b[1]) for b in moved] == [2, 2, 2]


def _fit_weights(batches_per_step: int, direct: bool, epochs: int = 2) -> tuple[dict[str, torch.Tensor], int]:
    import pytorch_lightning as pl

    from pipeline.lit import Classifier
    from pipeline.train import fit

    rng = np.random.default_rng(0)
    arrays = {
        "X_train": rng.normal(size=(150, 8)).astype(np.float32),
        "y_train": rng.integers(0, 3, 150),
        "X_val": rng.normal(size=(40, 8)).astype(np.float32),
        "y_val": rng.integers(0, 3, 40),
    }
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
    )
    original = Classifier.on_fit_start

    def on_fit_start(self: Classifier) -> None:
        original(self)
        if not direct:
            self._direct = False  # the path mixed precision and DDP take

    Classifier.on_fit_start = on_fit_start  # type: ignore[method-assign]
    try:
        torch.manual_seed(1)
        fit(net, lambda p: torch.optim.Adam(p, lr=0.01), arrays, trainer, 16, 0, None, batches_per_step)
    finally:
        Classifier.on_fit_start = original  # type: ignore[method-assign]
    return {k: v.clone() for k, v in net.state_dict().items()}, trainer.global_step


def test_training_does_not_depend_on_batches_per_step_or_the_update_path() -> None:
    reference, steps = _fit_weights(1, direct=True)
    assert steps == 2 * 10  # global_step counts mini-batches (150 rows / 16 = 10 per epoch)
    for per_step, direct in ((4, True), (16, True), (4, False)):
        weights, steps = _fit_weights(per_step, direct)
        assert steps == 2 * 10, (per_step, direct)
        for key, value in reference.items():
            assert torch.equal(weights[key], value), (per_step, direct, key)


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

    net = model.load(layout.model_file(cfg))
    mlflow.set_tracking_uri(run["tracking_uri"])
    logged = mlflow.pytorch.load_model(run["model_uri"])
    x = torch.randn(4, 64)
    assert np.allclose(net(x).detach().numpy(), logged(x).detach().numpy(), atol=1e-6)
