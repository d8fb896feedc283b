"""DeepSHAP for any chain of layers (convolutional nets included): shap.DeepExplainer's rules, batched.

``shap.DeepExplainer`` explains one sample and one class at a time: it tiles the sample against the
B background rows, runs a forward pass over the 2B rows of pairs and a backward pass in which every
nonlinear layer's gradient is replaced by a DeepLIFT multiplier (``deeplift_grad`` in
shap/explainers/_deep/deep_pytorch.py), and averages ``multiplier x (x - r)`` over the background.
For n samples and C classes that is n*C forward and backward passes over 2B rows.

Here the forward pass is run once on the samples and once on the background (a pair's forward
values are only its two rows' own values), and the backward pass carries every (sample,
background row, class) triple at once, in blocks, through the same rules:

- affine layers (Linear, convolutions, average pooling, BatchNorm in eval mode) keep their
  gradient: their vector-Jacobian product, which does not depend on the point;
- Dropout, Identity, Flatten and the reshapes between layers pass the gradient through;
- elementwise nonlinearities (``pipeline.nets.layers.ELEMENTWISE``: ReLU, GELU, Tanh, ...) multiply
  it by the rescale ratio ``(f(z_x) - f(z_r)) / (z_x - z_r)``, or by ``f'(z_r)`` where
  ``|z_x - z_r| < 1e-6`` (shap reads the gradient of the reference half of its pair batch);
- max pooling routes ``g * (max(y_x, y_r) - y_r)`` to the sample's argmax and
  ``g * (y_x - max(y_x, y_r))`` to the reference's, divided by ``z_x - z_r`` (0 where that is
  below 1e-7): shap's ``maxpool`` rule. Where windows tile the input the result is exactly
  additive; where they overlap shap's rule is not exactly additive, and neither is this copy
  of it (tests/explain/test_deep_lift.py): the explain stage's additivity error shows by how much.

The rules themselves, and the lazily multiplied gradient they act on, are in ``rules``.

That is about C*n*B backward rows and n+B forward rows, against shap's 2*C*n*B of each, and no
Python loop per sample (``python -m benchmarks.explain --model cnn`` measures it). The network must
be a chain: each leaf module applied once, in an order found by one traced forward pass and
checked by replaying the chain against the network's own output (``chain_of``); a network with a
branch, a functional activation or any other layer is not a chain, and shap.DeepExplainer
explains it instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipeline.explain import rules
from pipeline.nets import layers, predict

# What a chain may hold: layers with a rule here (max pooling: those rules.MAXPOOL can unpool).
SUPPORTED: tuple[type[nn.Module], ...] = (
    *layers.ELEMENTWISE,
    *layers.AFFINE,
    *layers.PASSTHROUGH,
    *rules.MAXPOOL,
)


Pullbacks = dict[tuple[int, int], Callable[[torch.Tensor], torch.Tensor]]


@dataclass(frozen=True)
class Step:
    """One leaf module of the chain and the shape (without the batch) its input has."""

    module: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]


def _run(steps: list[Step], x: torch.Tensor) -> torch.Tensor:
    h = x
    for step in steps:
        h = step.module(h.reshape(h.shape[0], *step.in_shape))
    return h


def chain_of(net: nn.Module, sample: torch.Tensor, tol: float = 1e-5) -> list[Step] | None:
    """The network as a chain of leaf modules applied one after another (reshapes between them
    allowed), or None when it is not one or holds a layer without a rule here.

    Found by one forward pass of ``sample`` (a few rows) with hooks on the leaves, then replayed:
    the chain must give the network's own output, which rules out branches, skip connections and
    functional operations between the modules."""
    leaves = [m for m in net.modules() if not list(m.children())]
    if not leaves or not all(isinstance(m, SUPPORTED) for m in leaves):
        return None
    calls: list[Step] = []

    def record(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if len(args) == 1 and isinstance(output, torch.Tensor):
            calls.append(Step(module, tuple(args[0].shape[1:]), tuple(output.shape[1:])))

    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        with torch.no_grad():
            expected = net(sample)
    finally:
        for handle in handles:
            handle.remove()
    if len(calls) != len(leaves) or len({id(step.module) for step in calls}) != len(leaves):
        return None  # a module called twice, not at all, or with several inputs
    if not isinstance(expected, torch.Tensor) or expected.ndim != 2:
        return None
    with torch.no_grad():
        try:
            replayed = _run(calls, sample)
        except RuntimeError:
            return None
    if replayed.shape != expected.shape or not torch.allclose(replayed, expected, atol=tol, rtol=tol):
        return None
    return calls


CONV_TRANSPOSE: dict[type[nn.Module], Callable[..., torch.Tensor]] = {
    nn.Conv1d: F.conv_transpose1d,
    nn.Conv2d: F.conv_transpose2d,
    nn.Conv3d: F.conv_transpose3d,
}


def _conv_padding(module: Any) -> tuple[int, ...] | None:
    """The convolution's zero padding per side, or None where it is not the same on both sides
    (padding='same' with an even kernel) or not zeros."""
    if getattr(module, "padding_mode", "zeros") != "zeros":
        return None
    if module.padding == "valid":
        return (0,) * len(module.kernel_size)
    if module.padding == "same":
        totals = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size, strict=True)]
        return None if any(t % 2 for t in totals) else tuple(t // 2 for t in totals)
    return tuple(module.padding)


def _pullback(
    module: Any, rows: int, in_shape: tuple[int, ...], out_shape: tuple[int, ...], like: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The vector-Jacobian product of an affine module for ``rows`` rows. A convolution's is the
    transposed convolution (in channels-last order for 2-d, several times faster on CPU for the
    one-channel first layer than autograd's backward); any other affine module's is the same at
    every point, so autograd's is taken once at zero."""
    padding = _conv_padding(module) if type(module) in CONV_TRANSPOSE else None
    if padding is not None:
        transpose = CONV_TRANSPOSE[type(module)]
        stride, dilation, kernel = module.stride, module.dilation, module.kernel_size
        extra = tuple(
            i - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
            for i, o, s, p, d, k in zip(
                in_shape[1:], out_shape[1:], stride, padding, dilation, kernel, strict=True
            )
        )
        layout = torch.channels_last if len(in_shape) == 3 else torch.contiguous_format

        def conv_pull(g: torch.Tensor) -> torch.Tensor:
            return transpose(
                g.contiguous(memory_format=layout),
                module.weight,
                None,
                stride,
                padding,
                extra,
                module.groups,
                dilation,
            )

        return conv_pull
    with torch.enable_grad():
        vjp = torch.func.vjp(module, torch.zeros((rows, *in_shape), dtype=like.dtype, device=like.device))[1]
    return lambda g: vjp(g)[0]


def _forward(
    steps: list[Step],
    x: torch.Tensor,
    saved: list[rules.Saved | None] | None,
    r: list[rules.Saved | None] | None,
) -> torch.Tensor:
    """Forward pass of ``x`` through the chain; with ``saved`` given, records each nonlinear
    layer's tensors (``r``: the background's, already recorded, paired with these)."""
    h = x
    for step in steps:
        z = h.reshape(h.shape[0], *step.in_shape)
        h = step.module(z)
        if saved is None or not isinstance(step.module, (*layers.ELEMENTWISE, *rules.MAXPOOL)):
            continue
        if r is None:  # the background itself
            entry = rules.Saved(zx=z, zr=z, yx=h, yr=h)
            if isinstance(step.module, layers.ELEMENTWISE):
                entry.dr = rules.derivative(step.module, z)
            saved.append(entry)
        else:
            ref = r[len(saved)]
            assert ref is not None
            saved.append(rules.Saved(zx=z, zr=ref.zr, yx=h, yr=ref.yr, dr=ref.dr, ir=ref.ir))
        if isinstance(step.module, tuple(rules.MAXPOOL)):
            pool, _ = rules.MAXPOOL[type(step.module)]
            m = step.module
            _, idx = pool(z, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, True)
            last = saved[-1]
            assert last is not None
            if r is None:
                last.ir = idx
            last.ix = idx
    return h


def _block(
    steps: list[Step],
    x: torch.Tensor,
    r: torch.Tensor,
    ref: list[rules.Saved | None],
    classes: int,
    pullbacks: Pullbacks,
) -> torch.Tensor:
    """SHAP values (k, F, C) of the samples ``x`` (k, F) against the background ``r`` (B, F)."""
    saved: list[rules.Saved | None] = []
    _forward(steps, x, saved, ref)
    k, b = x.shape[0], r.shape[0]
    rows = k * b * classes
    # d(output c) / d(output): the identity, the same for every pair.
    grad = rules.Grad(
        torch.eye(classes, dtype=x.dtype, device=x.device)[None, None].expand(k, b, classes, classes),
        (classes,),
    )
    nonlinear = iter(reversed(saved))
    for step in reversed(steps):
        module = step.module
        grad = grad.reshaped(step.out_shape)
        if isinstance(module, layers.ELEMENTWISE):
            entry = next(nonlinear)
            assert entry is not None
            grad.multiply(rules.rescale(entry))
        elif isinstance(module, tuple(rules.MAXPOOL)):
            entry = next(nonlinear)
            assert entry is not None
            if rules.tiles(module, step.in_shape, step.out_shape) and grad.factors is None:
                # Each input position lies in one window: the routed weights are class-free.
                routed, delta = rules.pool_weights(entry, module, k, b, None)
                weight = rules.safe_ratio(routed, delta, rules.POOL_EPS, torch.zeros_like(routed))[:, :, None]
                factors = tuple(i // o for o, i in zip(step.out_shape[1:], step.in_shape[1:], strict=True))
                grad = rules.Grad(grad.full(), step.in_shape, factors, weight)
            else:
                # Overlapping windows: shap's computation as it is, with the class axis in the rows.
                g = grad.full()
                k_, b_, c_ = g.shape[:3]
                routed_x, delta = rules.pool_weights(entry, module, k_, b_, c_)
                del routed_x
                _, unpool = rules.MAXPOOL[type(module)]
                assert entry.ix is not None and entry.ir is not None
                yx, yr = rules.pairs(entry.yx, entry.yr)
                cross = torch.maximum(yx, yr)
                flat = (rows, *step.out_shape)
                spread = [
                    unpool(
                        (g * part).reshape(flat),
                        idx.expand(k, b, classes, *step.out_shape).reshape(flat),
                        module.kernel_size,
                        module.stride,
                        module.padding,
                        [rows, *step.in_shape],
                    )
                    for part, idx in (
                        (cross - yr, entry.ix[:, None, None]),
                        (yx - cross, entry.ir[None, :, None]),
                    )
                ]
                routed = (spread[0] + spread[1]).reshape(k, b, classes, *step.in_shape)
                d = delta[:, :, None]
                grad = rules.Grad(
                    rules.safe_ratio(routed, d, rules.POOL_EPS, torch.zeros_like(routed)), step.in_shape
                )
        elif isinstance(module, layers.AFFINE):
            key = (id(module), rows)
            if key not in pullbacks:
                pullbacks[key] = _pullback(module, rows, step.in_shape, step.out_shape, x)
            wants_last = isinstance(module, nn.Conv2d)
            g = grad.full(channels_last=wants_last).reshape(rows, *step.out_shape)
            grad = rules.Grad(pullbacks[key](g).reshape(k, b, classes, *step.in_shape), step.in_shape)
        grad = grad.reshaped(step.in_shape)
    diff = (x[:, None, :] - r[None, :, :])[:, :, None, :]  # (k, B, 1, F)
    return (grad.full().reshape(k, b, classes, -1) * diff).mean(dim=1).transpose(1, 2)


def deep_shap(
    net: nn.Module, background: np.ndarray, X: np.ndarray, *, block_bytes: int = 256 << 20
) -> tuple[np.ndarray, np.ndarray]:
    """SHAP values (n, features, classes) of the logits and the base value per class, equal to
    ``shap.DeepExplainer(net, background).shap_values(X)`` up to float32 rounding. ``net`` takes
    flat rows (reshaping them itself, as pipeline.nets.model.Shaped does); the work runs on the device
    its parameters are on."""
    net.eval()
    device = predict.device_of(net)
    r = torch.from_numpy(np.ascontiguousarray(background, dtype=np.float32)).to(device)
    x_all = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(device)
    steps = chain_of(net, r[: min(len(r), 4)])
    if steps is None:
        raise ValueError(
            "pipeline.explain.deep_lift explains chains of Linear/convolution/pooling/BatchNorm/elementwise "
            "layers only; use shap.DeepExplainer for this network "
            "(pipeline.explain.explainers.deep_shap picks)."
        )
    with torch.no_grad(), rules.unpooling_allowed():
        ref: list[rules.Saved | None] = []
        outputs = _forward(steps, r, ref, None)
        base = outputs.mean(dim=0).double().cpu().numpy()
        n, features = x_all.shape
        classes = base.shape[0]
        widest = max(int(np.prod(s.in_shape)) for s in steps)
        # Samples per block so one (k, B, C, widest) tensor stays near block_bytes.
        per_sample = 4 * len(r) * classes * max(widest, features)
        step = max(1, min(n, block_bytes // max(per_sample, 1)))
        values = np.empty((n, features, classes), dtype=np.float64)
        pullbacks: Pullbacks = {}  # one per layer and block size: an affine map's is the same everywhere
        for start in range(0, n, step):
            block = _block(steps, x_all[start : start + step], r, ref, classes, pullbacks)
            values[start : start + step] = block.double().cpu().numpy()
    return values, base
