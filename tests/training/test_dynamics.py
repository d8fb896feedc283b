"""Training dynamics: each layer's gradient norm per epoch, and the loss along the line from the
initial to the kept weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pipeline import layout, stats
from pipeline.nets import model
from pipeline.plots import network as net_figs
from pipeline.training import dynamics
from tests.conftest import compose_conf


def test_interpolate_mixes_floats_and_keeps_counters() -> None:
    start = {"w": torch.zeros(3), "steps": torch.tensor(0)}
    end = {"w": torch.tensor([2.0, 4.0, 6.0]), "steps": torch.tensor(7)}
    assert torch.equal(dynamics.interpolate(start, end, 0.0)["w"], start["w"])
    assert torch.equal(dynamics.interpolate(start, end, 1.0)["w"], end["w"])
    half = dynamics.interpolate(start, end, 0.5)
    assert half["w"].tolist() == [1.0, 2.0, 3.0] and int(half["steps"]) == 7
    assert dynamics.interpolate(start, end, 1.5)["w"].tolist() == [3.0, 6.0, 9.0]  # past the end


def test_loss_along_the_line_ends_at_both_networks_and_leaves_the_net_alone() -> None:
    torch.manual_seed(0)
    net = model.MLP(5, 3, [8], dropout=0.3)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    end = {k: v.clone() for k, v in net.state_dict().items()}
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 5)).astype(np.float32), rng.integers(0, 3, 50)
    line = dynamics.loss_along_line(
        net, start, {"train": (X, y)}, alphas=np.array([0.0, 0.5, 1.0]), batch_size=16
    )

    def loss(state: dict[str, torch.Tensor]) -> float:
        probe = model.MLP(5, 3, [8], dropout=0.3).eval()
        probe.load_state_dict(state)
        with torch.no_grad():
            return float(nn.functional.cross_entropy(probe(torch.from_numpy(X)), torch.from_numpy(y)))

    assert line["train"][0] == pytest.approx(loss(start), rel=1e-5)
    assert line["train"][2] == pytest.approx(loss(end), rel=1e-5)
    assert all(torch.equal(v, end[k]) for k, v in net.state_dict().items())  # the kept weights again
    assert net.training  # and its mode


def test_gradient_depth_ratio_by_hand() -> None:
    history = {"layers": {"net.0": {"grad_norm": [0.01, 0.03]}, "net.3": {"grad_norm": [1.0, 3.0]}}}
    assert stats.gradient_depth_ratio(history) == pytest.approx(100.0)
    assert np.isnan(stats.gradient_depth_ratio({"layers": {"net.0": {"grad_norm": [1.0]}}}))


def _fit_depth_ratio(activation: str, tmp_path: Path) -> tuple[dict, float]:  # type: ignore[type-arg]
    from pipeline.config import to_config
    from pipeline.training.build import build_trainer
    from pipeline.training.fit import fit

    rng = np.random.default_rng(0)
    arrays = {
        "X_train": rng.normal(size=(256, 16)).astype(np.float32),
        "y_train": rng.integers(0, 4, 256),
        "X_val": rng.normal(size=(64, 16)).astype(np.float32),
        "y_val": rng.integers(0, 4, 64),
    }
    cfg = to_config(
        compose_conf(["trainer.max_epochs=3", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"])
    )
    partial = tmp_path / activation
    partial.mkdir()
    trainer, roles = build_trainer(cfg, False, partial, train_rows=256)
    torch.manual_seed(0)
    net = model.MLP(16, 4, [32, 32, 32, 32], activation, 0.0)
    fit(net, lambda p: torch.optim.SGD(p, lr=0.01), arrays, trainer, 32, 0)
    history = roles.gradient_norms.to_dict()
    return history, stats.gradient_depth_ratio(history)


def test_gradient_norms_show_the_sigmoid_vanishing_gradient(tmp_path: Path) -> None:
    history, sigmoid = _fit_depth_ratio("sigmoid", tmp_path)
    assert history["epochs"] == [1, 2, 3]
    assert list(history["layers"]) == ["net.0", "net.2", "net.4", "net.6", "net.8"]
    assert all(len(entry["grad_norm"]) == 3 for entry in history["layers"].values())
    _, relu = _fit_depth_ratio("relu", tmp_path)
    # Each sigmoid scales the gradient by at most 0.25: four of them leave the first layer with a
    # small fraction of the last one's gradient; ReLU passes it through where units are active.
    assert sigmoid > 20 and sigmoid > 5 * relu, (sigmoid, relu)
    fig = net_figs.gradient_norms(history)
    assert fig.axes[0].get_yscale() == "log" and len(fig.axes[0].lines) == 5


def test_the_train_stage_writes_the_dynamics_and_visualize_draws_them(small_run) -> None:  # type: ignore[no-untyped-def]
    cfg, results = small_run
    norms = json.loads(layout.gradient_norms_file(cfg).read_text())
    assert norms["epochs"] == list(range(1, results["train"]["epochs_run"] + 1))
    assert set(norms["layers"]) == {"net.0", "net.3"}
    line = json.loads(layout.loss_line_file(cfg).read_text())
    assert len(line["alpha"]) == len(line["train"]) == len(line["val"]) == len(dynamics.ALPHAS)
    kept = line["alpha"].index(1.0)
    initial = line["alpha"].index(0.0)
    assert line["val"][kept] < line["val"][initial]  # training lowered the loss along the line
    assert line["val"][kept] == pytest.approx(results["train"]["best_val_loss"], rel=0.05)
    figures = {p.stem for p in layout.figure_dir(cfg.paths.visualize).glob("*.png")}
    assert {"gradient_norms", "loss_line"} <= figures
    assert np.isfinite(results["visualize"]["gradient_depth_ratio"])
