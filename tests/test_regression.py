"""Regression end to end in the stages the lead owns: the task, the target's scaling, the loss
from config, training with one output in the target's units, and evaluation (RMSE, MAE, R²)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from pipeline import artifacts, io, layout, task
from pipeline.config import Config
from pipeline.data import bundled, split
from pipeline.data.dataset import Dataset
from pipeline.errors import ConfigError, DataError
from pipeline.nets import predict
from pipeline.stages import evaluate, prepare, train
from pipeline.training import build, fit
from tests.conftest import toy_summary

# ------------------------------------------------------------------------------- pure parts


def test_folding_the_scale_gives_predictions_in_target_units() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)).eval()
    x = torch.randn(16, 4)
    scaled = net(x).detach()
    fit.fold_target_scale(net, mean=150.0, std=80.0)
    torch.testing.assert_close(net(x).detach(), scaled * 80.0 + 150.0, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(
    "net",
    [
        nn.Sequential(nn.Linear(4, 1), nn.Sigmoid()),  # something after the last Linear
        nn.Sequential(nn.Linear(4, 1, bias=False)),  # no bias to carry the mean
        nn.Sequential(nn.Linear(4, 2)),  # two outputs
    ],
    ids=["sigmoid-after", "no-bias", "two-outputs"],
)
def test_a_regression_network_must_end_in_a_linear_layer(net: nn.Module) -> None:
    with pytest.raises(ConfigError, match="final nn.Linear layer with one output and a bias"):
        build.check_foldable(net, "my.Net", torch.zeros(2, 4))


def regression_summary() -> dict[str, Any]:
    return {"task": "regression", "target_name": "y", "target_mean": 0.0, "target_std": 1.0}


@pytest.mark.parametrize(
    ("overrides", "summary", "expected"),
    [
        ([], {"task": "regression"}, nn.MSELoss),
        ([], {}, nn.CrossEntropyLoss),
        (["loss=huber", "loss.delta=0.5"], {"task": "regression"}, nn.HuberLoss),
        (["loss=l1"], {"task": "regression"}, nn.L1Loss),
        (["loss=cross_entropy", "loss.label_smoothing=0.1"], {}, nn.CrossEntropyLoss),
    ],
)
def test_loss_from_config(
    make_cfg: Callable[..., Config], overrides: list[str], summary: dict[str, Any], expected: type
) -> None:
    loss = build.build_loss(make_cfg(*overrides), task.of(toy_summary(summary)))
    assert type(loss) is expected
    if "loss.delta=0.5" in overrides:
        assert loss.delta == 0.5


@pytest.mark.parametrize(
    ("overrides", "summary", "pattern"),
    [
        (["loss=cross_entropy"], {"task": "regression"}, "is not a regression loss.*loss=mse"),
        (["loss=mse"], {}, "is not a classification loss.*loss=cross_entropy"),
        (["loss=huber", "+loss.delt=1"], {"task": "regression"}, r"loss\.delt"),
        (["+loss.delta=1"], {"task": "regression"}, r"'loss\.delta' is set but loss\._target_ is null"),
        (["loss._target_=torch.nn.Nope"], {"task": "regression"}, r"'loss\._target_' = 'torch\.nn\.Nope'"),
    ],
    ids=["ce-for-regression", "mse-for-classes", "misspelt-key", "key-without-loss", "unknown-class"],
)
def test_a_loss_that_does_not_fit_stops_before_training(
    make_cfg: Callable[..., Config], overrides: list[str], summary: dict[str, Any], pattern: str
) -> None:
    with pytest.raises(ConfigError, match=pattern):
        build.build_loss(make_cfg(*overrides), task.of(toy_summary(summary)))


def test_prepare_keeps_the_target_in_its_units_and_records_its_scale() -> None:
    ds = bundled.load_diabetes()
    arrays, summary = split.prepare(ds, StandardScaler(), 0.2, 0.1, seed=42)
    assert summary.task == "regression" and summary.test_split == "random"
    assert summary.n_classes == 1 and summary.class_names == ["progression"]
    assert summary.class_balance is None
    assert arrays["y_train"].dtype == np.float32
    assert summary.target_mean == pytest.approx(float(arrays["y_train"].mean()), rel=1e-5)
    assert summary.target_std == pytest.approx(float(arrays["y_train"].std()), rel=1e-4)
    assert sum(summary.sizes.values()) == 442
    # Every row once, with its own target value (a permutation, not a resampling).
    together = np.sort(np.concatenate([arrays[f"y_{s}"] for s in ("train", "val", "test")]))
    np.testing.assert_array_equal(together, np.sort(ds.y))


def test_prepare_refuses_a_task_the_dataset_does_not_have(make_cfg: Callable[..., Config]) -> None:
    with pytest.raises(ConfigError, match=r"'task' = 'classification'.*'diabetes'.*regression dataset"):
        prepare.run(make_cfg("data=diabetes", "task=classification"))
    with pytest.raises(ConfigError, match=r"data\.loader\.task"):
        prepare.run(
            make_cfg(
                "data=csv", "data.loader.path=x.csv", "data.loader.target=y", "+data.loader.task=regression"
            )
        )


def test_tiny_regression_splits_are_refused() -> None:
    ds = Dataset(
        "tiny",
        np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32),
        np.arange(8.0),
        ["a", "b"],
        [],
    )
    ds.task = "regression"
    with pytest.raises(DataError, match="val split would get 1 row"):
        split.prepare(ds, None, 0.25, 0.1, seed=0)


# ------------------------------------------------------------------------------- a trained run


def test_trained_regression_predicts_in_the_target_units(
    regression_trained: tuple[Config, dict[str, Any]],
) -> None:
    cfg, results = regression_trained
    summary, metrics = results["prepare"], results["train"]
    assert set(metrics) >= {"best_val_loss", "best_val_rmse", "best_epoch"} and "best_val_acc" not in metrics
    history = io.read_csv(cfg.paths.history, "train")
    assert list(history[0]) == ["epoch", "train_loss", "train_rmse", "val_loss", "val_rmse"]
    # The validation RMSE is the loss's square root in the target's units (MSE of the scaled target).
    best = min(history, key=lambda row: float(row["val_loss"]))
    assert float(best["val_rmse"]) == pytest.approx(
        np.sqrt(float(best["val_loss"])) * summary.target_std, rel=1e-3
    )
    arrays, _ = artifacts.load_data(cfg)
    net = artifacts.load_model(cfg)
    pred = predict.predict_values(net, arrays["X_val"])
    assert pred.shape == (len(arrays["y_val"]),)
    rmse = float(np.sqrt(np.mean((pred - arrays["y_val"]) ** 2)))
    assert rmse == pytest.approx(metrics["best_val_rmse"], rel=1e-3)
    # Predictions sit where the target lives (mean ~150), not near 0 as the scaled fit does.
    assert abs(pred.mean() - summary.target_mean) < 0.5 * summary.target_std
    run = io.read_json(layout.run_file(cfg), "train")
    assert run["task"] == "regression"


def test_evaluate_writes_regression_outputs(regression_trained: tuple[Config, dict[str, Any]]) -> None:
    cfg, results = regression_trained
    result = evaluate.run(cfg)
    m = result["metrics"]
    assert set(m) >= {"rmse", "mae", "r2", "baseline_rmse", "n_test"}
    assert 0 < m["mae"] <= m["rmse"] <= m["max_abs_error"]
    assert m["rmse"] < m["baseline_rmse"]  # better than always predicting the train mean
    rows = io.read_csv(cfg.paths.regression_plot, "evaluate")
    assert len(rows) == m["n_test"] and list(rows[0]) == ["actual", "predicted"]
    arrays, _ = artifacts.load_data(cfg)
    actual = np.array([float(r["actual"]) for r in rows])
    np.testing.assert_allclose(actual, arrays["y_test"], rtol=1e-6)
    assert io.read_csv(cfg.paths.predictions, "evaluate") == []  # the confusion plot: no rows
    assert io.read_csv(cfg.paths.calibration, "evaluate") == []
    assert io.read_json(layout.evaluation_file(cfg), "evaluate")["task"] == "regression"
    figures = {p.stem for p in layout.figure_dir(cfg.paths.evaluate).glob("*.png")}
    assert figures == {
        "training_curves",
        "predicted_vs_actual",
        "residuals_vs_predicted",
        "residual_distribution",
    }
    assert io.read_json(cfg.paths.evaluate_metrics, "evaluate")["r2"] == pytest.approx(m["r2"])


def test_the_objective_must_exist_for_the_task(regression_trained: tuple[Config, dict[str, Any]]) -> None:
    cfg, _ = regression_trained
    bad = copy.deepcopy(cfg)
    bad.train.objective = "best_val_acc"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"'train\.objective' = 'best_val_acc'.*best_val_rmse"):
        train.run(bad)


def test_the_diabetes_preset_reaches_r2_040(make_cfg: Callable[..., Config]) -> None:
    """The issue's bar: test R² >= 0.40 with +experiment=diabetes_mlp (a linear regression on the
    same split: about 0.45)."""
    cfg = make_cfg("+experiment=diabetes_mlp", "trainer.enable_progress_bar=false", fast=False)
    prepare.run(cfg)
    train.run(cfg)
    r2 = evaluate.run(cfg)["metrics"]["r2"]
    arrays, _ = artifacts.load_data(cfg)
    linear = LinearRegression().fit(arrays["X_train"], arrays["y_train"])
    linear_r2 = 1 - np.sum((arrays["y_test"] - linear.predict(arrays["X_test"])) ** 2) / np.sum(
        (arrays["y_test"] - arrays["y_test"].mean()) ** 2
    )
    assert r2 >= 0.40, (r2, linear_r2)
    assert 0.40 <= linear_r2 <= 0.50  # the reference the issue quotes


def test_compare_ranks_regressions_by_test_rmse_lower_first() -> None:
    from pipeline.tools import compare
    from pipeline.tracking.queries import RunRecord

    def record(name: str, task: str, **metrics: float) -> RunRecord:
        return RunRecord(name, name, 0, "FINISHED", {}, metrics, {"task": task})

    runs = [record("a", "regression", test_rmse=60.0), record("b", "regression", test_rmse=52.0)]
    metric, higher = compare.ranking(runs, None, None)
    assert (metric, higher) == ("test_rmse", False)
    ranked, _ = compare.rank(runs, metric, higher)
    assert [r.name for r in ranked] == ["b", "a"]
    assert compare.ranking([record("c", "classification", test_accuracy=0.9)], None, None) == (
        "test_accuracy",
        True,
    )
    assert compare.ranking(runs, "test_r2", None) == ("test_r2", True)
    assert compare.ranking(runs, "test_mae", None) == ("test_mae", False)
    assert compare.ranking(runs, "test_r2", False) == ("test_r2", False)  # as configured
    assert "lower is better" in compare.verdict(ranked, [], metric, higher, [])[0]


def test_the_report_speaks_of_errors_in_the_target_units(
    regression_run: tuple[Config, dict[str, Any]],
) -> None:
    import html as html_lib
    import re

    from pipeline.plots import figures

    cfg, results = regression_run
    page = Path(cfg.paths.report).read_text(encoding="utf-8")
    text = re.sub(r"<style.*?</style>|<script.*?</script>", "", page, flags=re.S)
    text = html_lib.unescape(
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r'src="data:[^"]*"', "", text)))
    )
    m = results["evaluate"]["metrics"]
    assert f"{m['rmse']:.4g} test RMSE (progression)" in text
    assert "predictions of progression are off by" in text and "R²" in text
    assert "The largest errors" in text and "The worst mistakes" not in text
    assert "1 value: the predicted progression" in text
    # No classification wording: classes, accuracy, probabilities, softmax.
    for word in ("softmax", "class probabilities", "misclassified", "test accuracy", "confusion matrix"):
        assert word not in text.lower(), word
    # Figures carry their regression captions; classification-only figures are absent.
    curves = figures.spec("training_curves")
    assert curves.regression_caption[:60] in text and curves.caption[:60] not in text
    assert figures.spec("predicted_vs_actual").caption[:60] in text
    assert 'id="fig-confusion_matrix"' not in page and 'id="fig-reliability"' not in page


REGNETS = '''
from torch import nn


class Chain(nn.Module):
    """Not the shipped MLP: named layers and a forward of its own, ending in one output."""

    def __init__(self, in_features, n_classes, width=16):
        super().__init__()
        self.inp = nn.Linear(in_features, width)
        self.act = nn.Tanh()
        self.out = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.out(self.act(self.inp(x)))


class Squashed(Chain):
    def forward(self, x):
        return super().forward(x).sigmoid()
'''


def test_a_csv_target_and_a_users_own_network(
    make_cfg: Callable[..., Config], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """data=csv with a numeric target (inferred as a regression), trained on a network of the
    user's own, evaluated and explained; a user's network that squashes its output is refused."""
    import sys

    import pandas as pd

    from pipeline.stages import explain

    (tmp_path / "usercode").mkdir()
    (tmp_path / "usercode" / "regnets.py").write_text(REGNETS)
    monkeypatch.syspath_prepend(str(tmp_path / "usercode"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    price = 1000 + 300 * x[:, 0] - 150 * x[:, 1] ** 2 + rng.normal(scale=30, size=400)
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "noise": x[:, 2], "price": price}).to_csv(
        tmp_path / "houses.csv", index=False
    )
    common = ["data=csv", "data.loader.path=houses.csv", "data.loader.target=price", "model=custom"]
    cfg = make_cfg(*common, "model._target_=regnets.Chain", "+model.width=16", "trainer.max_epochs=60")
    summary = prepare.run(cfg)
    assert summary.task == "regression" and summary.target_name == "price"
    train.run(cfg)
    m = evaluate.run(cfg)["metrics"]
    assert m["r2"] > 0.6, m  # the a term alone explains 2/3 of the spread
    result = explain.run(cfg)
    assert result["additivity_max_error"] < 0.05 * m["rmse"]
    path = io.read_json(cfg.paths.explain_metrics, "explain")["path"]
    assert path and "closed form" not in path  # not the shipped MLP: another path, named
    importance = np.asarray(io.read_json(layout.importance_file(cfg), "explain")["importance"]).sum(axis=0)
    assert importance.argmax() == 0 and importance.argmin() == 2  # a drives the price, noise does not
    squashed = make_cfg(*common, "model._target_=regnets.Squashed")
    with pytest.raises(ConfigError, match="regnets.Squashed cannot be trained for regression"):
        train.run(squashed)
    sys.modules.pop("regnets", None)
