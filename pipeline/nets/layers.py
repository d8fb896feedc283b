"""The layer vocabulary every part of glassnet shares: which module types are elementwise
nonlinearities, weighted, affine, pooling or pass-through. explain (what DeepLIFT propagates
through), visualize (whose activations it captures, which layers it draws), training (whose
weights and gradients it records) and the presets (which activations a config may name) all ask
here, so a network one part understands is one every part understands.
"""

from __future__ import annotations

from torch import nn

# Elementwise nonlinearities: one output per input, y = f(x); DeepLIFT's rescale rule applies,
# and visualize captures their inputs and outputs as a layer's activations.
ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
)
# The activations a preset network's config names (model.activation), by name.
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
# Layers with a weight matrix or kernel: drawn, and their weights and gradients recorded by training.
WEIGHTED: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
CONVOLUTIONS: tuple[type[nn.Module], ...] = WEIGHTED[1:]
AVERAGE_POOLS: tuple[type[nn.Module], ...] = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
MAX_POOLS: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
POOLING = AVERAGE_POOLS + MAX_POOLS
# Normalisation in eval mode: a fixed affine map per channel.
BATCH_NORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# Linear maps of their input at inference (DeepLIFT's multipliers are their own weights).
AFFINE: tuple[type[nn.Module], ...] = WEIGHTED + AVERAGE_POOLS + BATCH_NORMS
# No effect at inference, or only a change of shape.
DROPOUTS: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)
PASSTHROUGH: tuple[type[nn.Module], ...] = (*DROPOUTS, nn.Identity, nn.Flatten)


def leaves(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The network's modules that hold no other modules, by qualified name, in registration order."""
    return [(name, m) for name, m in net.named_modules() if name and not list(m.children())]
