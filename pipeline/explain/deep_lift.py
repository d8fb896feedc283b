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
- elementwise nonlinearities (ReLU, LeakyReLU, ELU, SELU, GELU, Sigmoid, Tanh, Softplus) multiply
  it by the rescale ratio ``(f(z_x) - f(z_r)) / (z_x - z_r)``, or by ``f'(z_r)`` where
  ``|z_x - z_r| < 1e-6`` (shap reads the gradient of the reference half of its pair batch);
- max pooling routes ``g * (max(y_x, y_r) - y_r)`` to the sample's argmax and
  ``g * (y_x - max(y_x, y_r))`` to the reference's, divided by ``z_x - z_r`` (0 where that is
  below 1e-7): shap's ``maxpool`` rule. Where windows tile the input the result is exactly
  additive; where they overlap shap's rule is not exactly additive, and neither is this copy
  of it (tests/test_deep_lift.py): the explain stage's additivity error shows by how much.

That is about C*n*B backward rows and n+B forward rows, against shap's 2*C*n*B of each, and no
Python loop per sample (``python -m benchmarks.explain --model cnn`` measures it). The network must
be a chain: each leaf module applied once, in an order found by one traced forward pass and
checked by replaying the chain against the network's own output (``chain_of``); a network with a
branch, a functional activation or any other layer is not a chain, and shap.DeepExplainer
explains it instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.GELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
)
AFFINE: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
)
PASSTHROUGH: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Identity,
    nn.Flatten,
)
MAXPOOL: dict[
    type[nn.Module], tuple[Callable[..., tuple[torch.Tensor, torch.Tensor]], Callable[..., torch.Tensor]]
] = {
    nn.MaxPool1d: (F.max_pool1d_with_indices, F.max_unpool1d),
    nn.MaxPool2d: (F.max_pool2d_with_indices, F.max_unpool2d),
    nn.MaxPool3d: (F.max_pool3d_with_indices, F.max_unpool3d),
}
EPS = 1e-6  # shap's nonlinear_1d: below it the plain gradient replaces the ratio
POOL_EPS = 1e-7  # shap's maxpool: below it the multiplier is 0


@contextmanager
def unpooling_allowed() -> Iterator[None]:
    """Let max_unpool run where deterministic algorithms are on (a Trainer with deterministic=True
    ran in this process): torch flags it as nondeterministic, which for the scatter of shap's
    max-pooling rule (one write per position, or the same value written twice) changes no result.
    Deterministic mode only warns meanwhile, and that warning is silenced."""
    strict = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if strict:
            torch.use_deterministic_algorithms(True, warn_only=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"max_unpooling\w* does not have a deterministic")
            yield
    finally:
        if strict:
            torch.use_deterministic_algorithms(True, warn_only=warn_only)


@dataclass(frozen=True)
class Step:
    """One leaf module of the chain and the shape (without the batch) its input has."""

    module: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]


def _kind_supported(module: nn.Module) -> bool:
    return isinstance(module, (*ELEMENTWISE, *AFFINE, *PASSTHROUGH, *MAXPOOL))


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
    if not leaves or not all(_kind_supported(m) for m in leaves):
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


def _derivative(module: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """f'(z) of an elementwise module, by autograd."""
    with torch.enable_grad():
        vjp = torch.func.vjp(module, z)[1]
        return vjp(torch.ones_like(z))[0]


@dataclass
class _Saved:
    """What the backward rules read of one layer: its input and output on the samples and on the
    background, and for max pooling the argmax indices of each."""

    zx: torch.Tensor
    zr: torch.Tensor
    yx: torch.Tensor
    yr: torch.Tensor
    dr: torch.Tensor | None = None  # f'(z_r) for elementwise layers
    ix: torch.Tensor | None = None
    ir: torch.Tensor | None = None


def _forward(
    steps: list[Step], x: torch.Tensor, saved: list[_Saved | None] | None, r: list[_Saved | None] | None
) -> torch.Tensor:
    """Forward pass of ``x`` through the chain; with ``saved`` given, records each nonlinear
    layer's tensors (``r``: the background's, already recorded, paired with these)."""
    h = x
    for step in steps:
        z = h.reshape(h.shape[0], *step.in_shape)
        h = step.module(z)
        if saved is None or not isinstance(step.module, (*ELEMENTWISE, *MAXPOOL)):
            continue
        if r is None:  # the background itself
            entry = _Saved(zx=z, zr=z, yx=h, yr=h)
            if isinstance(step.module, ELEMENTWISE):
                entry.dr = _derivative(step.module, z)
            saved.append(entry)
        else:
            ref = r[len(saved)]
            assert ref is not None
            saved.append(_Saved(zx=z, zr=ref.zr, yx=h, yr=ref.yr, dr=ref.dr, ir=ref.ir))
        if isinstance(step.module, tuple(MAXPOOL)):
            pool, _ = MAXPOOL[type(step.module)]
            m = step.module
            _, idx = pool(z, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, True)
            last = saved[-1]
            assert last is not None
            if r is None:
                last.ir = idx
            last.ix = idx
    return h


def _pairs(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(k, *s) and (B, *s) as broadcastable (k, 1, 1, *s) and (1, B, 1, *s): the class axis is 2."""
    return a[:, None, None], b[None, :, None]


def _safe_ratio(num: torch.Tensor, delta: torch.Tensor, eps: float, fallback: torch.Tensor) -> torch.Tensor:
    """num / delta, or ``fallback`` where |delta| < eps."""
    ratio = num / torch.where(delta == 0, torch.ones_like(delta), delta)
    return torch.where(delta.abs() < eps, fallback, ratio)


def _rescale(s: _Saved) -> torch.Tensor:
    """Rescale multipliers (k, B, 1, *shape) of an elementwise layer for every pair."""
    zx, zr = _pairs(s.zx, s.zr)
    yx, yr = _pairs(s.yx, s.yr)
    assert s.dr is not None
    return _safe_ratio(yx - yr, zx - zr, EPS, s.dr[None, :, None])


def _tiles(module: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> bool:
    """Whether the pooling windows tile the input exactly (kernel = stride, no padding or
    dilation, no uncovered border): then each input position lies in exactly one window."""
    dims = len(in_shape) - 1

    def per_dim(v: object) -> tuple[int, ...]:
        return tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * dims  # type: ignore[call-overload]

    kernel, stride = per_dim(module.kernel_size), per_dim(module.stride or module.kernel_size)
    return (
        kernel == stride
        and all(p == 0 for p in per_dim(module.padding))
        and all(d == 1 for d in per_dim(module.dilation))
        and all(o * k == i for o, k, i in zip(out_shape[1:], kernel, in_shape[1:], strict=True))
    )


def _pool_weights(
    s: _Saved, module: nn.Module, k: int, b: int, classes: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """shap's maxpool rule before the division: ``g (max(y_x, y_r) - y_r)`` routed to the sample's
    argmax and ``g (y_x - max(y_x, y_r))`` to the reference's, here with g = 1 (class-free
    weights, ``classes`` None) or broadcast over the class axis; and z_x - z_r."""
    _, unpool = MAXPOOL[type(module)]
    assert s.ix is not None and s.ir is not None
    out_shape, in_shape = tuple(s.yx.shape[1:]), tuple(s.zx.shape[1:])
    yx, yr = s.yx[:, None], s.yr[None]  # (k, 1, *out), (1, B, *out)
    cross = torch.maximum(yx, yr)
    lead = (k, b) if classes is None else (k, b, classes)
    rows = int(np.prod(lead))

    def spread(values: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        flat = unpool(
            values.expand(*lead, *out_shape).reshape(rows, *out_shape),
            idx.expand(*lead, *out_shape).reshape(rows, *out_shape),
            module.kernel_size,
            module.stride,
            module.padding,
            [rows, *in_shape],
        )
        return flat.reshape(*lead, *in_shape)

    extra = () if classes is None else (None,)
    ix = s.ix[(slice(None), None, *extra)]
    ir = s.ir[(None, slice(None), *extra)]
    up_x = (cross - yr)[(slice(None), slice(None), *extra)]
    up_r = (yx - cross)[(slice(None), slice(None), *extra)]
    routed = spread(up_x, ix) + spread(up_r, ir)
    return routed, s.zx[:, None] - s.zr[None]


@dataclass
class _Grad:
    """The gradient being carried back, for every (sample, background row, class):
    ``G = upsample(g, factors) * pending``.

    ``g`` (k, B, C, ...) is the class-dependent part, kept at the resolution of the last max
    pooling passed; ``factors`` upsample it by window repetition (None: already at ``shape``);
    ``pending`` (k, B, 1, *shape) collects the class-free multipliers (max-pooling weights,
    rescale ratios) met since. Applying these lazily writes the largest tensors, those between
    the first convolutions, once instead of once per layer."""

    g: torch.Tensor
    shape: tuple[int, ...]
    factors: tuple[int, ...] | None = None
    pending: torch.Tensor | None = None

    def lazy(self) -> bool:
        return self.factors is not None or self.pending is not None

    def full(self, channels_last: bool = False) -> torch.Tensor:
        """G as (k, B, C, *shape); ``channels_last`` lays the channel axis innermost in memory
        (what the 2-d transposed convolution reads fastest) without an extra copy."""
        k, b, c = self.g.shape[:3]
        if not self.lazy():
            return self.g.reshape(k, b, c, *self.shape)
        pending = (
            self.pending
            if self.pending is not None
            else torch.ones((1,) * (3 + len(self.shape)), dtype=self.g.dtype, device=self.g.device)
        )
        if self.factors is None:
            g_view, p_view = self.g.reshape(k, b, c, *self.shape), pending
            inner: tuple[int, ...] = self.shape
        else:
            ch, spatial = self.shape[0], self.shape[1:]
            g_dims, p_dims = [ch], [ch]
            for i, f in zip(spatial, self.factors, strict=True):
                g_dims += [i // f, 1]
                p_dims += [i // f, f]
            g_view = self.g.reshape(k, b, c, *g_dims)
            p_view = pending.expand(k, b, 1, *self.shape).reshape(k, b, 1, *p_dims)
            inner = (ch, *(d for i, f in zip(spatial, self.factors, strict=True) for d in (i // f, f)))
        if channels_last and len(self.shape) > 1:
            out = torch.empty((k, b, c, *inner[1:], inner[0]), dtype=self.g.dtype, device=self.g.device)
            torch.mul(g_view.movedim(3, -1), p_view.movedim(3, -1), out=out)
            out_view = out.reshape(k, b, c, *self.shape[1:], self.shape[0]).movedim(-1, 3)
            return out_view
        return (g_view * p_view).reshape(k, b, c, *self.shape)

    def multiply(self, m: torch.Tensor) -> None:
        self.pending = m if self.pending is None else self.pending * m

    def reshaped(self, shape: tuple[int, ...]) -> _Grad:
        if shape == self.shape:
            return self
        return _Grad(self.full().reshape(*self.g.shape[:3], *shape), shape)


Pullbacks = dict[tuple[int, int], Callable[[torch.Tensor], torch.Tensor]]


def _block(
    steps: list[Step],
    x: torch.Tensor,
    r: torch.Tensor,
    ref: list[_Saved | None],
    classes: int,
    pullbacks: Pullbacks,
) -> torch.Tensor:
    """SHAP values (k, F, C) of the samples ``x`` (k, F) against the background ``r`` (B, F)."""
    saved: list[_Saved | None] = []
    _forward(steps, x, saved, ref)
    k, b = x.shape[0], r.shape[0]
    rows = k * b * classes
    # d(output c) / d(output): the identity, the same for every pair.
    grad = _Grad(
        torch.eye(classes, dtype=x.dtype, device=x.device)[None, None].expand(k, b, classes, classes),
        (classes,),
    )
    nonlinear = iter(reversed(saved))
    for step in reversed(steps):
        module = step.module
        grad = grad.reshaped(step.out_shape)
        if isinstance(module, ELEMENTWISE):
            entry = next(nonlinear)
            assert entry is not None
            grad.multiply(_rescale(entry))
        elif isinstance(module, tuple(MAXPOOL)):
            entry = next(nonlinear)
            assert entry is not None
            if _tiles(module, step.in_shape, step.out_shape) and grad.factors is None:
                # Each input position lies in one window: the routed weights are class-free.
                routed, delta = _pool_weights(entry, module, k, b, None)
                weight = _safe_ratio(routed, delta, POOL_EPS, torch.zeros_like(routed))[:, :, None]
                factors = tuple(i // o for o, i in zip(step.out_shape[1:], step.in_shape[1:], strict=True))
                grad = _Grad(grad.full(), step.in_shape, factors, weight)
            else:
                # Overlapping windows: shap's computation as it is, with the class axis in the rows.
                g = grad.full()
                k_, b_, c_ = g.shape[:3]
                routed_x, delta = _pool_weights(entry, module, k_, b_, c_)
                del routed_x
                _, unpool = MAXPOOL[type(module)]
                assert entry.ix is not None and entry.ir is not None
                yx, yr = _pairs(entry.yx, entry.yr)
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
                grad = _Grad(_safe_ratio(routed, d, POOL_EPS, torch.zeros_like(routed)), step.in_shape)
        elif isinstance(module, AFFINE):
            key = (id(module), rows)
            if key not in pullbacks:
                pullbacks[key] = _pullback(module, rows, step.in_shape, step.out_shape, x)
            wants_last = isinstance(module, nn.Conv2d)
            g = grad.full(channels_last=wants_last).reshape(rows, *step.out_shape)
            grad = _Grad(pullbacks[key](g).reshape(k, b, classes, *step.in_shape), step.in_shape)
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
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    r = torch.from_numpy(np.ascontiguousarray(background, dtype=np.float32)).to(device)
    x_all = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(device)
    steps = chain_of(net, r[: min(len(r), 4)])
    if steps is None:
        raise ValueError(
            "pipeline.explain.deep_lift explains chains of Linear/convolution/pooling/BatchNorm/elementwise "
            "layers only; use shap.DeepExplainer for this network (pipeline.stages.explain.deep_shap picks)."
        )
    with torch.no_grad(), unpooling_allowed():
        ref: list[_Saved | None] = []
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
