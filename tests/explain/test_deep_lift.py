"""pipeline.explain.deep_lift gives shap.DeepExplainer's numbers for chains of layers (convolutional nets
included), and explain sends a network it cannot trace as a chain to shap itself."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.explain import deep_lift, rules
from pipeline.explain.explainers import deep_shap, path_of
from pipeline.nets.model import CNN, MLP, Shaped


def shap_reference(net: nn.Module, background: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import shap

    explainer = shap.DeepExplainer(net, torch.from_numpy(background))
    with rules.unpooling_allowed():  # a Trainer of an earlier test may have left deterministic mode on
        values = np.asarray(explainer.shap_values(torch.from_numpy(X), check_additivity=False))
    return values, np.asarray(explainer.expected_value)


def conv1d_bn() -> nn.Module:
    """A 1-d convolution with BatchNorm (eval mode, fitted statistics), ELU and average pooling."""
    net = nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1),
        nn.BatchNorm1d(4),
        nn.ELU(),
        nn.AvgPool1d(2),
        nn.Flatten(),
        nn.Linear(4 * 5, 8),
        nn.LeakyReLU(0.1),
        nn.Dropout(0.3),
        nn.Linear(8, 3),
    )
    net.train()
    with torch.no_grad():
        net(torch.randn(64, 2, 10) * 2 + 1)  # running statistics away from (0, 1)
    return Shaped(net, (2, 10))


def overlapping_pool() -> nn.Module:
    """Max pooling with overlapping windows (kernel 3, stride 2) and a border the windows miss."""
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2),
        nn.Conv2d(3, 4, 2, padding=1, stride=2),
        nn.Sigmoid(),
        nn.Flatten(),
        nn.LazyLinear(4),
    )
    with torch.no_grad():
        net(torch.zeros(1, 1, 10, 10))  # materialise the lazy layer
    return Shaped(net, (1, 10, 10))


NETS: dict[str, Callable[[], nn.Module]] = {
    "cnn max pool": lambda: Shaped(CNN((1, 8, 8), 5, channels=(4, 6)), (1, 8, 8)),
    "cnn avg pool, tanh": lambda: Shaped(
        CNN((1, 8, 8), 5, channels=(4,), pool="avg", activation="tanh"), (1, 8, 8)
    ),
    "lenet-like, 2 channels": lambda: Shaped(
        CNN(
            (2, 12, 12),
            4,
            channels=(6, 16),
            kernel_size=5,
            pool="avg",
            hidden_sizes=(20, 12),
            activation="tanh",
            dropout=0,
        ),
        (2, 12, 12),
    ),
    "cnn without pooling": lambda: Shaped(
        CNN((1, 6, 6), 3, channels=(3,), pool="none", activation="sigmoid"), (1, 6, 6)
    ),
    "conv1d, batchnorm": conv1d_bn,
    "overlapping max pool": overlapping_pool,
}


@pytest.mark.parametrize("name", list(NETS))
def test_matches_shap_deep_explainer_and_is_additive(name: str) -> None:
    torch.manual_seed(0)
    net = NETS[name]().eval()
    width = int(np.prod(net.input_shape))
    rng = np.random.default_rng(0)
    background = rng.normal(size=(12, width)).astype(np.float32)
    X = rng.normal(size=(7, width)).astype(np.float32)
    X[0] = background[3]  # a sample equal to a reference: the 1e-6 gradient fallback is used
    X[1, : width // 2] = background[0, : width // 2]
    values, base = deep_lift.deep_shap(net, background, X)
    expected, expected_base = shap_reference(net, background, X)
    assert values.shape == expected.shape == (7, width, values.shape[2])
    scale = np.abs(expected).max()
    assert scale > 1e-3  # the comparison is not between two arrays of zeros
    np.testing.assert_allclose(values, expected, atol=min(1e-4, 1e-3 * scale), rtol=0)
    np.testing.assert_allclose(base, expected_base, atol=1e-5, rtol=0)
    with torch.inference_mode():
        outputs = net(torch.from_numpy(X)).double().numpy()
    if name == "overlapping max pool":
        # shap's max-pooling rule is not exactly additive where windows overlap: its sums miss
        # the output by the same amount ours do (explain reports it as additivity_max_error).
        np.testing.assert_allclose(values.sum(axis=1), expected.sum(axis=1), atol=1e-4)
        assert np.abs(values.sum(axis=1) + base - outputs).max() > 1e-3
    else:
        np.testing.assert_allclose(values.sum(axis=1) + base, outputs, atol=1e-4)


def test_small_blocks_give_the_same_values() -> None:
    torch.manual_seed(1)
    net = NETS["cnn max pool"]().eval()
    rng = np.random.default_rng(1)
    background, X = rng.normal(size=(6, 64)).astype(np.float32), rng.normal(size=(9, 64)).astype(np.float32)
    whole, _ = deep_lift.deep_shap(net, background, X)
    blocked, _ = deep_lift.deep_shap(net, background, X, block_bytes=1)  # one sample per block
    np.testing.assert_allclose(whole, blocked, atol=1e-6)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.act, self.b = nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.act(self.a(x)) + x)  # the skip connection is not a chain


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 5), nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))  # an activation no hook sees


class Reused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.act, self.b = nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.act(self.a(self.act(x))))  # one ReLU module used twice


@pytest.mark.parametrize("cls", [Residual, Functional, Reused])
def test_networks_that_are_not_chains_go_to_shap(cls: type[nn.Module]) -> None:
    torch.manual_seed(2)
    net = cls().eval()
    rng = np.random.default_rng(2)
    background = rng.normal(size=(5, 6)).astype(np.float32)
    assert deep_lift.chain_of(net, torch.from_numpy(background)) is None
    assert path_of(deep_shap, net, background) == "shap.DeepExplainer"
    with pytest.raises(ValueError, match="use shap.DeepExplainer"):
        deep_lift.deep_shap(net, background, background)


def test_explain_picks_each_path_by_the_layers_it_finds() -> None:
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    mlp = MLP(64, 5, [8], "relu", 0.0).eval()
    cnn = NETS["cnn max pool"]().eval()
    background = rng.normal(size=(8, 64)).astype(np.float32)
    X = rng.normal(size=(4, 64)).astype(np.float32)
    assert path_of(deep_shap, mlp, background) == "closed form (pipeline.explain.fast_deep)"
    assert path_of(deep_shap, cnn, background) == "batched DeepLIFT (pipeline.explain.deep_lift)"
    values, base = deep_shap(cnn, background, X)
    expected, _ = shap_reference(cnn, background, X)
    assert base.shape == (4, 5)  # one base row per sample, as every explainer gives
    np.testing.assert_allclose(values, expected, atol=1e-4, rtol=0)


def test_chain_of_records_the_shapes_between_layers() -> None:
    net = NETS["cnn max pool"]().eval()
    steps = deep_lift.chain_of(net, torch.zeros(2, 64))
    assert steps is not None
    assert [type(s.module).__name__ for s in steps][:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert steps[0].in_shape == (1, 8, 8) and steps[0].out_shape == (4, 8, 8)
    assert steps[2].out_shape == (4, 4, 4)
    assert steps[-1].out_shape == (5,)


def test_runs_where_deterministic_algorithms_are_on() -> None:
    """A Trainer with deterministic=True switches torch's deterministic mode on for the process;
    max_unpool (the max-pooling rule) is flagged by it, and the mode is left as it was."""
    net = NETS["cnn max pool"]().eval()
    rng = np.random.default_rng(4)
    background, X = rng.normal(size=(4, 64)).astype(np.float32), rng.normal(size=(3, 64)).astype(np.float32)
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True)
    try:
        values, _ = deep_lift.deep_shap(net, background, X)
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    np.testing.assert_allclose(values, deep_lift.deep_shap(net, background, X)[0], atol=1e-7)
