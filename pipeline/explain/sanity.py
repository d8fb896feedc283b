"""The weight-randomisation sanity check of an explanation (Adebayo et al., "Sanity Checks for
Saliency Maps", NeurIPS 2018).

An explanation that describes the network must change when the network's weights are replaced by
random ones. The check re-initialises the weighted layers, explains the same samples again with
the same explainer, and measures how similar the new attributions are to the original ones:

- **cascading**: from the output layer back towards the input, one more layer each step, until
  every layer is random;
- **independent**: each layer alone, the others as trained.

Similarity, per sample, of the attributions for the class the trained network predicted: the
Spearman rank correlation of |attribution| over the features, and for images the SSIM of the
|attribution| maps each scaled to [0, 1] (pipeline.explain.similarity). An explanation whose maps stay
similar (median rank correlation above ``threshold``, 0.5 by default) when every layer is random
fails the check: it shows something of the input, not of what the network learned. The signed
rank correlation is measured too: DeepLIFT/SHAP-style attributions multiply by (x - reference),
which the weights do not touch, so their magnitudes can keep the input's pattern while their signs
decorrelate; the verdict says which of the two failed.

Pure: a network, an explain function and arrays in, a ``SanityResult`` out. The explain function is
the stage's own explainer with its options bound, so the check tests the explanation the report
shows. Randomising uses each layer's own ``reset_parameters`` (the initialisation it was built
with), seeded per layer, on a copy: the trained network is left as it was.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from pipeline.explain import similarity
from pipeline.explain.trust import for_class

ExplainFn = Callable[[nn.Module], np.ndarray]  # network -> attributions (n, features, classes)


@dataclass
class SanityResult:
    """Similarities to the original attributions, one row per step and one column per sample.

    ``layers`` are the weighted layers in the order the data meets them (input first). Cascading
    step k (k = 1..L) has randomised the last k of them; independent row i, ``layers[i]`` alone.
    """

    layers: list[str]
    cascade_rank: np.ndarray  # (L, n)
    single_rank: np.ndarray  # (L, n)
    cascade_signed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (L, n), with signs
    cascade_ssim: np.ndarray | None = None  # (L, n), images only
    single_ssim: np.ndarray | None = None
    maps: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))  # (L + 1, m, features)
    threshold: float = 0.5

    @property
    def rank_all_random(self) -> float:
        """Median rank correlation once every layer is random (the check's number)."""
        return float(np.nanmedian(self.cascade_rank[-1])) if len(self.layers) else float("nan")

    @property
    def signed_all_random(self) -> float:
        """The same with the signs kept: whether the direction of each feature's push changed."""
        return float(np.nanmedian(self.cascade_signed[-1])) if len(self.layers) else float("nan")

    @property
    def signs_passed(self) -> bool:
        return bool(self.signed_all_random <= self.threshold)

    @property
    def ssim_all_random(self) -> float:
        if self.cascade_ssim is None or not len(self.layers):
            return float("nan")
        return float(np.nanmedian(self.cascade_ssim[-1]))

    @property
    def passed(self) -> bool:
        """The attributions changed once the weights were random: median rank correlation at
        most ``threshold``. (SSIM is reported beside it, not judged: two maps that are both
        empty over an image's blank border share that structure whatever the weights.)"""
        return bool(self.rank_all_random <= self.threshold)

    def metrics(self) -> dict[str, float]:
        """Scalars for DVC and MLflow: the all-random similarity, and per layer the cascading
        (``after``: this layer and all above it random) and independent (``only``) medians."""
        out: dict[str, float] = {
            "sanity_rank_all_random": self.rank_all_random,
            "sanity_passed": float(self.passed),
            "sanity_signed_rank_all_random": self.signed_all_random,
        }
        if self.cascade_ssim is not None:
            out["sanity_ssim_all_random"] = self.ssim_all_random
        # Cascading step k randomised layers[L-k:], so the layer it added is layers[L-k].
        for k, name in enumerate(reversed(self.layers), start=1):
            out[f"sanity_rank_after_{name}"] = float(np.nanmedian(self.cascade_rank[k - 1]))
        for i, name in enumerate(self.layers):
            out[f"sanity_rank_only_{name}"] = float(np.nanmedian(self.single_rank[i]))
        return out

    def rows(self) -> list[dict[str, float | int | str]]:
        """The cascading curve as rows for `dvc plots` (step 0: the trained network)."""
        out: list[dict[str, float | int | str]] = [
            {
                "layers_randomised": 0,
                "layer": "none",
                "rank_median": 1.0,
                "signed_rank_median": 1.0,
                "ssim_median": 1.0,
            }
        ]
        for k, name in enumerate(reversed(self.layers), start=1):
            out.append(
                {
                    "layers_randomised": k,
                    "layer": name,
                    "rank_median": float(np.nanmedian(self.cascade_rank[k - 1])),
                    "signed_rank_median": float(np.nanmedian(self.cascade_signed[k - 1])),
                    "ssim_median": (
                        float(np.nanmedian(self.cascade_ssim[k - 1])) if self.cascade_ssim is not None else ""
                    ),
                }
            )
        return out


def weighted_layers(net: nn.Module, sample: torch.Tensor) -> list[str]:
    """Names of the modules that hold their own weights, in the order one forward pass of
    ``sample`` calls them (a module called twice counts once, where it is first met)."""
    owners = {
        module: name
        for name, module in net.named_modules()
        if any(True for _ in module.parameters(recurse=False))
    }
    order: list[str] = []

    def record(module: nn.Module, args: object, output: object) -> None:
        name = owners[module]
        if name not in order:
            order.append(name)

    handles = [module.register_forward_hook(record) for module in owners]
    try:
        with torch.no_grad():
            net(sample)
    finally:
        for handle in handles:
            handle.remove()
    return order


def randomised(net: nn.Module, names: list[str], seed: int) -> nn.Module:
    """A copy of ``net`` with the modules ``names`` re-initialised: each by its own
    ``reset_parameters`` (or, lacking one, its weights drawn from a normal distribution of their
    trained spread), seeded by ``seed`` and its name so a layer gets the same new weights in
    every step it is random. The global random state is left as it was."""
    copied = copy.deepcopy(net)
    for name in names:
        module = copied.get_submodule(name)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed + sum(name.encode()) * 7919)
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
            else:
                for p in module.parameters(recurse=False):
                    p.normal_(0.0, float(p.std()) if p.numel() > 1 else 1.0)
    return copied.eval()


def check(
    net: nn.Module,
    explain_fn: ExplainFn,
    original: np.ndarray,
    target: np.ndarray,
    sample: torch.Tensor,
    *,
    image_shape: tuple[int, int] | None,
    seed: int,
    n_maps: int = 4,
    threshold: float = 0.5,
) -> SanityResult:
    """Run the cascading and the independent randomisation.

    ``original``: the trained network's attributions (n, features, classes) of the samples that
    ``explain_fn`` explains; ``target``: the class compared per sample (the trained network's
    prediction); ``sample``: a few input rows to find the layer order; ``image_shape``: (H, W) of
    image inputs (SSIM is measured and ``maps`` kept), None for tables."""
    layers = weighted_layers(net, sample)
    base = for_class(original, target)
    # A wrapper around one network (pipeline.nets.model.Shaped) names layers as the network does.
    children = [name for name, _ in net.named_children()]
    wrapper = (
        f"{children[0]}."
        if len(children) == 1 and all(n.startswith(f"{children[0]}.") for n in layers)
        else ""
    )

    def compare(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        new = for_class(values, target)
        rank = similarity.rank_agreement(np.abs(base), np.abs(new))
        signed.append(similarity.rank_agreement(base, new))
        if image_shape is None:
            return rank, None, new
        shaped = (len(new), *image_shape)
        ssim = similarity.ssim(
            similarity.unit_maps(base.reshape(shaped)), similarity.unit_maps(new.reshape(shaped))
        )
        return rank, ssim, new

    n = len(base)
    signed: list[np.ndarray] = []  # per explain call, in call order: the cascade comes first
    cascade_rank, single_rank = np.full((len(layers), n), np.nan), np.full((len(layers), n), np.nan)
    cascade_ssim = np.full((len(layers), n), np.nan) if image_shape is not None else None
    single_ssim = np.full((len(layers), n), np.nan) if image_shape is not None else None
    maps = [base[:n_maps]]
    for k in range(1, len(layers) + 1):
        rank, ssim, new = compare(explain_fn(randomised(net, layers[len(layers) - k :], seed)))
        cascade_rank[k - 1] = rank
        if cascade_ssim is not None and ssim is not None:
            cascade_ssim[k - 1] = ssim
        maps.append(new[:n_maps])
    for i, name in enumerate(layers):
        rank, ssim, _ = compare(explain_fn(randomised(net, [name], seed)))
        single_rank[i] = rank
        if single_ssim is not None and ssim is not None:
            single_ssim[i] = ssim
    return SanityResult(
        layers=[name.removeprefix(wrapper) for name in layers],
        cascade_rank=cascade_rank,
        single_rank=single_rank,
        cascade_signed=np.array(signed[: len(layers)]).reshape(len(layers), n),
        cascade_ssim=cascade_ssim,
        single_ssim=single_ssim,
        maps=np.stack(maps) if image_shape is not None else np.zeros((0, 0, 0)),
        threshold=threshold,
    )


def verdict(result: SanityResult) -> str:
    """The check in plain words, for the report's at-a-glance panel."""
    if not result.layers:
        return "The randomisation check found no weighted layer to randomise."
    rho = result.rank_all_random
    ssim = "" if result.cascade_ssim is None else f", SSIM {result.ssim_all_random:.2f}"
    if result.passed:
        return (
            f"Sanity check passed: with every weight random the attributions no longer resemble the "
            f"originals (rank correlation of |attribution| {rho:.2f}{ssim}), so they depend on what the "
            "network learned."
        )
    if result.signs_passed:
        # DeepLIFT-style attributions are a multiplier times (x - reference): the second factor does
        # not depend on the weights, so their sizes follow the input (Adebayo et al.'s finding for
        # gradient x input), while their signs come from the multipliers, i.e. the network.
        return (
            f"Sanity check failed for the sizes of the attributions: with every weight random, which "
            f"features get large attributions barely changes (rank correlation of |attribution| {rho:.2f}"
            f"{ssim}, above {result.threshold:g}), because they grow with how far a feature is from the "
            "background whatever the weights. Their signs do change (signed rank correlation "
            f"{result.signed_all_random:.2f}): read which way a feature pushes as the network's, not how "
            "large it looks."
        )
    return (
        f"Sanity check failed: with every weight random the attributions still resemble the originals "
        f"(rank correlation of |attribution| {rho:.2f}{ssim}, signed {result.signed_all_random:.2f}, above "
        f"{result.threshold:g}), so they show the input more than what the network learned: do not read "
        "them as the network's reasons."
    )
