"""DeepSHAP for MLPs in closed form: the numbers of ``shap.DeepExplainer``, without its loops.

``shap.DeepExplainer`` explains a sample ``x`` against each background row ``r`` by one forward
pass over the pairs and one backward pass per class, with the gradient of every elementwise
nonlinearity replaced by DeepLIFT's rescale multiplier

    m = (f(z_x) - f(z_r)) / (z_x - z_r)        (f'(z_r) where |z_x - z_r| < 1e-6)

(``nonlinear_1d`` in shap/explainers/_deep/deep_pytorch.py; the multiplier is read at the
reference half of the pair batch, hence f'(z_r)), then averages ``multiplier x (x - r)`` over the
background. Linear layers keep their gradient and Dropout/Identity/Flatten pass it through.

For a stack of Linear and elementwise layers, the multiplier of class ``c`` with respect to the
input is a product of matrices, so all classes, all background rows and a block of samples go
through as one batched matrix product:

    V <- W_L                            # (C, H_L): the last Linear, the same for every pair
    V <- (V * m_k) @ W_k                # per hidden layer, m_k of shape (k, B, 1, H_k)
    phi[i, :, c] = mean_b V[i, b, c, :] * (x_i - r_b)

With one hidden layer (the default model) the pair dimension factorizes:
V[i, b, c, f] = sum_h W2[c, h] m[i, b, h] W1[h, f], so the background mean is taken before the
class dimension is formed, and the cost per sample is B*H*F + C*H*F instead of B*C*H*F.

Elementwise and pass-through layers are those of ``pipeline.nets.layers``. Any other network
(convolutions, pooling, branches, ...) goes to pipeline.explain.deep_lift or shap itself
(``pipeline.explain.explainers.deep_shap`` picks).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from pipeline.explain import rules
from pipeline.nets.layers import ELEMENTWISE, PASSTHROUGH

# f'(z) in closed form for the activations of glassnet's presets (pipeline.nets.layers.ACTIVATIONS);
# any other elementwise layer's by autograd, whose first use in a process costs about a second:
# more than a small MLP's whole explanation.
CLOSED_FORM: dict[type[nn.Module], Callable[[torch.Tensor], torch.Tensor]] = {
    nn.ReLU: lambda z: (z > 0).to(z.dtype),
    nn.Tanh: lambda z: 1 - torch.tanh(z) ** 2,
    nn.Sigmoid: lambda z: torch.sigmoid(z) * (1 - torch.sigmoid(z)),
}


def layers_of(net: nn.Module) -> list[nn.Module] | None:
    """The network as a flat list of supported layers (Linear, elementwise, pass-through),
    or None when it holds anything else (then deep_lift or shap explains it)."""
    flat = [m for m in net.modules() if not list(m.children())]
    if not flat or not all(isinstance(m, (nn.Linear, *ELEMENTWISE, *PASSTHROUGH)) for m in flat):
        return None
    # Only a plain chain is supported: the modules must be applied in registration order, which
    # holds for nn.Sequential (and pipeline.nets.model.MLP, whose forward is one Sequential).
    sequentials = [m for m in net.modules() if isinstance(m, nn.Sequential)]
    if len(sequentials) != 1 or list(sequentials[0].children()) != flat:
        return None
    linear = [m for m in flat if not isinstance(m, PASSTHROUGH)]
    # Linear, act, Linear, act, ..., Linear: what the batched product below assumes.
    if len(linear) % 2 == 0 or any(
        isinstance(layer, nn.Linear) != (i % 2 == 0) for i, layer in enumerate(linear)
    ):
        return None
    return linear


def _derivative(layer: nn.Module, z: torch.Tensor) -> torch.Tensor:
    closed = CLOSED_FORM.get(type(layer))
    return closed(z) if closed is not None else rules.derivative(layer, z)


def _multiplier(layer: nn.Module, zx: torch.Tensor, zr: torch.Tensor, dr: torch.Tensor) -> torch.Tensor:
    """Rescale multipliers of an elementwise layer for every (sample, reference) pair.

    zx: (k, 1, H) pre-activations of the samples, zr: (1, B, H) of the references and dr: (1, B, H)
    the layer's derivative there -> (k, B, H).
    """
    delta = zx - zr
    ratio = (layer(zx) - layer(zr)) / torch.where(delta == 0, torch.ones_like(delta), delta)
    return torch.where(delta.abs() < rules.EPS, dr.expand_as(delta), ratio)


def _pre_activations(layers: list[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """Input of each elementwise layer, in order."""
    found = []
    h = x
    for layer in layers:
        if isinstance(layer, ELEMENTWISE):
            found.append(h)
        h = layer(h)
    return found


def _block(
    layers: list[nn.Module], x: torch.Tensor, r: torch.Tensor, zr: list[torch.Tensor], dr: list[torch.Tensor]
) -> torch.Tensor:
    """SHAP values (k, F, C) of the samples ``x`` (k, F) against the references ``r`` (B, F), whose
    pre-activations are ``zr`` and the activations' derivatives there ``dr``."""
    zx = _pre_activations(layers, x)
    acts = [layer for layer in layers if isinstance(layer, ELEMENTWISE)]
    mults = [
        _multiplier(a, zx_k[:, None, :], zr_k[None], dr_k[None])
        for a, zx_k, zr_k, dr_k in zip(acts, zx, zr, dr, strict=True)
    ]
    linears = [layer for layer in layers if isinstance(layer, nn.Linear)]
    if len(mults) == 1:
        # V[i, b, c, f] = sum_h W2[c, h] m[i, b, h] W1[h, f]; mean over b first:
        # phi[i, f, c] = sum_h W2[c, h] W1[h, f] (x_i[f] mbar[i, h] - mean_b m[i, b, h] r_b[f])
        w1, w2 = linears[0].weight, linears[1].weight  # (H, F), (C, H)
        m = mults[0]  # (k, B, H)
        mean_m = m.mean(dim=1)  # (k, H)
        mr = torch.einsum("kbh,bf->khf", m, r) / r.shape[0]  # (k, H, F)
        inner = (x[:, None, :] * mean_m[:, :, None] - mr) * w1[None]  # (k, H, F)
        return torch.einsum("khf,ch->kfc", inner, w2)
    # General depth: carry V (k, B, C, width) from the output back to the input.
    v = linears[-1].weight[None, None]  # (1, 1, C, H_L)
    for m, linear in zip(reversed(mults), reversed(linears[:-1]), strict=True):
        v = (v * m[:, :, None, :]) @ linear.weight  # (k, B, C, H_{l-1})
    diff = x[:, None, :] - r[None, :, :]  # (k, B, F)
    return (v * diff[:, :, None, :]).mean(dim=1).transpose(1, 2)  # (k, F, C)


def deep_shap(
    net: nn.Module, background: np.ndarray, X: np.ndarray, *, block_bytes: int = 256 << 20
) -> tuple[np.ndarray, np.ndarray]:
    """SHAP values (n, features, classes) of the logits and the base value per class, equal to
    ``shap.DeepExplainer(net, background).shap_values(X)`` (up to float32 rounding)."""
    layers = layers_of(net)
    if layers is None:
        raise ValueError(
            "fast_deep handles MLPs of Linear, elementwise and pass-through layers only; use "
            "shap.DeepExplainer for other networks (pipeline.explain.explainers.deep_shap picks for you)."
        )
    net.eval()
    # no_grad, not inference_mode: autograd may take the derivatives at the references.
    with torch.no_grad():
        r = torch.from_numpy(np.ascontiguousarray(background, dtype=np.float32))
        x_all = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        base = net(r).mean(dim=0).double().numpy()
        zr = _pre_activations(layers, r)
        acts = [layer for layer in layers if isinstance(layer, ELEMENTWISE)]
        dr = [_derivative(a, z) for a, z in zip(acts, zr, strict=True)]
        n, features = x_all.shape
        classes = base.shape[0]
        widest = max([features, classes, *(z.shape[1] for z in zr)])
        one_layer = len(zr) == 1
        # Rows per block so the largest intermediate stays near block_bytes.
        per_row = 4 * (widest * zr[0].shape[1] if one_layer else len(r) * classes * widest)
        step = max(1, min(n, block_bytes // max(per_row, 1)))
        values = np.empty((n, features, classes), dtype=np.float64)
        for start in range(0, n, step):
            values[start : start + step] = (
                _block(layers, x_all[start : start + step], r, zr, dr).double().numpy()
            )
    return values, base
