from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline import model
from pipeline.errors import MissingInputError


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_mlp_shapes_and_layers(activation: str) -> None:
    net = model.MLP(64, 10, hidden_sizes=[32, 16], activation=activation, dropout=0.2)
    assert net(torch.zeros(5, 64)).shape == (5, 10)
    kinds = [type(m).__name__ for m in net.net]
    act = type(model.ACTIVATIONS[activation]()).__name__
    assert kinds == ["Linear", act, "Dropout", "Linear", act, "Dropout", "Linear"]
    # 64*32+32 + 32*16+16 + 16*10+10
    assert model.n_parameters(net) == 2080 + 528 + 170


def test_each_activation_is_its_own_module() -> None:
    # DeepExplainer attaches hooks per module: one module used twice breaks it.
    net = model.MLP(8, 3, hidden_sizes=[4, 4, 4])
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 3 and len({id(m) for m in relus}) == 3


def test_no_dropout_layer_when_rate_is_zero() -> None:
    net = model.MLP(8, 3, hidden_sizes=[4], dropout=0.0)
    assert not any(isinstance(m, nn.Dropout) for m in net.modules())


def test_save_and_safe_load_roundtrip(tmp_path: Path) -> None:
    net = model.MLP(6, 2, hidden_sizes=[5], activation="tanh", dropout=0.1)
    model.save(net, tmp_path / "m.pt")
    loaded = model.load(tmp_path / "m.pt")
    x = torch.randn(3, 6)
    net.eval()
    assert torch.equal(net(x), loaded(x))
    assert loaded.arch == net.arch


def test_load_missing_model_names_the_stage(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="'train' stage"):
        model.load(tmp_path / "nope.pt")
