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


def test_batches_cover_every_row_once_per_epoch_in_new_orders() -> None:
    X = torch.arange(10, dtype=torch.float32)[:, None]
    y = torch.arange(10)
    batches = TensorBatches(X, y, batch_size=4, shuffle=True, seed=0)
    assert len(batches) == 3
    epochs = []
    for epoch in range(2):
        batches.epoch = epoch
        epochs.append(torch.cat([b[1] for b in batches]))
    for order in epochs:
        assert sorted(order.tolist()) == list(range(10))
    assert not torch.equal(epochs[0], epochs[1])
    again = TensorBatches(X, y, batch_size=4, shuffle=True, seed=0)
    again.epoch = 1  # the order depends on (seed, epoch) only: a resumed run sees the same batches
    assert torch.equal(torch.cat([b[1] for b in again]), epochs[1])


def test_unshuffled_batches_keep_order_and_pair_rows() -> None:
    X = torch.arange(7, dtype=torch.float32)[:, None] * 10
    y = torch.arange(7)
    got = list(TensorBatches(X, y, batch_size=3, shuffle=False))
    assert [len(b[1]) for b in got] == [3, 3, 1]
    for xb, yb in got:
        assert torch.equal(xb[:, 0], yb.float() * 10)


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
