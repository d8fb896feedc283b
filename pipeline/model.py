"""The network: a multilayer perceptron built from config. Plain torch (no Lightning),
so evaluate and explain load it without importing Lightning.

Each hidden layer is Linear -> activation -> Dropout, each activation its own
module: SHAP's DeepExplainer needs a distinct module per use and no in-place ops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.errors import MissingInputError

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class MLP(nn.Module):
    """in_features -> [Linear -> act -> Dropout] per hidden size -> Linear(n_classes), logits out."""

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        hidden_sizes: list[int] | tuple[int, ...] = (128,),
        activation: str = "relu",
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        activation = getattr(activation, "value", activation)  # the config's enum or a plain name
        self.arch: dict[str, Any] = {
            "in_features": int(in_features),
            "n_classes": int(n_classes),
            "hidden_sizes": [int(h) for h in hidden_sizes],
            "activation": str(activation),
            "dropout": float(dropout),
        }
        layers: list[nn.Module] = []
        width = in_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, in_features) -> (B, n_classes) logits


def n_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def describe(net: nn.Module) -> list[dict[str, Any]]:
    """One row per layer: index, type, output width, parameter count."""
    rows = []
    for i, layer in enumerate(net.modules()):
        if isinstance(layer, nn.Sequential | MLP):
            continue
        out = getattr(layer, "out_features", "")
        rows.append({"index": i, "layer": type(layer).__name__, "out": out, "params": n_parameters(layer)})
    return rows


def save(net: MLP, path: str | Path) -> None:
    """Architecture and weights only (no pickled code), so loading can be safe."""
    from pipeline import io

    with io.atomic_path(path) as tmp:
        torch.save({"arch": net.arch, "state_dict": net.state_dict()}, tmp)


def load(path: str | Path) -> MLP:
    """Load a model saved by ``save`` with ``weights_only=True`` (no arbitrary unpickling)."""
    p = Path(path)
    if not p.exists():
        raise MissingInputError(
            f"Model '{p}' does not exist: run the 'train' stage first "
            "(`dvc repro train` or `python -m pipeline.train`)."
        )
    blob = torch.load(p, map_location="cpu", weights_only=True)
    net = MLP(**blob["arch"])
    net.load_state_dict(blob["state_dict"])
    return net.eval()
