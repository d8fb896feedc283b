from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline.errors import ConfigError, MissingInputError
from pipeline.nets import layers, model


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_mlp_shapes_and_layers(activation: str) -> None:
    net = model.MLP(64, 10, hidden_sizes=[32, 16], activation=activation, dropout=0.2)
    assert net(torch.zeros(5, 64)).shape == (5, 10)
    kinds = [type(m).__name__ for m in net.net]
    act = type(layers.ACTIVATIONS[activation]()).__name__
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
    arguments = {"in_features": 6, "n_classes": 2, "hidden_sizes": [5], "activation": "tanh", "dropout": 0.1}
    net = model.MLP(**arguments)
    model.save(net, tmp_path / "m.pt")  # glassnet's own networks know their arguments
    loaded = model.load(tmp_path / "m.pt")
    x = torch.randn(3, 6)
    net.eval()
    assert torch.equal(net(x), loaded(x))
    assert isinstance(loaded, model.Shaped) and loaded.net.arch == net.arch


def test_a_cnn_takes_images_and_is_seen_through_flat_rows(tmp_path: Path) -> None:
    arguments = {"input_shape": (1, 8, 8), "n_classes": 10, "channels": [4, 8], "hidden_sizes": [16]}
    net = model.CNN(**arguments).eval()
    images = torch.randn(5, 1, 8, 8)
    assert net(images).shape == (5, 10)
    kinds = [type(m).__name__ for m in net.modules() if not list(m.children())]
    assert kinds == [
        "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d",
        "Flatten", "Linear", "ReLU", "Dropout", "Linear",
    ]  # fmt: skip
    model.save(
        net, tmp_path / "cnn.pt", target="pipeline.nets.model.CNN", arguments=arguments, input_shape=(1, 8, 8)
    )
    loaded = model.load(tmp_path / "cnn.pt")
    assert torch.equal(loaded(images.reshape(5, 64)), net(images))  # flat rows in, same logits


def test_cnn_arguments_are_checked() -> None:
    with pytest.raises(ConfigError, match="model=cnn takes images"):
        model.CNN(input_shape=(30,), n_classes=2)
    with pytest.raises(ConfigError, match="pools the 8x8 images below one pixel"):
        model.CNN(input_shape=(1, 8, 8), n_classes=2, channels=[4, 4, 4, 4])
    with pytest.raises(ConfigError, match="'model.activation' = 'gelu' is not one of relu, tanh, sigmoid"):
        model.CNN(input_shape=(1, 8, 8), n_classes=2, activation="gelu")


def test_shape_arguments_are_passed_where_named() -> None:
    class Mine(nn.Module):
        def __init__(self, in_channels: int, num_classes: int, width: int = 8) -> None:
            super().__init__()

    assert model.shape_arguments(Mine, (1, 28, 28), 10) == {"in_channels": 1, "num_classes": 10}
    assert model.shape_arguments(model.MLP, (1, 8, 8), 10) == {"in_features": 64, "n_classes": 10}
    assert model.shape_arguments(model.CNN, (1, 8, 8), 3) == {"input_shape": (1, 8, 8), "n_classes": 3}


def test_load_missing_model_names_the_stage(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="'train' stage"):
        model.load(tmp_path / "nope.pt")
