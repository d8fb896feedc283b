"""The network as visualize draws it: its layers in the order a forward pass runs them (with their
output shapes), and the weight arrays of its weighted layers. Layer types come from the one layer
vocabulary, ``pipeline.nets.layers``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from pipeline.nets import layers as vocabulary
from pipeline.nets import model, predict

if TYPE_CHECKING:
    from pipeline.task import Task


def kind(layer: nn.Module) -> str:
    """The block a layer is drawn as in the architecture diagram."""
    if isinstance(layer, nn.Linear):
        return "linear"
    if isinstance(layer, vocabulary.CONVOLUTIONS):
        return "conv"
    if isinstance(layer, vocabulary.POOLING):
        return "pool"
    if isinstance(layer, vocabulary.DROPOUTS):
        return "dropout"
    if isinstance(layer, nn.Flatten):
        return "flatten"
    if isinstance(layer, vocabulary.ELEMENTWISE):
        return "activation"
    return "layer"


def layer_specs(net: model.Shaped, task: Task) -> list[dict[str, Any]]:
    """One entry per leaf module of the network in the order a forward pass runs them, with the
    shape of its output for one row (one forward pass with hooks), for the diagram and the table.
    The last entry is the output, as the task reads it (``task.output_spec``): softmax's class
    probabilities, or a regression's single predicted value."""
    inner = net.net
    seen: list[tuple[str, nn.Module, tuple[int, ...]]] = []

    def hook(mod: nn.Module, _inputs: Any, output: Any, name: str) -> None:
        if isinstance(output, torch.Tensor):
            seen.append((name, mod, tuple(int(d) for d in output.shape[1:])))

    handles = [
        module.register_forward_hook(lambda mod, inputs, output, name=name: hook(mod, inputs, output, name))
        for name, module in vocabulary.leaves(inner)
    ]
    was_training = inner.training
    try:
        out = predict.outputs(net, np.zeros((1, int(np.prod(net.input_shape)))))
    finally:
        inner.train(was_training)
        for handle in handles:
            handle.remove()
    shape = list(net.input_shape)
    specs: list[dict[str, Any]] = [
        {"kind": "input", "name": "input", "width": int(np.prod(shape)), "shape": shape, "params": 0}
    ]
    for name, layer, out_shape in seen:
        entry: dict[str, Any] = {
            "name": name,
            "kind": kind(layer),
            "type": type(layer).__name__,
            "shape": list(out_shape),
            "width": int(np.prod(out_shape)),
            "params": model.n_parameters(layer),
        }
        if isinstance(layer, nn.Linear):
            entry.update(width=layer.out_features, fan_in=layer.in_features)
        elif entry["kind"] == "conv":
            entry.update(
                kernel=list(getattr(layer, "kernel_size", [])), in_channels=getattr(layer, "in_channels", 0)
            )
        elif entry["kind"] == "dropout":
            entry.update(p=float(getattr(layer, "p", 0.0)))
        elif entry["kind"] == "activation":
            entry.update(function=type(layer).__name__.lower())
        specs.append(entry)
    specs.append(task.output_spec(int(out.shape[1])))
    return specs


def weight_arrays(net: model.Shaped) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, weight (out, in...), bias (out,)) of each weighted layer (layers.WEIGHTED: Linear and
    convolutions), input side first (a convolution's weight flattened per output channel)."""
    found = []
    for name, layer in vocabulary.leaves(net.net):
        if isinstance(layer, vocabulary.WEIGHTED):
            weight = layer.get_parameter("weight").detach().cpu().numpy()
            bias = getattr(layer, "bias", None)
            bias = bias.detach().cpu().numpy() if bias is not None else np.zeros(weight.shape[0])
            found.append((name, weight.reshape(weight.shape[0], -1), bias))
    return found


def first_units(net: model.Shaped, n_features: int) -> np.ndarray | None:
    """The weights (units, features) of the first layer when it is a Linear layer over every
    input feature (an MLP's), else None (a convolution weighs a neighbourhood, not the image)."""
    for _, layer in vocabulary.leaves(net.net):
        if isinstance(layer, vocabulary.WEIGHTED):
            if isinstance(layer, nn.Linear) and layer.in_features == n_features:
                return np.asarray(layer.weight.detach().cpu().numpy())
            return None
    return None


def conv2d_layers(net: model.Shaped) -> list[tuple[str, nn.Conv2d]]:
    """The network's 2-D convolutions, input side first."""
    return [(name, m) for name, m in vocabulary.leaves(net.net) if isinstance(m, nn.Conv2d)]
