"""The explanation checks with numbers: the weight-randomisation sanity check
(pipeline.explain.sanity), the surrogate tree (pipeline.explain.surrogate) and the similarity
measures they use (pipeline.explain.similarity)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from markupsafe import escape
from torch import nn

from pipeline import io, layout
from pipeline.config import Config, SurrogateConfig
from pipeline.explain import sanity, similarity, surrogate, trust
from pipeline.explain.explainers import deep_shap
from pipeline.nets.model import MLP
from pipeline.nets.predict import logits_fn
from pipeline.plots import figures
from pipeline.stages import explain
from pipeline.task.classification import Classification
from tests.conftest import toy_summary

# --- similarity ------------------------------------------------------------------------------------


def test_ssim_matches_scikit_image() -> None:
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    for shape in ((8, 8), (28, 28), (5, 9)):
        a = rng.random((6, *shape))
        b = np.clip(a + rng.normal(0, 0.3, a.shape), 0, 1)
        b[0] = a[0]  # identical images: 1
        ours = similarity.ssim(a, b, data_range=1.0)
        win = similarity.window_size(shape)
        theirs = [
            structural_similarity(x, y, data_range=1.0, win_size=win) for x, y in zip(a, b, strict=True)
        ]
        np.testing.assert_allclose(ours, theirs, atol=1e-10)
        assert ours[0] == pytest.approx(1.0)


def test_unit_maps_scale_each_map_by_its_largest_value() -> None:
    maps = np.array([[[-2.0, 1.0], [0.0, 0.5]], [[0.0, 0.0], [0.0, 0.0]]])
    out = similarity.unit_maps(maps)
    assert out[0].tolist() == [[1.0, 0.5], [0.0, 0.25]] and not out[1].any()


# --- sanity check ----------------------------------------------------------------------------------


def linear_shap(net: nn.Sequential, background: np.ndarray, X: np.ndarray) -> np.ndarray:
    """SHAP values of a linear model in closed form: w_c * (x - E[x])."""
    w = net[0].weight.detach().double().numpy()  # (C, F)
    return (X - background.mean(axis=0))[:, :, None] * w.T[None]


def test_linear_model_similarity_equals_the_closed_form_with_the_new_weights() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 3)).eval()
    rng = np.random.default_rng(0)
    background, X = rng.normal(size=(30, 10)).astype(np.float32), rng.normal(size=(12, 10)).astype(np.float32)
    values, _ = deep_shap(net, background, X)
    np.testing.assert_allclose(values, linear_shap(net, background, X), atol=1e-5)  # DeepSHAP is exact here
    target = values.sum(axis=1).argmax(axis=1)
    trained = net[0].weight.detach().clone()
    result = sanity.check(
        net,
        lambda randomised: deep_shap(randomised, background, X)[0],
        values,
        target,
        torch.from_numpy(X[:2]),
        image_shape=None,
        seed=7,
    )
    assert result.layers == ["0"]
    new = sanity.randomised(net, ["0"], seed=7)
    assert not torch.equal(new[0].weight, net[0].weight)  # the layer really is re-initialised
    expected = similarity.rank_agreement(
        np.abs(trust.for_class(linear_shap(net, background, X), target)),
        np.abs(trust.for_class(linear_shap(new, background, X), target)),
    )
    np.testing.assert_allclose(result.cascade_rank[0], expected, atol=1e-9)
    np.testing.assert_allclose(result.single_rank[0], expected, atol=1e-9)
    assert result.metrics()["sanity_rank_all_random"] == pytest.approx(float(np.median(expected)))
    assert torch.equal(net[0].weight, trained)  # the check randomised a copy
    assert result.passed == (float(np.median(expected)) <= 0.5)


def test_an_explainer_that_returns_the_input_fails_the_check() -> None:
    """An "edge detector": its map is the input itself, whatever the weights."""
    torch.manual_seed(1)
    net = MLP(64, 4, [16, 8], "relu", 0.0).eval()
    X = np.random.default_rng(1).normal(size=(10, 64)).astype(np.float32)

    def edges(_net: nn.Module) -> np.ndarray:
        return np.repeat(X[:, :, None], 4, axis=2)

    result = sanity.check(
        net, edges, edges(net), np.zeros(10, int), torch.from_numpy(X[:2]), image_shape=(8, 8), seed=0
    )
    assert len(result.layers) == 3  # three Linear layers, input first
    assert result.rank_all_random == pytest.approx(1.0) and result.ssim_all_random == pytest.approx(1.0)
    assert not result.passed
    assert "failed" in sanity.verdict(result)


def test_deep_shap_on_a_trained_net_passes_and_cascade_goes_from_the_output(
    make_cfg: Callable[..., Config],
) -> None:
    """On a network that learned the digits, DeepSHAP's maps change once the weights are random."""
    from pipeline.stages import prepare, train

    cfg = make_cfg("trainer.max_epochs=15")
    prepare.run(cfg)
    train.run(cfg)
    from pipeline import artifacts

    arrays, _ = artifacts.load_data(cfg)
    net = artifacts.load_model(cfg)
    X, background = arrays["X_test"][:40], arrays["X_train"][:50]
    values, _ = deep_shap(net, background, X)
    calls: list[list[str]] = []

    def spy(randomised: nn.Module) -> np.ndarray:
        changed = [
            name
            for name, m in randomised.named_modules()
            if any(True for _ in m.parameters(recurse=False))
            and not torch.equal(next(m.parameters()), net.get_submodule(name).weight)
        ]
        calls.append(changed)
        return deep_shap(randomised, background, X)[0]

    target = values.sum(axis=1).argmax(axis=1)
    result = sanity.check(net, spy, values, target, torch.from_numpy(X[:2]), image_shape=(8, 8), seed=0)
    real = sanity.weighted_layers(net, torch.from_numpy(X[:2]))
    assert result.layers == [name.removeprefix("net.") for name in real] == ["net.0", "net.3"]
    first, last = real[0], real[-1]
    assert calls[0] == [last] and sorted(calls[len(real) - 1]) == sorted(real)
    assert calls[len(result.layers)] == [first]  # then each layer alone
    # Signs come from the network: random weights decorrelate them. Sizes follow |x - reference|,
    # which no weight touches (Adebayo et al.'s gradient x input finding): the verdict says so.
    assert result.signed_all_random < 0.3 and result.signs_passed, result.metrics()
    if not result.passed:
        assert "failed for the sizes" in sanity.verdict(result)
    assert result.maps.shape == (len(result.layers) + 1, 4, 64)


# --- surrogate tree --------------------------------------------------------------------------------


class ThresholdRule(nn.Module):
    """A network that is a depth-2 tree: class 2*(x0 > 0) + (x1 > 0.5)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = (x[:, 0] > 0).long(), (x[:, 1] > 0.5).long()
        return nn.functional.one_hot(2 * a + b, 4).float() * 10


def test_a_depth_two_rule_gets_a_surrogate_of_fidelity_one_at_depth_two() -> None:
    rng = np.random.default_rng(0)
    X_train, X_test = (
        rng.normal(size=(600, 5)).astype(np.float32),
        rng.normal(size=(300, 5)).astype(np.float32),
    )
    predict = logits_fn(ThresholdRule())
    y_test = predict(X_test).argmax(1)
    y_test[:30] = (y_test[:30] + 1) % 4  # labels the network gets wrong: accuracy 0.9, fidelity unaffected
    task = Classification(
        toy_summary({"class_names": list("abcd"), "feature_names": [f"x{i}" for i in range(5)]})
    )
    tree = task.fit_surrogate(
        predict, X_train, X_test, y_test, SurrogateConfig(max_depth=5, tolerance=0.01), 0
    )
    assert tree.depth == 2 and tree.fidelity[1] == 1.0
    assert tree.fidelity[0] < 0.75  # one split cannot separate four classes
    assert tree.accuracy[1] == pytest.approx(0.9)
    np.testing.assert_allclose(tree.class_fidelity, 1.0)
    rules = surrogate.rules(tree.tree, ["x0", "x1", "x2", "x3", "x4"], 4)
    assert len(rules) == 4 and all(len(r.conditions) == 2 for r in rules)
    texts = {r.text(["a", "b", "c", "d"]) for r in rules}
    assert any(t.startswith("if x0 > ") and " x1 > " in t and "then d" in t for t in texts), texts


def test_choose_depth_takes_the_smallest_within_tolerance() -> None:
    depths = np.arange(1, 6)
    assert surrogate.choose_depth(depths, np.array([0.5, 0.80, 0.895, 0.90, 0.90]), 0.01) == 3
    assert surrogate.choose_depth(depths, np.array([0.5, 0.80, 0.85, 0.90, 0.90]), 0.0) == 4


def test_rules_speak_in_the_features_own_units() -> None:
    rng = np.random.default_rng(2)
    raw = rng.uniform(0, 16, size=(400, 2))
    scaled = (raw - 8) / 4  # as a StandardScaler would
    teacher = (raw[:, 0] > 10).astype(int)
    from sklearn.tree import DecisionTreeClassifier

    tree = surrogate.fit(
        scaled,
        teacher,
        scaled,
        teacher,
        teacher,
        estimator=DecisionTreeClassifier,
        score=surrogate.agreement,
        max_depth=1,
        tolerance=0,
        seed=0,
    )
    found = surrogate.rules(tree.tree, ["pixel (0, 0)", "pixel (0, 1)"], 2, units=(scaled, raw))
    conditions = sorted(rule.conditions[0] for rule in found)
    # The split lies between two rows near raw 10 (scaled 0.5): stated as raw 10, not 0.5.
    for condition in conditions:
        value = float(re.split(r"<=|>", condition)[-1])
        assert value == pytest.approx(10, abs=0.2), conditions


# --- the explain stage ----------------------------------------------------------------------------


def test_the_stage_writes_checks_metrics_plots_and_figures(small_run: tuple[Config, dict]) -> None:
    cfg, results = small_run
    metrics = results["explain"]
    for key in ("sanity_rank_all_random", "sanity_ssim_all_random", "surrogate_fidelity", "surrogate_depth"):
        assert key in metrics and np.isfinite(metrics[key]), key
    assert metrics["sanity_seconds"] > 0 and metrics["surrogate_seconds"] > 0
    rows = io.read_csv(cfg.paths.sanity_plot, "explain")
    assert [int(r["layers_randomised"]) for r in rows] == list(range(len(rows))) and len(rows) >= 3
    assert len(io.read_csv(cfg.paths.surrogate_plot, "explain")) == cfg.explain.surrogate.max_depth
    checks = io.read_json(layout.checks_file(cfg), "explain")
    assert checks["sanity"]["verdict"].startswith("Sanity check")
    assert checks["surrogate"]["rules"][0].startswith("if pixel (")
    drawn = {p.stem for p in layout.figure_dir(cfg.paths.explain).glob("*.png")}
    assert {spec.id for spec in figures.in_section("checks")} <= drawn
    html = Path(cfg.paths.report).read_text()
    assert "Checking the explanation" in html and str(escape(checks["sanity"]["verdict"])) in html
    assert "A decision tree of depth" in html


def test_each_check_has_an_off_switch(make_cfg: Callable[..., Config]) -> None:
    from pipeline.stages import prepare, train

    cfg = make_cfg("explain.sanity.enabled=false", "explain.surrogate.enabled=false")
    prepare.run(cfg)
    train.run(cfg)
    metrics = explain.run(cfg)
    assert not any(k.startswith(("sanity_", "surrogate_")) for k in metrics)
    assert io.read_csv(cfg.paths.sanity_plot, "explain") == []
    drawn = {p.stem for p in layout.figure_dir(cfg.paths.explain).glob("*.png")}
    assert not drawn & {spec.id for spec in figures.in_section("checks")}
