"""The explainers (pipeline.explain.explainers): each one's attributions on tiny models, and the
explainer a config names, checked against its function before any work."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.errors import ConfigError
from pipeline.explain import explainers, similarity, trust
from pipeline.nets import model, predict
from tests.conftest import ROOT

# --- explainers on a tiny model -----------------------------------------------------------------


def _linear() -> tuple[nn.Module, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3))
    background = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    X = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    return net, background, X


def _outputs(net: nn.Module, X: np.ndarray) -> np.ndarray:
    return predict.logits_fn(net)(X)


def bound(name: str, **options: Any) -> Any:
    """The shipped explainer ``name`` with ``options``, as the stage binds it (seed 0)."""
    target = f"pipeline.explain.explainers.{name}_shap"
    return explainers.from_config({"_target_": target, "_partial_": True, **options}, seed=0)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("deep", {}),
        ("permutation", {"max_evals": 50}),
        ("partition", {"max_evals": 50}),
        ("kernel", {"nsamples": 100}),
    ],
)
def test_explainers_on_a_linear_model_are_exact(name: str, options: dict[str, Any]) -> None:
    # For a linear model (independent features) SHAP values are w_j * (x_j - mean(background_j)).
    net, background, X = _linear()
    values, base = bound(name, **options)(net, background, X)
    assert values.shape == (5, 4, 3) and base.shape == (5, 3)
    w = net[0].weight.detach().numpy().astype(np.float64)  # (3, 4)
    expected = (X - background.mean(axis=0))[:, :, None] * w.T[None, :, :]
    assert np.allclose(values, expected, atol=1e-4)
    assert trust.additivity_error(values, base, _outputs(net, X)).max() < 1e-4


def _tiny_mlp() -> tuple[nn.Module, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    net = model.MLP(6, 3, hidden_sizes=[8], activation="tanh", dropout=0.1).eval()
    rng = np.random.default_rng(0)
    return net, rng.normal(size=(25, 6)).astype(np.float32), rng.normal(size=(7, 6)).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "options", "tolerance"),
    [
        ("deep", {}, 1e-5),
        ("permutation", {"max_evals": 13}, 1e-6),  # one full permutation forwards and back: exact sums
        ("partition", {"max_evals": 100}, 1e-6),
        ("kernel", {"nsamples": 64}, 1e-5),  # 2^6 coalitions: the whole space
        ("gradient", {"nsamples": 400}, 0.3),  # expected gradients: additive only on average
    ],
)
def test_every_explainer_gives_logit_attributions_that_add_up(
    name: str, options: dict[str, Any], tolerance: float
) -> None:
    net, background, X = _tiny_mlp()
    values, base = bound(name, **options)(net, background, X)
    assert values.shape == (7, 6, 3) and base.shape == (7, 3)
    outputs = _outputs(net, X)
    error = trust.additivity_error(values, base, outputs)
    assert error.max() < tolerance
    if name != "deep":  # each method agrees with DeepExplainer on the ranking of the features
        deep, _ = explainers.deep_shap(net, background, X)
        pred = outputs.argmax(axis=1)
        rho = similarity.rank_agreement(trust.for_class(values, pred), trust.for_class(deep, pred))
        assert np.median(rho) > 0.6


def test_integrated_gradients_on_a_linear_model() -> None:
    # For a linear model IG from baseline b is w_target * (x - b) exactly: the same as DeepSHAP from
    # the background mean, so the two rankings agree perfectly.
    net, background, X = _linear()
    target = np.array([0, 1, 2, 0, 1])
    baseline = background.mean(axis=0)
    ig, gap = trust.integrated_gradients(net, X, baseline, target, steps=8)
    w = net[0].weight.detach().numpy().astype(np.float64)
    assert np.allclose(ig, (X - baseline) * w[target], atol=1e-5)
    assert gap.max() < 1e-4
    deep, _ = explainers.deep_shap(net, background, X)
    assert np.allclose(similarity.rank_agreement(trust.for_class(deep, target), ig), 1.0)


# --- configuration errors -----------------------------------------------------------------------


def _options(name: str, **options: Any) -> dict[str, Any]:
    return {"_target_": f"pipeline.explain.explainers.{name}_shap", "_partial_": True, **options}


def test_explainer_options_are_checked_against_the_explainer() -> None:
    chosen = explainers.from_config(_options("permutation", max_evals=99), seed=7)
    assert chosen.func is explainers.permutation_shap and chosen.keywords == {"max_evals": 99, "seed": 7}
    assert explainers.from_config(_options("deep"), seed=7).keywords == {}
    with pytest.raises(ConfigError, match=r"explain.options.nsamples.*permutation.*max_evals"):
        explainers.from_config(_options("permutation", nsamples=10), seed=0)
    with pytest.raises(ConfigError, match=r"explain.options.nsamples.*integer"):
        explainers.from_config(_options("kernel", nsamples="many"), seed=0)
    with pytest.raises(ConfigError, match=r"explain.options.max_evals.*at least 1"):
        explainers.from_config(_options("partition", max_evals=0), seed=0)
    with pytest.raises(ConfigError, match=r"explain.options.seed.*set by the explain stage.*seed="):
        explainers.from_config(_options("gradient", seed=3), seed=0)
    with pytest.raises(
        ConfigError, match=r"explain.options.max_eval'.*did you mean 'explain.options.max_evals'"
    ):
        explainers.from_config(_options("partition", max_eval=10), seed=0)


def test_an_unknown_explainer_fails_in_one_line_naming_the_key() -> None:
    for target in ("pipeline.explain.explainers.lime_shap", "nowhere.explain"):
        with pytest.raises(
            ConfigError, match=r"^Config key 'explain.options._target_' = .* names no importable"
        ) as err:
            explainers.from_config({"_target_": target, "_partial_": True}, seed=0)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"'explain.options._target_' is missing"):
        explainers.from_config({"_partial_": True}, seed=0)
    with pytest.raises(ConfigError, match=r"'explain.options._partial_' must be true"):
        explainers.from_config({"_target_": "pipeline.explain.explainers.deep_shap"}, seed=0)


def test_an_explainer_is_any_function_and_names_what_computes_it() -> None:
    net, background, X = _linear()
    marked = explainers.from_config(_options("kernel"), seed=0)
    assert explainers.path_of(marked, net, background) == "shap.KernelExplainer"
    mlp = model.MLP(4, 3, [8], "relu", 0.0).eval()
    assert (
        explainers.path_of(explainers.deep_shap, mlp, background)
        == "closed form (pipeline.explain.fast_deep)"
    )
    # A function of one's own, unmarked: named by its qualified name, never a failure at the end.
    own = explainers.from_config(
        {"_target_": "tests.explain.test_explainers.mean_difference", "_partial_": True}, seed=0
    )
    values, base = own(net, background, X)
    assert values.shape == (5, 4, 1) and base.shape == (5, 1)
    assert explainers.path_of(own, net, background) == "tests.explain.test_explainers.mean_difference"


def mean_difference(net: nn.Module, background: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A toy explainer (the distance from the background mean), to be named by ``_target_``."""
    return (X - background.mean(axis=0))[:, :, None], np.zeros((len(X), 1))


def test_unsupported_model_explainer_pairs_say_what_to_use() -> None:
    net, background, X = _tiny_mlp()
    with pytest.raises(ConfigError, match=r"at least 2 x features \+ 1 = 13.*max_evals=13"):
        explainers.permutation_shap(net, background, X, max_evals=12)
    with pytest.raises(ConfigError, match=r"kernel on 6 features.*explain=permutation"):
        explainers.kernel_shap(net, background, X, max_features=5)
    odd = nn.Sequential(nn.Linear(6, 4), nn.Hardswish(), nn.Linear(4, 3))
    with pytest.raises(ConfigError, match=r"deep cannot propagate through layer\(s\) Hardswish.*gradient"):
        explainers.deep_shap(odd, background, X)
    with pytest.raises(ConfigError, match=r"gradient needs a PyTorch model.*permutation"):
        explainers.gradient_shap(predict.logits_fn(net), background, X)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"partition.*constant.*permutation"):
        explainers.partition_shap(net, np.ones_like(background), X)


def test_every_explain_config_composes_and_names_an_explainer_function(make_cfg) -> None:  # type: ignore[no-untyped-def]
    for conf in sorted((ROOT / "conf" / "explain").glob("*.yaml")):
        cfg = make_cfg(f"explain={conf.stem}")
        chosen = explainers.from_config(cfg.explain.options, cfg.seed)  # the function and its options
        assert chosen.func is getattr(explainers, f"{conf.stem}_shap")
        assert explainers.name_of(chosen) == conf.stem  # the name the log and the report show
        assert explainers.path_of(chosen, model.MLP(4, 3, [8], "relu", 0.0), np.zeros((2, 4), np.float32))
