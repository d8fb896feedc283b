"""What the network's nonlinearities see and produce on data: captured with forward hooks on every
elementwise nonlinearity (``pipeline.nets.layers.ELEMENTWISE``: ReLU, GELU, SiLU, tanh, ...) while
the network runs, and summarised per layer (dead or saturated units, spread).

    layers, probs = activations.capture(net, lambda: task.predict(net, X))
    rows = activations.layer_stats(layers, margin=0.01, share=0.9)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from pipeline import stats
from pipeline.nets import layers as vocabulary

T = TypeVar("T")


@dataclass
class LayerActivations:
    """What one activation module saw and produced on the test rows."""

    label: str  # "hidden 1", ...
    name: str  # module name in the network ("net.1", "features.1")
    activation: str  # the module's type, lower case: "relu" | "gelu" | "tanh" | ...
    pre: np.ndarray  # (rows, units): the activation's input
    post: np.ndarray  # (rows, units): the activation's output
    # "units", or "channels" for a convolutional layer: a channel's value for a row is its mean
    # over the image's positions (its maximum after a rectifier, so a dead channel is one that
    # never fires)
    per: str = "units"


def nonlinearities(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The elementwise nonlinearities of ``net`` (its leaves of a type in layers.ELEMENTWISE), by name."""
    return [(name, m) for name, m in vocabulary.leaves(net) if isinstance(m, vocabulary.ELEMENTWISE)]


def capture(net: nn.Module, forward: Callable[[], T]) -> tuple[list[LayerActivations], T]:
    """Run ``forward`` (a pass of ``net`` over the rows, e.g. the task's ``predict``) with forward hooks
    on every elementwise nonlinearity of ``net``; what it returns, and per nonlinearity, in the order
    the pass reaches them, its inputs and outputs (per unit, or per channel for convolutional layers:
    see ``LayerActivations.per``)."""
    # name -> (kind, per, [pre blocks], [post blocks]), in the order the forward pass reaches them
    captured: dict[str, tuple[str, str, list[np.ndarray], list[np.ndarray]]] = {}

    def hook(name: str, mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        kind = type(mod).__name__.lower()
        pre, post = inputs[0], output
        per = "units"
        if post.dim() > 2:  # (rows, channels, *positions): one value per channel and row
            per = "channels"
            pre = pre.flatten(2).mean(dim=2)
            rectifier = stats.inactive_statistic(kind) == "dead"
            post = post.flatten(2).amax(dim=2) if rectifier else post.flatten(2).mean(dim=2)
        entry = captured.setdefault(name, (kind, per, [], []))
        entry[2].append(pre.detach().cpu().numpy().copy())
        entry[3].append(post.detach().cpu().numpy().copy())

    result = hooked(net, hook, forward)
    layers = [
        LayerActivations(f"hidden {i + 1}", name, kind, np.concatenate(pre), np.concatenate(post), per)
        for i, (name, (kind, per, pre, post)) in enumerate(captured.items())
    ]
    return layers, result


def hooked(net: nn.Module, hook: Callable[[str, nn.Module, Any, Any], None], forward: Callable[[], T]) -> T:
    """``forward()`` with ``hook(name, module, inputs, output)`` on every elementwise nonlinearity of
    ``net``; the hooks are removed afterwards, whatever happens."""
    handles = [
        module.register_forward_hook(lambda mod, inputs, output, name=name: hook(name, mod, inputs, output))
        for name, module in nonlinearities(net)
    ]
    try:
        return forward()
    finally:
        for handle in handles:
            handle.remove()


def activation_curve(module: nn.Module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The activation function ``module`` computes and its derivative at ``x`` (autograd)."""
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = module(t.clone())  # a clone: an in-place module may not write into a leaf that needs grad
    (grad,) = torch.autograd.grad(y.sum(), t)
    return y.detach().numpy(), grad.numpy()


def activation_curves(
    net: nn.Module, layers: list[LayerActivations], x: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per kind of activation the layers use (sorted by name): its curve and derivative at ``x``, by
    the network's own first module of that kind (so a leaky ReLU's slope is the network's)."""
    modules = dict(net.named_modules())
    first: dict[str, nn.Module] = {}
    for layer in layers:
        first.setdefault(layer.activation, modules[layer.name])
    return {kind: activation_curve(first[kind], x) for kind in sorted(first)}


def layer_stats(layers: list[LayerActivations], margin: float, share: float) -> list[dict[str, Any]]:
    """Per hidden layer: width, activation, dead or saturated fraction and the activations' spread."""
    return [
        {
            "label": layer.label,
            "name": layer.name,
            "activation": layer.activation,
            "units": int(layer.post.shape[1]),
            "statistic": stats.inactive_statistic(layer.activation),
            "fraction": stats.inactive_fraction(layer.post, layer.activation, margin, share),
            "mean": float(layer.post.mean()),
            "std": float(layer.post.std()),
        }
        for layer in layers
    ]
