"""The networks: the tutorial's multilayer perceptron, a small convolutional network, or any
``torch.nn.Module`` a user names by ``model._target_``. Plain torch (no Lightning), so evaluate
and explain load a network without importing Lightning.

Every layer is its own module (each activation a distinct module, no in-place ops, no
functional activations): SHAP's DeepExplainer needs that, and so do the forward hooks the
visualize stage walks the network with.

A network takes a batch shaped ``(batch, *input_shape)``: ``(channels, height, width)`` for
images (digits 1x8x8, MNIST 1x28x28), ``(features,)`` for tables. The prepared data stay flat
rows, so the stages that read them see the network through ``Shaped`` (flat rows in, logits
out), which reshapes each batch on the way in.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from torch import nn

from pipeline import io
from pipeline.errors import ConfigError, MissingInputError
from pipeline.nets.layers import ACTIVATIONS

# The CNN's pooling, by the name model.pool gives.
POOLS: dict[str, type[nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def _activation(name: Any, key: str = "model.activation") -> type[nn.Module]:
    name = getattr(name, "value", name)  # the config's enum or a plain name
    if name not in ACTIVATIONS:
        raise ConfigError(f"Config key '{key}' = {name!r} is not one of {', '.join(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


def dense(
    width: int, hidden_sizes: Sequence[int], n_classes: int, act: type[nn.Module], dropout: float
) -> list[nn.Module]:
    """[Linear -> act -> Dropout] per hidden size, then Linear(n_classes), from ``width`` inputs:
    the MLP's body and the CNN's head."""
    layers: list[nn.Module] = []
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), act()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, n_classes))
    return layers


class MLP(nn.Module):
    """in_features -> [Linear -> act -> Dropout] per hidden size -> Linear(n_classes), logits out.
    Takes flat rows or images (flattened first)."""

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        hidden_sizes: Sequence[int] = (128,),
        activation: str = "relu",
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        act = _activation(activation)
        activation = getattr(activation, "value", activation)
        self.arch: dict[str, Any] = {
            "in_features": int(in_features),
            "n_classes": int(n_classes),
            "hidden_sizes": [int(h) for h in hidden_sizes],
            "activation": str(activation),
            "dropout": float(dropout),
        }
        self.net = nn.Sequential(*dense(in_features, hidden_sizes, n_classes, act, dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # (B, in_features) or (B, C, H, W) -> (B, n_classes) logits


class CNN(nn.Module):
    """A small convolutional network: per entry of ``channels`` a block Conv2d(kernel_size,
    'same' padding) -> activation -> pooling (``pool`` 'max' or 'avg', size ``pool_size``;
    'none' for no pooling); then Flatten -> [Linear -> act -> Dropout] per ``hidden_sizes`` ->
    Linear(n_classes). Takes images as (channels, height, width)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 3,
        pool: str = "max",
        pool_size: int = 2,
        hidden_sizes: Sequence[int] = (64,),
        activation: str = "relu",
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(
                f"model=cnn takes images (channels, height, width), but the data's rows have shape "
                f"{tuple(input_shape)}: use it with an image dataset (data=digits, data=mnist) "
                "or use model=mlp."
            )
        if pool != "none" and pool not in POOLS:
            raise ConfigError(f"Config key 'model.pool' = {pool!r} is not one of max, avg, none.")
        act = _activation(activation)
        self.arch: dict[str, Any] = {
            "input_shape": [int(d) for d in input_shape],
            "n_classes": int(n_classes),
            "channels": [int(c) for c in channels],
            "kernel_size": int(kernel_size),
            "pool": pool,
            "pool_size": int(pool_size),
            "hidden_sizes": [int(h) for h in hidden_sizes],
            "activation": str(getattr(activation, "value", activation)),
            "dropout": float(dropout),
        }
        depth, height, width = (int(d) for d in input_shape)
        blocks: list[nn.Module] = []
        for out in channels:
            blocks += [nn.Conv2d(depth, out, kernel_size, padding="same"), act()]
            if pool != "none":
                if min(height, width) < pool_size:
                    raise ConfigError(
                        f"model.channels={list(channels)} pools the {input_shape[1]}x{input_shape[2]} "
                        f"images below one pixel (pool_size {pool_size} per block): use fewer blocks "
                        "or model.pool=none."
                    )
                blocks.append(POOLS[pool](pool_size))
                height, width = height // pool_size, width // pool_size
            depth = out
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Flatten(), *dense(depth * height * width, hidden_sizes, n_classes, act, dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, C, H, W) -> (B, n_classes) logits


class Shaped(nn.Module):
    """``net`` as the stages that read flat rows see it: (batch, features) in, each row reshaped
    to ``input_shape`` on the way in, logits out."""

    def __init__(self, net: nn.Module, input_shape: Sequence[int]) -> None:
        super().__init__()
        self.net = net
        self.input_shape = tuple(int(d) for d in input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], *self.input_shape))


def shape_arguments(cls: Any, input_shape: Sequence[int], n_classes: int) -> dict[str, Any]:
    """The data's shape and class count, for the constructor arguments of ``cls`` that name them
    (``arch.SHAPE_ARGUMENTS``: the train stage passes them, a config may not):
    ``input_shape`` (a tuple: (channels, height, width) or (features,)), ``in_features`` (the
    number of values in a row), ``in_channels`` (images' channels), ``n_classes`` or ``num_classes``."""
    names = inspect.signature(cls).parameters
    n_values = 1
    for d in input_shape:
        n_values *= int(d)
    offered: dict[str, Any] = {
        "input_shape": tuple(int(d) for d in input_shape),
        "in_features": n_values,
        "n_classes": int(n_classes),
        "num_classes": int(n_classes),
    }
    if len(input_shape) == 3:
        offered["in_channels"] = int(input_shape[0])
    return {key: value for key, value in offered.items() if key in names}


def n_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def describe(net: nn.Module) -> list[dict[str, Any]]:
    """One row per leaf module: index, type, output width, parameter count."""
    rows = []
    for i, layer in enumerate(net.modules()):
        if list(layer.children()):
            continue
        out = getattr(layer, "out_features", getattr(layer, "out_channels", ""))
        rows.append({"index": i, "layer": type(layer).__name__, "out": out, "params": n_parameters(layer)})
    return rows


def plain(value: Any) -> Any:
    """A constructor argument as plain data (tuples as lists, enums as names), for the model file."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return getattr(value, "value", value)


def save(
    net: nn.Module,
    path: str | Path,
    *,
    target: str | None = None,
    arguments: dict[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
) -> None:
    """The network's class (``target``, a dotted name), its constructor ``arguments``, the input
    shape and the weights; no pickled code, so loading can be safe. For glassnet's own networks
    the three default to what the network records (``arch``)."""
    if target is None or arguments is None or input_shape is None:
        arch = getattr(net, "arch", None)
        if arch is None:
            raise TypeError(f"save: give target, arguments and input_shape for a {type(net).__name__}")
        target = target or f"{type(net).__module__}.{type(net).__qualname__}"
        arguments = arguments if arguments is not None else arch
        input_shape = input_shape or arch.get("input_shape") or (arch["in_features"],)
    blob = {
        "target": target,
        "arguments": plain(arguments),
        "input_shape": [int(d) for d in input_shape],
        "state_dict": net.state_dict(),
    }
    with io.atomic_path(path) as tmp:
        torch.save(blob, tmp)


def build(target: str, arguments: dict[str, Any]) -> nn.Module:
    """``target(**arguments)``; the class is imported by its dotted name."""
    cls = get_class(target)
    shape_keys = {"input_shape"}
    kwargs = {k: tuple(v) if k in shape_keys and isinstance(v, list) else v for k, v in arguments.items()}
    net: nn.Module = cls(**kwargs)
    return net


def load(path: str | Path) -> Shaped:
    """The network saved by ``save`` (eval mode), seen through ``Shaped``; loaded with
    ``weights_only=True`` (no arbitrary unpickling). ``.net`` is the network itself."""
    p = Path(path)
    if not p.exists():
        raise MissingInputError(
            f"Model '{p}' does not exist: run the 'train' stage first "
            "(`dvc repro train` or `python -m pipeline train`)."
        )
    blob = torch.load(p, map_location="cpu", weights_only=True)
    net = build(blob["target"], blob["arguments"])
    net.load_state_dict(blob["state_dict"])
    return Shaped(net, blob["input_shape"]).eval()
