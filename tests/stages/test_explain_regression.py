"""The explain stage on a regression (one network output, in the target's units): the statistics on
hand-made cases, the surrogate regression tree, the figures, and the stage on the diabetes table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from pipeline import io, layout, stats
from pipeline.config import Config, ExplainConfig, SanityConfig, SurrogateConfig
from pipeline.explain import core, explainers, surrogate, trust
from pipeline.plots import attribution as figs
from pipeline.plots import checks as check_figs
from pipeline.plots import figures
from pipeline.stages import explain
from pipeline.task.regression import Regression
from tests.conftest import toy_summary

TASK = Regression(
    toy_summary(
        {"target_name": "y", "class_names": ["y"], "feature_names": ["a", "b", "c"], "image_shape": None}
    )
)

# --- statistics on hand-made cases -------------------------------------------------------------


def _first_feature_times_ten(X: np.ndarray) -> np.ndarray:
    """A regression 'network' that predicts 10 x feature 0 and ignores the rest: (m, F) -> (m, 1)."""
    return 10.0 * np.asarray(X, dtype=np.float64)[:, :1]


def test_rmse_grows_faster_when_the_feature_that_matters_goes_first() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))
    y = _first_feature_times_ten(X)[:, 0]  # the model is exact: RMSE 0 with every feature present
    baseline = np.zeros(4)
    attributions = np.zeros((50, 4))
    attributions[:, 0] = 1.0  # feature 0 ranked first
    out = trust.faithfulness(
        _first_feature_times_ten,
        X,
        y,
        attributions,
        baseline,
        steps=4,
        n_random=8,
        rng=np.random.default_rng(1),
        score=TASK.removal_score(),
    )
    rmse_all_removed = float(np.sqrt(np.mean(y**2)))
    assert out["guided"][0] == pytest.approx(0.0, abs=1e-5)  # the masked copies are float32
    # Attribution order: the one feature that matters is removed at the first step.
    assert np.allclose(out["guided"][1:], rmse_all_removed, rtol=1e-5)
    # Random orders: the error rises step by step, and never above the guided curve.
    assert np.all(np.diff(out["random"]) >= -1e-5)
    assert np.all(out["guided"] >= out["random"] - 1e-5)
    assert out["area"] > 0
    # The same with the explanation reversed (the feature that matters last): the area turns negative.
    reversed_out = trust.faithfulness(
        _first_feature_times_ten,
        X,
        y,
        -attributions + 2.0,  # feature 0 now has the smallest |attribution|
        baseline,
        steps=4,
        n_random=8,
        rng=np.random.default_rng(1),
        score=trust.RMSE,
    )
    assert reversed_out["area"] < 0


def test_rmse_score_by_hand() -> None:
    outputs = np.array([[[1.0], [3.0]], [[2.0], [2.0]]])  # (S=2, n=2, 1)
    assert trust.rmse_score(outputs, np.array([1.0, 1.0])).tolist() == pytest.approx([np.sqrt(2.0), 1.0])


def test_regression_examples_take_the_largest_errors_first_then_the_best() -> None:
    y_true = np.array([10.0, 10.0, 10.0, 10.0, 10.0])
    y_pred = np.array([11.0, 30.0, 10.0, 0.0, 12.0])
    assert TASK.pick_examples(y_true, y_pred, 4).tolist() == [1, 3, 2, 0]
    assert TASK.pick_examples(y_true, y_pred, 9).tolist() == [1, 3, 4, 0, 2]  # all, worst first
    assert TASK.pick_examples(y_true[:0], y_pred[:0], 4).tolist() == []


def test_a_regression_explains_its_one_output_and_has_no_mistakes() -> None:
    outputs = np.array([[150.0], [90.5], [200.25]])
    assert TASK.prediction_of(outputs).tolist() == [150.0, 90.5, 200.25]
    assert TASK.explained_outputs(outputs, np.arange(3)).tolist() == [0, 0, 0]
    assert TASK.wrong_rows(np.array([1.0, 2.0]), np.array([5.0, 2.0])).tolist() == []
    faith = {"fractions": np.array([0.0, 0.5, 1.0]), "guided": np.array([1.0, 3.0, 5.0]),
             "random": np.array([1.0, 2.0, 5.0]), "area": 0.5}  # fmt: skip
    metrics = TASK.faithfulness_metrics(faith, np.array([0.0, 2.0]))  # targets' sd 1
    assert metrics["faithfulness_area"] == metrics["faithfulness_rmse_area"] == 0.5
    assert metrics["faithfulness_rmse_top10pct_removed"] == pytest.approx(1.4)
    assert metrics["faithfulness_random_rmse_top10pct_removed"] == pytest.approx(1.2)


# --- the surrogate regression tree --------------------------------------------------------------


def test_a_step_function_gets_a_regression_surrogate_of_r2_one_at_depth_one() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    teacher = np.where(X[:, 1] > 0.25, 200.0, 100.0)  # one threshold on feature 1

    def network(rows: np.ndarray) -> np.ndarray:  # the teacher as a one-output network
        return np.where(rows[:, 1] > 0.25, 200.0, 100.0)[:, None]

    tree = TASK.fit_surrogate(network, X, X, teacher, SurrogateConfig(max_depth=4, tolerance=0.01), seed=0)
    assert tree.regression and tree.depth == 1
    assert tree.fidelity[0] == pytest.approx(1.0)
    metrics = tree.metrics()
    assert metrics["surrogate_fidelity_r2"] == pytest.approx(1.0)
    assert metrics["surrogate_fidelity"] == metrics["surrogate_fidelity_r2"]
    assert metrics["surrogate_fidelity_rmse"] == pytest.approx(0.0)
    assert "surrogate_accuracy" not in metrics  # no accuracy for a regression; surrogate_r2 instead
    found = surrogate.rules(tree.tree, ["a", "b", "c"], 2)
    assert {round(rule.prediction) for rule in found} == {100, 200}
    text = found[0].text(["progression"])
    assert text.startswith("if b ") and "the network predicts progression ≈ " in text


def test_r2_by_hand() -> None:
    """The surrogate's score for a regression (stats.r2)."""
    assert stats.r2(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) == 1.0
    assert stats.r2(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0])) == 0.0
    assert np.isnan(stats.r2(np.array([2.0, 2.0]), np.array([1.0, 3.0])))


# --- figures ------------------------------------------------------------------------------------


def _texts(fig: Any) -> str:
    return " ".join(
        [ax.get_title() for ax in fig.axes]
        + [ax.get_xlabel() for ax in fig.axes]
        + [ax.get_ylabel() for ax in fig.axes]
        + [t.get_text() for ax in fig.axes for t in ax.texts]
    )


def test_regression_figures_speak_of_the_prediction_not_of_classes() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(12, 5, 1)) * 20
    data = rng.normal(size=(12, 5))
    names = [f"f{i}" for i in range(5)]
    fractions = np.linspace(0, 1, 5)
    made = [
        figs.beeswarm(values, data, names, ["y"], "y"),
        figs.waterfalls(values[:3, :, 0], np.full(3, 150.0), data[:3], names, ["a", "b", "c"], "y"),
        figs.feature_importance_bars(np.abs(values).mean(axis=0).T, names, ["y"], "y"),
        figs.faithfulness_curves(fractions, 50 + 20 * fractions, 50 + 10 * fractions, np.ones(5), "y"),
        figs.rank_agreement_hist(np.array([0.9, 0.8, np.nan]), "y"),
        figs.class_importance_maps(np.abs(rng.normal(size=(1, 4))), (2, 2), ["y"], "y"),
        check_figs.surrogate_fidelity(np.arange(1, 4), np.array([-0.2, 0.6, 0.8]), np.zeros(3), 3, 0.5, "y"),
    ]
    for fig in made:
        text = _texts(fig)
        assert "class" not in text and "logit" not in text and "accuracy" not in text, text
        plt.close(fig)
    assert "predicted y" in _texts(made[0]) and "R²" in _texts(made[-1])


# --- the stage on the diabetes regression -------------------------------------------------------


@pytest.fixture(scope="module")
def explained(regression_trained: tuple[Config, dict[str, Any]]) -> tuple[Config, dict[str, Any]]:
    cfg, _ = regression_trained
    return cfg, explain.run(cfg)


def test_the_stage_explains_the_single_output_and_its_checks_hold(
    explained: tuple[Config, dict[str, Any]],
) -> None:
    cfg, metrics = explained
    assert (
        json.loads(Path(cfg.paths.explain_metrics).read_text())["path"]
        == "closed form (pipeline.explain.fast_deep)"
    )
    shap = np.load(layout.shap_file(cfg))
    n = metrics["n_samples"]
    assert shap["values"].shape == (n, 10, 1) and shap["base"].shape == (n, 1)
    # Additivity against the prediction, in the target's units (a float32 net: ~1e-5 of ~150).
    prediction = shap["outputs"][:, 0]
    assert np.allclose(shap["y_pred"], prediction)
    assert np.abs(shap["values"].sum(axis=1)[:, 0] + shap["base"][:, 0] - prediction).max() < 1e-2
    assert metrics["additivity_max_error"] < 1e-2
    # Faithfulness: the error grows as features are removed, faster in SHAP's order than at random.
    guided, random = shap["faith_guided"], shap["faith_random"]
    assert guided[-1] > guided[0] and random[-1] > random[0]
    assert guided[0] == pytest.approx(metrics["faithfulness_rmse_full"])
    assert metrics["faithfulness_rmse_area"] > 0 and metrics["faithfulness_area"] > 0
    assert metrics["faithfulness_rmse_top10pct_removed"] >= metrics["faithfulness_rmse_full"]
    assert not any(key.startswith("faithfulness_acc") for key in metrics)
    # Integrated Gradients of the same output ranks the features much the same way.
    assert metrics["ig_spearman_median"] > 0.5
    # The randomisation check ran on the single output; the surrogate is a regression tree.
    assert 0 <= metrics["sanity_rank_all_random"] <= 1
    assert 0 < metrics["surrogate_fidelity_r2"] <= 1
    assert metrics["surrogate_fidelity"] == metrics["surrogate_fidelity_r2"]
    assert metrics["surrogate_fidelity_rmse"] > 0 and -1 < metrics["surrogate_r2"] <= 1
    assert "surrogate_accuracy" not in metrics


def test_the_stage_draws_the_regression_figures_and_writes_its_records(
    explained: tuple[Config, dict[str, Any]],
) -> None:
    cfg, _ = explained
    drawn = {p.stem for p in layout.figure_dir(cfg.paths.explain).glob("*.png")}
    assert drawn == {
        "beeswarm",
        "waterfall",
        "feature_importance",
        "faithfulness",
        "ig_agreement",
        "sanity_curve",
        "surrogate_fidelity",
        "surrogate_tree",
    }  # no per-class figure (surrogate_classes), no image maps
    for fid in drawn:
        spec = figures.spec(fid)
        assert "class" not in spec.caption_for("regression"), fid
    checks = io.read_json(layout.checks_file(cfg), "explain")
    tree = checks["surrogate"]
    assert tree["task"] == "regression" and tree["target_name"] == "progression"
    assert tree["weakest_classes"] == [] and -1 < tree["network_r2"] <= 1
    assert tree["rules"] and all("the network predicts progression ≈ " in rule for rule in tree["rules"])
    importance = io.read_json(layout.importance_file(cfg), "explain")
    assert np.asarray(importance["importance"]).shape == (1, 10)
    assert len(io.read_csv(cfg.paths.surrogate_plot, "explain")) == cfg.explain.surrogate.max_depth


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("deep", {}),
        ("permutation", {"max_evals": 50}),
        ("partition", {"max_evals": 50}),
        ("kernel", {"nsamples": 100}),
    ],
)
def test_every_exact_explainer_gives_single_output_attributions_that_add_up(
    name: str, options: dict[str, Any]
) -> None:
    """shap drops the output axis for a one-output model; the stage puts it back, base values too."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    rng = np.random.default_rng(0)
    background = rng.normal(size=(10, 4)).astype(np.float32)
    X = rng.normal(size=(6, 4)).astype(np.float32)
    # Four features as a 2x2 image: an image classifier would be topped up with mistakes.
    task = Regression(
        toy_summary(
            {"target_name": "y", "class_names": ["y"], "feature_names": list("abcd"), "image_shape": [2, 2]}
        )
    )
    result = core.explain(
        net,
        X,
        rng.normal(size=6).astype(np.float32),
        background,
        explainer=explainers.from_config(
            {"_target_": f"pipeline.explain.explainers.{name}_shap", "_partial_": True, **options}, seed=0
        ),
        config=ExplainConfig(
            n_samples=6,
            n_background=10,
            n_examples=4,
            sanity=SanityConfig(enabled=False),
            surrogate=SurrogateConfig(enabled=False),
        ),
        task=task,
        seed=0,
    )
    assert result.arrays["values"].shape == (6, 4, 1) and result.arrays["base"].shape == (6, 1)
    assert result.metrics["additivity_max_error"] < 1e-4
    assert len(result.arrays["extra_rows"]) == 0  # no mistakes to top up in a regression
