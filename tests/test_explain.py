from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pipeline import explain, layout
from pipeline.errors import ConfigError


def test_additivity_error_and_importance_by_hand() -> None:
    values = np.array([[[1.0, -1.0], [2.0, 0.5]]])  # (1 sample, 2 features, 2 classes)
    base = np.array([0.5, 0.0])
    outputs = np.array([[3.5, -0.25]])
    assert explain.additivity_error(values, base, outputs).tolist() == [[0.0, 0.25]]
    assert explain.mean_abs_importance(values).tolist() == [[1.0, 2.0], [1.0, 0.5]]


def test_deep_shap_on_a_linear_model_is_exact() -> None:
    # For a linear model SHAP values are w_j * (x_j - mean(background_j)).
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3))
    background = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    X = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    values, base = explain.deep_shap(net, background, X)
    assert values.shape == (5, 4, 3)
    w = net[0].weight.detach().numpy().astype(np.float64)  # (3, 4)
    expected = (X - background.mean(axis=0))[:, :, None] * w.T[None, :, :]
    assert np.allclose(values, expected, atol=1e-5)
    with torch.no_grad():
        out = net(torch.from_numpy(X)).numpy()
    assert explain.additivity_error(values, base, out).max() < 1e-5


def test_pick_examples_puts_mistakes_first() -> None:
    picks = explain.pick_examples(np.array([0, 1, 2, 3, 4]), np.array([0, 2, 2, 0, 4]), 4)
    assert picks.tolist() == [1, 3, 0, 2]


def test_run_records_additivity(small_run) -> None:  # type: ignore[no-untyped-def]
    cfg, results = small_run
    metrics = json.loads(Path(cfg.paths.explain_metrics).read_text())
    assert metrics["n_samples"] == 24 and metrics["n_background"] == 20
    assert metrics["additivity_max_error"] < 1e-3
    shap = np.load(layout.shap_file(cfg))
    assert shap["values"].shape == (24, 64, 10)
    assert shap["importance"].shape == (10, 64)


def test_more_samples_than_test_rows_is_a_config_error(small_run, make_cfg) -> None:  # type: ignore[no-untyped-def]
    cfg, _ = small_run
    from omegaconf import OmegaConf

    bad = OmegaConf.merge(cfg, {"explain": {"n_samples": 100000}})
    with pytest.raises(ConfigError, match="explain.n_samples"):
        explain.run(bad)  # type: ignore[arg-type]
