"""pipeline.explain.fast_deep gives shap.DeepExplainer's numbers (it replaces the plain call in explain)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.explain import fast_deep
from pipeline.nets.model import MLP


def shap_reference(net: nn.Module, background: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import shap

    explainer = shap.DeepExplainer(net, torch.from_numpy(background))
    values = np.asarray(explainer.shap_values(torch.from_numpy(X), check_additivity=False))
    return values, np.asarray(explainer.expected_value)


@pytest.mark.parametrize(
    ("activation", "hidden", "dropout"),
    [
        ("relu", [24], 0.2),
        ("relu", [24], 0.0),
        ("tanh", [24], 0.2),
        ("sigmoid", [24], 0.0),
        ("relu", [16, 12], 0.2),
        ("tanh", [16, 12, 8], 0.0),
        ("sigmoid", [16, 12], 0.2),
    ],
)
def test_matches_shap_deep_explainer(activation: str, hidden: list[int], dropout: float) -> None:
    torch.manual_seed(0)
    net = MLP(12, 4, hidden, activation, dropout).eval()
    rng = np.random.default_rng(0)
    background = rng.normal(size=(15, 12)).astype(np.float32)
    X = rng.normal(size=(9, 12)).astype(np.float32)
    X[0] = background[3]  # a sample equal to a reference: the 1e-6 gradient fallback is used
    X[1, :6] = background[0, :6]
    values, base = fast_deep.deep_shap(net, background, X)
    expected, expected_base = shap_reference(net, background, X)
    assert values.shape == expected.shape == (9, 12, 4)
    np.testing.assert_allclose(values, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(base, expected_base, atol=1e-6, rtol=0)
    with torch.inference_mode():
        outputs = net(torch.from_numpy(X)).double().numpy()
    # Additivity: attributions plus base value give the model's output.
    np.testing.assert_allclose(values.sum(axis=1) + base, outputs, atol=1e-5)


def test_small_blocks_give_the_same_values() -> None:
    torch.manual_seed(1)
    net = MLP(10, 3, [8, 6], "relu", 0.0).eval()
    rng = np.random.default_rng(1)
    background, X = rng.normal(size=(7, 10)).astype(np.float32), rng.normal(size=(11, 10)).astype(np.float32)
    whole, _ = fast_deep.deep_shap(net, background, X)
    blocked, _ = fast_deep.deep_shap(net, background, X, block_bytes=1)  # one row per block
    np.testing.assert_allclose(whole, blocked, atol=1e-6)


def test_other_layers_fall_back_to_shap() -> None:
    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.relu(self.a(x)) + x)

    assert fast_deep.layers_of(Skip()) is None
    assert fast_deep.layers_of(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))) is None
    assert fast_deep.layers_of(MLP(4, 2, [3], "relu", 0.1)) is not None


@pytest.mark.parametrize("activation", [nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Softplus])
def test_any_elementwise_layer_of_the_vocabulary_matches_the_batched_rules(
    activation: type[nn.Module],
) -> None:
    """Beyond the presets' activations (closed-form derivatives), every elementwise layer of
    pipeline.nets.layers goes through the closed form, with the same numbers as deep_lift's rules."""
    from pipeline.explain import deep_lift

    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Linear(8, 6), activation(), nn.Dropout(0.1), nn.Linear(6, 5), activation(), nn.Linear(5, 3)
    )
    net.eval()
    rng = np.random.default_rng(2)
    background = rng.normal(size=(10, 8)).astype(np.float32)
    X = rng.normal(size=(6, 8)).astype(np.float32)
    X[0] = background[2]  # the 1e-6 gradient fallback: the derivative at the reference
    assert fast_deep.layers_of(net) is not None
    values, base = fast_deep.deep_shap(net, background, X)
    expected, expected_base = deep_lift.deep_shap(net, background, X)
    np.testing.assert_allclose(values, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(base, expected_base, atol=1e-6, rtol=0)
