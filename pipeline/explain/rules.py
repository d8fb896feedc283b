"""shap.DeepExplainer's backward rules, batched over (sample, background row, class): what
pipeline.explain.deep_lift carries through a chain of layers, and pipeline.explain.fast_deep through
an MLP in closed form (``derivative``, ``EPS``).

- elementwise nonlinearities multiply the gradient by the rescale ratio
  ``(f(z_x) - f(z_r)) / (z_x - z_r)``, or by ``f'(z_r)`` where ``|z_x - z_r| < EPS`` (``rescale``);
- max pooling routes ``g * (max(y_x, y_r) - y_r)`` to the sample's argmax and
  ``g * (y_x - max(y_x, y_r))`` to the reference's, divided by ``z_x - z_r`` (0 below ``POOL_EPS``):
  shap's ``maxpool`` rule (``pool_weights``);
- ``Grad`` is the gradient being carried back, with class-free multipliers applied lazily.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

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


def derivative(module: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """f'(z) of an elementwise module, by autograd (plain autograd: torch.func's first call costs
    seconds, which a small MLP's whole explanation does not)."""
    with torch.enable_grad():
        leaf = z.detach().requires_grad_(True)
        out = module(leaf)
        return torch.autograd.grad(out, leaf, torch.ones_like(out))[0].detach()


@dataclass
class Saved:
    """What the backward rules read of one layer: its input and output on the samples and on the
    background, and for max pooling the argmax indices of each."""

    zx: torch.Tensor
    zr: torch.Tensor
    yx: torch.Tensor
    yr: torch.Tensor
    dr: torch.Tensor | None = None  # f'(z_r) for elementwise layers
    ix: torch.Tensor | None = None
    ir: torch.Tensor | None = None


def pairs(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(k, *s) and (B, *s) as broadcastable (k, 1, 1, *s) and (1, B, 1, *s): the class axis is 2."""
    return a[:, None, None], b[None, :, None]


def safe_ratio(num: torch.Tensor, delta: torch.Tensor, eps: float, fallback: torch.Tensor) -> torch.Tensor:
    """num / delta, or ``fallback`` where |delta| < eps."""
    ratio = num / torch.where(delta == 0, torch.ones_like(delta), delta)
    return torch.where(delta.abs() < eps, fallback, ratio)


def rescale(s: Saved) -> torch.Tensor:
    """Rescale multipliers (k, B, 1, *shape) of an elementwise layer for every pair."""
    zx, zr = pairs(s.zx, s.zr)
    yx, yr = pairs(s.yx, s.yr)
    assert s.dr is not None
    return safe_ratio(yx - yr, zx - zr, EPS, s.dr[None, :, None])


def tiles(module: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> bool:
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


def pool_weights(
    s: Saved, module: nn.Module, k: int, b: int, classes: int | None
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
class Grad:
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

    def reshaped(self, shape: tuple[int, ...]) -> Grad:
        if shape == self.shape:
            return self
        return Grad(self.full().reshape(*self.g.shape[:3], *shape), shape)
