"""Stage 4: explain the trained model's test predictions with SHAP, and measure how far to trust it.

    python -m pipeline explain                          # DeepExplainer (conf/explain/deep.yaml)
    python -m pipeline explain explain=kernel explain.options.nsamples=1000

Attributions of the network's logits for ``explain.n_samples`` test rows against
a background of ``explain.n_background`` train rows, from the explainer named by
``explain.explainer`` (one function per name in ``EXPLAINERS``). Every explainer
returns the same (n, features, classes) array plus base values, so the checks
below apply to each:

- additivity: attributions + base value vs the model's output;
- faithfulness: accuracy as each sample's most important features (by |SHAP| for
  the predicted class) are replaced by the background mean, against the same
  removal in random order; the area between the two curves is one number;
- agreement with a second method, Captum's Integrated Gradients: per-sample
  Spearman rank correlation of the two attributions for the predicted class.

For regression (``task`` regression in the prepared summary) the network has one output, the
prediction in the target's units: the attributions are (n, features, 1), additivity is against the
prediction, faithfulness is the RMSE of the prediction growing as the top features are removed
(``faithfulness_rmse_*``; ``faithfulness_area`` is that area over the sd of the explained targets),
and the surrogate is a regression tree whose fidelity is R² to the network's predictions.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline import artifacts, io, layout, plots, progress, task
from pipeline.config import Config, SanityConfig, SurrogateConfig, TrustConfig
from pipeline.errors import ConfigError
from pipeline.explain import deep_lift, fast_deep, sanity, similarity, surrogate
from pipeline.tracking import records, runs

log = logging.getLogger(__name__)

Predict = Callable[[np.ndarray], np.ndarray]
# (net, background (m, F), X (n, F), **options) -> (values (n, F, C), base (n, C))
ExplainFn = Callable[..., tuple[np.ndarray, np.ndarray]]


def sample_rows(n_rows: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct row indices in increasing order."""
    return np.sort(rng.choice(n_rows, size=n, replace=False))


def logits_fn(net: nn.Module, batch_size: int = 8192) -> Predict:
    """The network as a numpy function (m, F) -> float64 logits (m, C), for model-agnostic
    explainers and the removal curves; batched, without autograd."""
    net.eval()

    def predict(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        with torch.inference_mode():
            parts = [net(torch.from_numpy(X[i : i + batch_size])) for i in range(0, len(X), batch_size)]
        return torch.cat(parts).double().numpy() if parts else np.zeros((0, 0))

    return predict


def _per_sample(base: np.ndarray, n: int) -> np.ndarray:
    """Base values as (n, classes) whatever shape the explainer gave them."""
    base = np.atleast_2d(np.asarray(base, dtype=np.float64))  # (classes,) -> (1, classes)
    return np.broadcast_to(base, (n, base.shape[-1])).copy()


def _as_nfc(raw: Any) -> np.ndarray:
    """(n, features, classes) float64: shap >= 0.45 returns one array, older releases a list per class;
    for a model with a single output (a regression) shap drops the last axis, put back here."""
    values = (np.stack(raw, axis=-1) if isinstance(raw, list) else np.asarray(raw)).astype(np.float64)
    return values[:, :, None] if values.ndim == 2 else values


def _require_torch(net: Any, name: str) -> None:
    if not isinstance(net, torch.nn.Module):
        raise ConfigError(
            f"explain.explainer={name} needs a PyTorch model (it backpropagates through it); got "
            f"{type(net).__name__}. Use a model-agnostic explainer: explain=permutation or explain=kernel."
        )


# --- explainers: EXPLAINERS maps each `explain.explainer` name to one of these ----------------


def _chain(net: nn.Module, background: np.ndarray) -> list[deep_lift.Step] | None:
    """The network as a chain pipeline.explain.deep_lift can explain, or None."""
    if not isinstance(net, nn.Module) or len(background) == 0:
        return None
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    net.eval()
    sample = torch.from_numpy(np.ascontiguousarray(background[:4], dtype=np.float32)).to(device)
    return deep_lift.chain_of(net, sample)


def deep_shap(net: nn.Module, background: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeepExplainer's attributions (DeepLIFT rescale with a background distribution; exactly additive).

    Three paths give the same numbers (to 1e-4 and better; tests/test_deep_lift.py and
    tests/test_fast_deep.py compare each with shap.DeepExplainer): MLPs of Linear/ReLU/Tanh/
    Sigmoid/Dropout layers in closed form (pipeline.explain.fast_deep, ~100x faster); any other chain of
    layers, convolutional nets included, through pipeline.explain.deep_lift's batched rules (~5x faster);
    a network with branches or functional operations through shap.DeepExplainer itself.
    """
    if fast_deep.layers_of(net) is not None:
        values, base = fast_deep.deep_shap(net, background, X)
    elif _chain(net, background) is not None:
        values, base = deep_lift.deep_shap(net, background, X)
    else:
        return shap_deep(net, background, X)
    return values, _per_sample(base, len(X))


# What computes each explainer's values, as the report names it.
PATHS = {
    "gradient": "shap.GradientExplainer",
    "permutation": "shap.PermutationExplainer",
    "partition": "shap.PartitionExplainer",
    "kernel": "shap.KernelExplainer",
}


def explainer_path(name: str, net: nn.Module, rows: np.ndarray) -> str:
    """What computes explainer ``name``'s values for ``net`` (``deep_shap``'s choice for deep,
    found by tracing ``rows``, a few input rows)."""
    if name != "deep":
        return PATHS[name]
    if fast_deep.layers_of(net) is not None:
        return "closed form (pipeline.explain.fast_deep)"
    if _chain(net, rows) is not None:
        return "batched DeepLIFT (pipeline.explain.deep_lift)"
    return "shap.DeepExplainer"


# Leaf modules shap.DeepExplainer has a rule for (its PyTorch op handlers; layers it does not know
# it passes through with only a warning).
DEEP_LAYERS = frozenset(
    {
        "Linear",
        "Conv1d",
        "Conv2d",
        "Conv3d",
        "ConvTranspose1d",
        "ConvTranspose2d",
        "ConvTranspose3d",
        "AvgPool1d",
        "AvgPool2d",
        "AvgPool3d",
        "MaxPool1d",
        "MaxPool2d",
        "MaxPool3d",
        "AdaptiveAvgPool1d",
        "AdaptiveAvgPool2d",
        "AdaptiveAvgPool3d",
        "BatchNorm1d",
        "BatchNorm2d",
        "BatchNorm3d",
        "Dropout",
        "Dropout2d",
        "Dropout3d",
        "Flatten",
        "Identity",
        "ReLU",
        "ELU",
        "Sigmoid",
        "Tanh",
        "Softplus",
        "Softmax",
        "LeakyReLU",
    }
)


def shap_deep(net: nn.Module, background: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """shap.DeepExplainer called the plain way (the reference pipeline.explain.fast_deep matches)."""
    import shap

    _require_torch(net, "deep")
    # shap treats a layer it does not know as pass-through (only a warning), which silently breaks
    # the attributions; refuse any layer outside the set shap's DeepExplainer propagates through.
    unknown = sorted({type(m).__name__ for m in net.modules() if not list(m.children())} - DEEP_LAYERS)
    if unknown:
        raise ConfigError(
            f"explain.explainer=deep cannot propagate through layer(s) {', '.join(unknown)}; "
            "use explain=gradient (any differentiable model) or explain=permutation."
        )
    net.eval()
    explainer = shap.DeepExplainer(net, torch.from_numpy(background))
    # shap's rule for max pooling calls max_unpool2d, which torch flags as nondeterministic.
    with deep_lift.unpooling_allowed():
        values = _as_nfc(explainer.shap_values(torch.from_numpy(X), check_additivity=False))
    return values, _per_sample(np.asarray(explainer.expected_value), len(X))


def gradient_shap(
    net: nn.Module,
    background: np.ndarray,
    X: np.ndarray,
    *,
    nsamples: int = 200,
    batch_size: int = 50,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """GradientExplainer (expected gradients): additive only in expectation, so its additivity
    error shrinks with ``nsamples`` but is never zero. Base value: the mean background logit."""
    import shap

    _require_torch(net, "gradient")
    net.eval()
    explainer = shap.GradientExplainer(net, torch.from_numpy(background), batch_size=batch_size)
    values = _as_nfc(explainer.shap_values(torch.from_numpy(X), nsamples=nsamples, rseed=seed))
    base = logits_fn(net)(background).mean(axis=0)
    return values, _per_sample(base, len(X))


PROGRESS_STEPS = 100  # pieces at most, per progress bar
# Rows per Integrated Gradients piece, at least: each Captum call has a fixed cost, and 100
# pieces of 2 rows took 0.20 s where 10 of 20 took 0.06 s (the default 200 digits rows).
IG_PIECE_ROWS = 20


def in_pieces(call: Callable[[np.ndarray], Any], X: np.ndarray, name: str) -> list[Any]:
    """``call`` on consecutive pieces of the rows of ``X``, under a progress bar (model-agnostic
    explainers take seconds a row on images). Pieces change no value: the explainer is built once
    and explains each row alone, its random draws (kernel's coalitions, permutation's orders,
    seeded when it is built) following in the same order."""
    found = []
    with progress.bar(len(X), f"SHAP ({name})", "row") as shown:
        for piece in progress.chunks(len(X), PROGRESS_STEPS):
            found.append(call(X[piece]))
            shown.update(piece.stop - piece.start)
    return found


def _joined(results: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(values, base) of shap Explanations of consecutive pieces of the rows."""
    parts = [_explanation(result, len(result.values)) for result in results]
    return np.concatenate([v for v, _ in parts]), np.concatenate([b for _, b in parts])


def _explanation(result: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    base = np.asarray(result.base_values)
    if np.ndim(result.values) == 2:  # a single output: base values (n,), one per row
        base = base.reshape(-1, 1)
    return _as_nfc(result.values), _per_sample(base, n)


def permutation_shap(
    net: nn.Module,
    background: np.ndarray,
    X: np.ndarray,
    *,
    max_evals: int = 500,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """PermutationExplainer: model-agnostic, exactly additive (it walks whole permutations)."""
    import shap

    needed = 2 * X.shape[1] + 1
    if max_evals < needed:
        raise ConfigError(
            f"explain.options.max_evals={max_evals} is too small for the permutation explainer on "
            f"{X.shape[1]} features: it needs at least 2 x features + 1 = {needed}; "
            f"set explain.options.max_evals={needed} or more."
        )
    explainer = shap.PermutationExplainer(logits_fn(net), shap.maskers.Independent(background), seed=seed)
    return _joined(
        in_pieces(lambda rows: explainer(rows, max_evals=max_evals, silent=True), X, "permutation")
    )


def partition_shap(
    net: nn.Module,
    background: np.ndarray,
    X: np.ndarray,
    *,
    max_evals: int = 500,
    clustering: str = "correlation",
) -> tuple[np.ndarray, np.ndarray]:
    """PartitionExplainer (Owen values over a feature hierarchy): model-agnostic, exactly additive.

    The hierarchy is a tabular clustering of the features (``shap.maskers.Partition``) for images too:
    shap's image masker needs OpenCV, which glassnet does not depend on.
    """
    import shap

    if background.std(axis=0).max() == 0:
        raise ConfigError(
            "explain.explainer=partition clusters features by their correlation over the background, "
            "but every background feature is constant; raise explain.n_background or use "
            "explain=permutation."
        )
    masker = shap.maskers.Partition(background, clustering=clustering)
    explainer = shap.PartitionExplainer(logits_fn(net), masker)
    return _joined(in_pieces(lambda rows: explainer(rows, max_evals=max_evals, silent=True), X, "partition"))


def kernel_shap(
    net: nn.Module,
    background: np.ndarray,
    X: np.ndarray,
    *,
    nsamples: int = 500,
    max_features: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """KernelExplainer (weighted linear regression over coalitions): model-agnostic and additive by
    its constraint, but each sample costs nsamples x background model calls plus a regression."""
    import shap

    n_features = X.shape[1]
    if n_features > max_features:
        raise ConfigError(
            f"explain.explainer=kernel on {n_features} features is impractically slow (and its "
            f"{nsamples} coalitions would cover them thinly); it is capped at explain.options."
            f"max_features={max_features}. Use explain=permutation (or explain=deep), or lower "
            "explain.n_samples and raise explain.options.max_features if you accept the cost."
        )
    explainer = shap.KernelExplainer(logits_fn(net), background)
    # l1_reg=False: keep every feature (the default's feature selection costs a LARS fit per class).
    pieces = in_pieces(
        lambda rows: _as_nfc(explainer.shap_values(rows, nsamples=nsamples, l1_reg=False, silent=True)),
        X,
        "kernel",
    )
    return np.concatenate(pieces), _per_sample(np.asarray(explainer.expected_value), len(X))


EXPLAINERS: dict[str, ExplainFn] = {
    "deep": deep_shap,
    "gradient": gradient_shap,
    "permutation": permutation_shap,
    "partition": partition_shap,
    "kernel": kernel_shap,
}


def explainer_options(name: str, options: dict[str, Any], seed: int) -> dict[str, Any]:
    """``explain.options`` checked against the explainer's keyword-only parameters (names and types);
    ``seed`` is passed to those that take one."""
    params = {
        p.name: p
        for p in inspect.signature(EXPLAINERS[name]).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    allowed = sorted(set(params) - {"seed"})
    chosen = dict(options)
    for key, value in chosen.items():
        if key not in allowed:
            raise ConfigError(
                f"Config key 'explain.options.{key}' is not an option of the {name} explainer; "
                f"its options are: {', '.join(allowed) or 'none'}."
            )
        default = params[key].default
        if isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"Config key 'explain.options.{key}' = {value!r} must be an integer.")
        if isinstance(default, int) and value < 1:
            raise ConfigError(f"Config key 'explain.options.{key}' = {value!r} must be at least 1.")
    if "seed" in params:
        chosen["seed"] = seed
    return chosen


# --- pure statistics -------------------------------------------------------------------------


def additivity_error(values: np.ndarray, base: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """|sum of attributions + base value - model output| per sample and class.
    ``base`` is (classes,) or (n, classes)."""
    return np.abs(values.sum(axis=1) + base - outputs)


def mean_abs_importance(values: np.ndarray) -> np.ndarray:
    """Mean |SHAP| per class and feature: (classes, features)."""
    return np.abs(values).mean(axis=0).T


def predicted_class_values(values: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(n, features): each sample's attributions for the class the model predicted."""
    return np.take_along_axis(values, y_pred[:, None, None], axis=2)[:, :, 0]


def importance_order(attributions: np.ndarray) -> np.ndarray:
    """(n, features) feature indices per sample, largest |attribution| first (stable on ties)."""
    return np.argsort(-np.abs(attributions), axis=1, kind="stable")


def removal_fractions(n_features: int, steps: int) -> np.ndarray:
    """Fractions of features removed at each of ``steps`` + 1 points (0 to 1), as counts allow."""
    counts = np.round(np.linspace(0, n_features, steps + 1)).astype(int)
    return counts / n_features


# (outputs (S, n, C), y (n,)) -> one score per removal step (S,)
Score = Callable[[np.ndarray, np.ndarray], np.ndarray]


def accuracy_score(outputs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Share of samples whose largest output is their label, per step: (S, n, C), (n,) -> (S,)."""
    return np.asarray((outputs.argmax(axis=2) == y[None]).mean(axis=1), dtype=np.float64)


def rmse_score(outputs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Root mean squared error of the single output against ``y``, per step: (S, n, 1), (n,) -> (S,)."""
    error = outputs[:, :, 0] - np.asarray(y, dtype=np.float64)[None]
    return np.asarray(np.sqrt((error**2).mean(axis=1)), dtype=np.float64)


def removal_accuracy(
    predict: Predict,
    X: np.ndarray,
    y: np.ndarray,
    orders: np.ndarray,
    baseline: np.ndarray,
    steps: int,
    score: Score = accuracy_score,
) -> np.ndarray:
    """Accuracy after replacing each sample's first features in ``orders`` by ``baseline``
    (another ``score`` of the outputs, e.g. ``rmse_score`` for regression, where given).

    ``orders`` is (n, F) or (R, n, F) (R orders per sample); returns (steps + 1,) or (R, steps + 1),
    one accuracy per removal fraction of ``removal_fractions``. All masked copies go through
    ``predict`` in one call.
    """
    orders = np.asarray(orders)
    stacked = orders[None] if orders.ndim == 2 else orders  # (R, n, F)
    n_orders, n, n_features = stacked.shape
    counts = np.round(removal_fractions(n_features, steps) * n_features).astype(int)  # (S,)
    accuracy = np.empty((n_orders, len(counts)))
    # One order at a time: a step of the progress bar, and masked copies of (S, n, F) rather than
    # (R, S, n, F) in memory (157 MB for 6 orders of 1,000 MNIST rows at 10 steps).
    with progress.bar(n_orders, "faithfulness curves", "order") as shown:
        for r, order in enumerate(stacked):
            rank = np.empty_like(order)  # rank[i, j] = position of feature j in sample i's order
            np.put_along_axis(rank, order, np.broadcast_to(np.arange(n_features), order.shape), axis=1)
            removed = rank[None] < counts[:, None, None]  # (S, n, F)
            masked = np.where(removed, baseline.astype(np.float32), X[None].astype(np.float32))
            outputs = predict(masked.reshape(-1, n_features))
            accuracy[r] = score(outputs.reshape(len(counts), n, -1), y)
            shown.update(1)
    return accuracy[0] if orders.ndim == 2 else accuracy


def faithfulness_area(fractions: np.ndarray, guided: np.ndarray, random: np.ndarray) -> float:
    """Area between the random-order and the attribution-order removal curves over the removed
    fraction (0 to 1): the mean accuracy gap. Positive: removing the features the explanation
    ranks first hurts more than removing random ones (the explanation points at what matters);
    about 0: no better than chance; the largest possible value is below 1."""
    gap = np.asarray(random, dtype=np.float64) - np.asarray(guided, dtype=np.float64)
    return float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(fractions)))


def faithfulness(
    predict: Predict,
    X: np.ndarray,
    y: np.ndarray,
    attributions: np.ndarray,
    baseline: np.ndarray,
    *,
    steps: int,
    n_random: int,
    rng: np.random.Generator,
    regression: bool = False,
) -> dict[str, Any]:
    """Removal curves by attribution order and by ``n_random`` seeded random orders, and their area.
    Classification: accuracy, which falls. Regression: the RMSE of the single output against ``y``,
    which grows; the area is then (attribution order - random order), so positive still means
    faithful, in the target's units."""
    n, n_features = attributions.shape
    random_orders = np.argsort(rng.random((n_random, n, n_features)), axis=2)
    curves = removal_accuracy(
        predict,
        X,
        y,
        np.concatenate([importance_order(attributions)[None], random_orders]),
        baseline,
        steps,
        rmse_score if regression else accuracy_score,
    )
    fractions = removal_fractions(n_features, steps)
    guided, random = curves[0], curves[1:].mean(axis=0)
    return {
        "fractions": fractions,
        "guided": guided,
        "random": random,
        "random_std": curves[1:].std(axis=0),
        "area": faithfulness_area(fractions, random, guided)
        if regression
        else faithfulness_area(fractions, guided, random),
    }


def summarize(values: np.ndarray) -> dict[str, float]:
    """Mean, median and quantiles of the finite values, and how many there were."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    q10, q25, q75, q90 = np.quantile(v, [0.1, 0.25, 0.75, 0.9]) if len(v) else [np.nan] * 4
    return {
        "mean": float(v.mean()) if len(v) else float("nan"),
        "median": float(np.median(v)) if len(v) else float("nan"),
        "q10": float(q10),
        "q25": float(q25),
        "q75": float(q75),
        "q90": float(q90),
        "n": int(len(v)),
    }


def integrated_gradients(
    net: nn.Module, X: np.ndarray, baseline: np.ndarray, target: np.ndarray, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Captum's Integrated Gradients of the target logits from ``baseline`` to each row of ``X``:
    attributions (n, F) and the completeness gap |sum(attr) - (f(x) - f(baseline))| per row."""
    from captum.attr import IntegratedGradients

    net.eval()
    inputs = torch.from_numpy(np.asarray(X, dtype=np.float32))
    base = torch.from_numpy(np.asarray(baseline, dtype=np.float32))
    targets = torch.from_numpy(np.asarray(target, dtype=np.int64))
    ig = IntegratedGradients(net)
    attrs, deltas = [], []
    # In pieces, each a step of the progress bar (rows x steps forward and backward passes).
    with progress.bar(len(inputs), "Integrated Gradients", "row") as shown:
        for part in progress.chunks(len(inputs), min(PROGRESS_STEPS, len(inputs) // IG_PIECE_ROWS)):
            attr, delta = ig.attribute(
                inputs[part],
                baselines=base.expand_as(inputs[part]),
                target=targets[part],
                n_steps=steps,
                return_convergence_delta=True,
            )
            attrs.append(attr.detach().double().numpy())
            deltas.append(np.abs(delta.detach().double().numpy()))
            shown.update(part.stop - part.start)
    if not attrs:
        return np.zeros((0, inputs.shape[1])), np.zeros(0)
    return np.concatenate(attrs), np.concatenate(deltas)


def pick_regression_examples(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` positions: the largest errors first (up to half), then the best predictions."""
    order = np.argsort(-np.abs(np.asarray(y_pred, dtype=np.float64) - y_true), kind="stable")
    worst = order[: n // 2]
    best = order[::-1][: max(min(n, len(order)) - len(worst), 0)]
    return np.concatenate([worst, best]).astype(int)


def pick_examples(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` positions: misclassified samples first (up to half), then correct ones."""
    wrong = np.flatnonzero(y_true != y_pred)[: n // 2]
    right = np.flatnonzero(y_true == y_pred)[: n - len(wrong)]
    return np.concatenate([wrong, right]).astype(int)


def split_examples(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Up to ``n`` correctly and up to ``n`` incorrectly classified positions, in sample order."""
    return {
        "correct": np.flatnonzero(y_true == y_pred)[:n].astype(int),
        "wrong": np.flatnonzero(y_true != y_pred)[:n].astype(int),
    }


# --- the core and the stage ------------------------------------------------------------------


def extra_mistakes(y_true: np.ndarray, y_pred: np.ndarray, explained: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` misclassified test rows outside ``explained`` (all arrays over the whole test split):
    explained as well when the sample holds too few mistakes to show."""
    wrong = np.flatnonzero(y_true != y_pred)
    return np.setdiff1d(wrong, explained)[: max(n, 0)].astype(int)


def trust_metrics(
    net: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    values: np.ndarray,
    y_pred: np.ndarray,
    background: np.ndarray,
    trust: TrustConfig,
    seed: int,
    regression: bool = False,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Faithfulness and agreement with Integrated Gradients (metrics, arrays to keep). For
    regression ``y`` holds the true values and ``y_pred`` the output explained (all 0)."""
    baseline = background.mean(axis=0)
    attributions = predicted_class_values(values, y_pred)
    faith = faithfulness(
        logits_fn(net),
        X,
        y,
        attributions,
        baseline,
        steps=trust.removal_steps,
        n_random=trust.random_orders,
        rng=np.random.default_rng(seed + 1),
        regression=regression,
    )
    ig, ig_gap = integrated_gradients(net, X, baseline, y_pred, trust.ig_steps)
    rho = similarity.rank_agreement(attributions, ig)
    agreement = summarize(rho)
    if regression:
        spread = float(np.std(y)) if len(y) else 0.0
        curve: dict[str, float] = {
            # The area over the sd of the explained targets: unitless, larger is more faithful.
            "faithfulness_area": faith["area"] / spread if spread > 0 else float("nan"),
            "faithfulness_rmse_area": faith["area"],
            "faithfulness_rmse_full": float(faith["guided"][0]),
            "faithfulness_rmse_top10pct_removed": float(np.interp(0.1, faith["fractions"], faith["guided"])),
            "faithfulness_random_rmse_top10pct_removed": float(
                np.interp(0.1, faith["fractions"], faith["random"])
            ),
        }
    else:
        curve = {
            "faithfulness_area": faith["area"],
            "faithfulness_acc_full": float(faith["guided"][0]),
            "faithfulness_acc_top10pct_removed": float(np.interp(0.1, faith["fractions"], faith["guided"])),
            "faithfulness_random_acc_top10pct_removed": float(
                np.interp(0.1, faith["fractions"], faith["random"])
            ),
        }
    metrics = {
        **curve,
        **{f"ig_spearman_{k}": v for k, v in agreement.items()},
        "ig_completeness_max_error": float(ig_gap.max()),
    }
    arrays = {
        "faith_fractions": faith["fractions"],
        "faith_guided": faith["guided"],
        "faith_random": faith["random"],
        "faith_random_std": faith["random_std"],
        "ig_values": ig,
        "ig_spearman": rho,
    }
    return metrics, arrays


@dataclass
class Explanation:
    """What ``explain`` computed: the attributions of the explained test rows, the extra mistakes
    explained only to be drawn, the trust checks' metrics and arrays."""

    explainer: str
    arrays: dict[str, np.ndarray]  # rows, values (n, F, C), base (n, C), outputs, importance (C, F), ...
    metrics: dict[str, float] = field(default_factory=dict)
    sanity: sanity.SanityResult | None = None
    surrogate: surrogate.Surrogate | None = None


def sanity_check(
    net: nn.Module,
    explain_fn: Callable[..., tuple[np.ndarray, np.ndarray]],
    options: dict[str, Any],
    background: np.ndarray,
    X: np.ndarray,
    values: np.ndarray,
    y_pred: np.ndarray,
    config: SanityConfig,
    image_shape: tuple[int, int] | None,
    seed: int,
) -> sanity.SanityResult:
    """The weight-randomisation check on the first ``config.n_samples`` explained rows, with
    the explainer and options that explained them."""
    m = min(config.n_samples, len(X))
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    sample = torch.from_numpy(np.ascontiguousarray(X[:4], dtype=np.float32)).to(device)
    return sanity.check(
        net,
        lambda randomised: explain_fn(randomised, background, X[:m], **options)[0],
        values[:m],
        y_pred[:m],
        sample,
        image_shape=image_shape,
        seed=seed,
        n_maps=config.n_maps,
        threshold=config.threshold,
    )


def surrogate_tree(
    predict: Predict,
    X_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
    config: SurrogateConfig,
    seed: int,
    regression: bool = False,
) -> surrogate.Surrogate:
    """A tree fitted to the network's predictions on (at most MAX_TRAIN_ROWS of) the train split.
    For regression a regression tree, fitted to the predicted values."""
    rows = sample_rows(len(X_train), min(len(X_train), surrogate.MAX_TRAIN_ROWS), np.random.default_rng(seed))
    if regression:
        return surrogate.fit_regression(
            X_train[rows],
            predict(X_train[rows])[:, 0],
            X_test,
            predict(X_test)[:, 0],
            y_test,
            max_depth=config.max_depth,
            tolerance=config.tolerance,
            seed=seed,
        )
    return surrogate.fit(
        X_train[rows],
        predict(X_train[rows]).argmax(axis=1),
        X_test,
        predict(X_test).argmax(axis=1),
        y_test,
        n_classes,
        max_depth=config.max_depth,
        tolerance=config.tolerance,
        seed=seed,
    )


def explain(
    net: nn.Module,
    X_test: np.ndarray,
    y_test: np.ndarray,
    X_train: np.ndarray,
    *,
    explainer: str,
    options: dict[str, Any],
    n_samples: int,
    n_background: int,
    n_mistakes: int,
    trust: TrustConfig,
    seed: int,
    sanity_config: SanityConfig | None = None,
    surrogate_config: SurrogateConfig | None = None,
    image_shape: tuple[int, int] | None = None,
    regression: bool = False,
) -> Explanation:
    """Core: explain ``n_samples`` seeded test rows against ``n_background`` train rows with
    ``explainer`` (a key of EXPLAINERS), measure additivity, faithfulness and agreement with
    Integrated Gradients; explain up to ``n_mistakes`` more misclassified test rows when the sample
    holds fewer (0: none). With their configs given and enabled, also run the weight-randomisation
    sanity check and fit the surrogate tree (``image_shape``: (H, W) of image rows).
    ``regression``: the network has one output, the prediction (``y_pred`` is then that value,
    ``target`` the output explained: all 0; no mistakes)."""
    explain_fn = EXPLAINERS[explainer]
    predict = logits_fn(net)
    rng = np.random.default_rng(seed)
    rows = sample_rows(len(y_test), n_samples, rng)
    background = X_train[sample_rows(len(X_train), n_background, rng)]
    X = X_test[rows]
    outputs = predict(X)
    y_true = y_test[rows]
    # The output each sample is explained for: its predicted class, or the single regression output.
    target = np.zeros(len(rows), dtype=int) if regression else outputs.argmax(axis=1)
    y_pred = outputs[:, 0] if regression else target
    extra = np.zeros(0, dtype=int)
    if n_mistakes and not regression:
        extra = extra_mistakes(
            y_test, predict(X_test).argmax(axis=1), rows, n_mistakes - int((y_true != y_pred).sum())
        )
    started = time.perf_counter()
    values, base = explain_fn(net, background, X, **options)
    seconds = time.perf_counter() - started
    error = additivity_error(values, base, outputs)
    extra_values = (
        explain_fn(net, background, X_test[extra], **options)[0]
        if len(extra)
        else np.zeros((0, *values.shape[1:]))
    )
    trust_values, trust_arrays = trust_metrics(
        net, X, y_true, values, target, background, trust, seed, regression
    )
    arrays = {
        "rows": rows,
        "values": values,
        "base": base,
        "outputs": outputs,
        "importance": mean_abs_importance(values),
        "y_true": y_true,
        "y_pred": y_pred,
        # misclassified test rows outside the sample, explained only to be drawn
        "extra_rows": extra,
        "extra_values": extra_values,
        "extra_y_true": y_test[extra],
        "extra_y_pred": predict(X_test[extra]).argmax(axis=1) if len(extra) else extra,
        **trust_arrays,
    }
    metrics = {
        # In the outputs' units: logits, or for regression the target's own units.
        "additivity_max_error": float(error.max()),
        "additivity_mean_error": float(error.mean()),
        **trust_values,
        "explainer_seconds": round(seconds, 3),
        "n_samples": int(len(rows)),
        "n_background": int(len(background)),
    }
    checked, tree = None, None
    if sanity_config is not None and sanity_config.enabled:
        started = time.perf_counter()
        checked = sanity_check(
            net, explain_fn, options, background, X, values, target, sanity_config, image_shape, seed
        )
        metrics.update(checked.metrics())
        metrics["sanity_seconds"] = round(time.perf_counter() - started, 3)
    if surrogate_config is not None and surrogate_config.enabled:
        tree = surrogate_tree(
            predict, X_train, X_test, y_test, outputs.shape[1], surrogate_config, seed, regression
        )
        metrics.update(tree.metrics())
        metrics["surrogate_seconds"] = round(tree.seconds, 3)
    return Explanation(explainer, arrays, metrics, checked, tree)


def figure_jobs(
    result: dict[str, np.ndarray], summary: dict[str, Any], raw_test: np.ndarray, n_examples: int
) -> dict[str, tuple[Any, ...]]:
    """Figure id (pipeline.plots.figures) -> the arguments of its drawing function, in report order.
    ``raw_test`` is the whole unscaled test split (``result["rows"]`` index it)."""
    if task.is_regression(summary):
        return regression_figure_jobs(result, summary, raw_test, n_examples)
    classes = summary["class_names"]
    features = summary["feature_names"]
    y_true, y_pred, values = result["y_true"], result["y_pred"], result["values"]
    raw = raw_test[result["rows"]]
    jobs: dict[str, tuple[Any, ...]] = {}
    if summary["image_shape"]:
        shape = summary["image_shape"]
        jobs["class_importance"] = (result["importance"], shape, classes)
        for group, picks in split_examples(y_true, y_pred, n_examples).items():
            images, group_values, truth, pred = raw[picks], values[picks], y_true[picks], y_pred[picks]
            if group == "wrong":  # topped up with mistakes outside the sample, explained for this figure
                images = np.concatenate([images, raw_test[result["extra_rows"]]])
                group_values = np.concatenate([group_values, result["extra_values"]])
                truth = np.concatenate([truth, result["extra_y_true"]])
                pred = np.concatenate([pred, result["extra_y_pred"]])
            if len(images):
                titles = [f"true {classes[t]} / pred {classes[p]}" for t, p in zip(truth, pred, strict=True)]
                jobs[f"examples_{group}"] = (
                    images,
                    predicted_class_values(group_values, pred),
                    shape,
                    titles,
                )
    else:
        jobs["beeswarm"] = (values, raw, features, classes)
        chosen = pick_examples(y_true, y_pred, n_examples)
        if len(chosen):
            pred = y_pred[chosen]
            titles = [
                f"sample {result['rows'][i]}: true {classes[y_true[i]]} / pred {classes[y_pred[i]]}"
                for i in chosen
            ]
            attributions = predicted_class_values(values[chosen], pred)
            jobs["waterfall"] = (attributions, result["base"][chosen, pred], raw[chosen], features, titles)
    jobs["feature_importance"] = (result["importance"], features, classes)
    faith = ("faith_fractions", "faith_guided", "faith_random", "faith_random_std")
    jobs["faithfulness"] = tuple(result[key] for key in faith)
    jobs["ig_agreement"] = (result["ig_spearman"],)
    return jobs


def regression_figure_jobs(
    result: dict[str, np.ndarray], summary: dict[str, Any], raw_test: np.ndarray, n_examples: int
) -> dict[str, tuple[Any, ...]]:
    """figure_jobs for regression: the single output, in the target's units. Images get the map of
    mean |SHAP| (no per-class maps, no right/wrong examples); tables the beeswarm and waterfalls
    of a few samples, the largest errors first."""
    name = task.target_name(summary)
    features = summary["feature_names"]
    y_true, y_pred, values = result["y_true"], result["y_pred"], result["values"]
    raw = raw_test[result["rows"]]
    jobs: dict[str, tuple[Any, ...]] = {}
    if summary["image_shape"]:
        jobs["class_importance"] = (result["importance"], summary["image_shape"], [name], name)
    else:
        jobs["beeswarm"] = (values, raw, features, [name], name)
        chosen = pick_regression_examples(y_true, y_pred, n_examples)
        if len(chosen):
            titles = [
                f"sample {result['rows'][i]}: true {task.fmt(y_true[i])}, predicted {task.fmt(y_pred[i])}"
                for i in chosen
            ]
            jobs["waterfall"] = (
                values[chosen, :, 0],
                result["base"][chosen, 0],
                raw[chosen],
                features,
                titles,
                name,
            )
    jobs["feature_importance"] = (result["importance"], features, [name], name)
    faith = ("faith_fractions", "faith_guided", "faith_random", "faith_random_std")
    jobs["faithfulness"] = (*(result[key] for key in faith), name)
    jobs["ig_agreement"] = (result["ig_spearman"], name)
    return jobs


def sample_sizes(n_test: int, n_train: int, n_samples: int, n_background: int) -> tuple[int, int, list[str]]:
    """The explained and background row counts: the configured ones are upper bounds (a small
    table has fewer test rows than the default 200), so each is cut to what its split holds;
    and one sentence per cut, for the log and the report."""
    notes = []
    used = []
    for key, wanted, available, split in (
        ("explain.n_samples", n_samples, n_test, "test"),
        ("explain.n_background", n_background, n_train, "train"),
    ):
        used.append(min(wanted, available))
        if wanted > available:
            notes.append(
                f"{key} = {wanted} is more than the {available} rows of the {split} split: "
                f"used all {available}"
            )
    return used[0], used[1], notes


def check_jobs(
    result: Explanation, summary: dict[str, Any], X_test: np.ndarray, raw_test: np.ndarray
) -> dict[str, tuple[Any, ...]]:
    """Figure id -> drawing arguments for the sanity check and the surrogate tree (those run);
    ``X_test`` and ``raw_test``, the test split scaled and not, state thresholds in raw units."""
    jobs: dict[str, tuple[Any, ...]] = {}
    shape = tuple(summary["image_shape"]) if summary["image_shape"] else None
    classes = summary["class_names"]
    checked, tree = result.sanity, result.surrogate
    if checked is not None and checked.layers:
        jobs["sanity_curve"] = (
            checked.layers,
            checked.cascade_rank,
            checked.cascade_signed,
            checked.single_rank,
            checked.cascade_ssim,
            checked.single_ssim,
            checked.threshold,
        )
        if shape is not None and checked.maps.size:
            jobs["sanity_maps"] = (checked.maps, checked.layers, shape)
    target = task.target_name(summary) if task.is_regression(summary) else None
    if tree is not None:
        jobs["surrogate_fidelity"] = (
            tree.depths,
            tree.fidelity,
            tree.accuracy,
            tree.depth,
            tree.network_accuracy,
            *([target] if target else []),
        )
        labels = surrogate.feature_labels(summary["feature_names"], shape)
        mean_image = raw_test.mean(axis=0) if shape is not None else None
        split_order = surrogate.split_features(tree.tree)
        thresholds = surrogate.threshold_texts(tree.tree, (X_test, raw_test))
        jobs["surrogate_tree"] = (tree.tree, labels, classes, shape, mean_image, split_order, thresholds)
        if target is None:  # no classes to follow in a regression
            jobs["surrogate_classes"] = (tree.class_fidelity, classes)
    return jobs


def checks_record(
    result: Explanation, summary: dict[str, Any], X_test: np.ndarray, raw_test: np.ndarray, n_rules: int
) -> dict[str, Any]:
    """The checks in words for the report: the sanity verdict, the tree's rules, its weakest classes."""
    classes = summary["class_names"]
    shape = tuple(summary["image_shape"]) if summary["image_shape"] else None
    record: dict[str, Any] = {"sanity": None, "surrogate": None}
    checked, tree = result.sanity, result.surrogate
    if checked is not None:
        record["sanity"] = {
            "verdict": sanity.verdict(checked),
            "passed": checked.passed,
            "layers": checked.layers,
            "n_samples": int(checked.cascade_rank.shape[1]) if checked.layers else 0,
            "threshold": checked.threshold,
            "rank_all_random": checked.rank_all_random,
            "signed_all_random": checked.signed_all_random,
            "signs_passed": checked.signs_passed,
            "ssim_all_random": checked.ssim_all_random if checked.cascade_ssim is not None else None,
        }
    if tree is not None and tree.regression:
        labels = surrogate.feature_labels(summary["feature_names"], shape)
        rules = surrogate.rules(tree.tree, labels, n_rules, units=(X_test, raw_test))
        record["surrogate"] = {
            **tree.metrics(),
            "task": task.REGRESSION,
            "target_name": task.target_name(summary),
            "network_r2": tree.network_accuracy,
            "max_depth": int(tree.depths.max()),
            "rules": [rule.text([task.target_name(summary)]) for rule in rules],
            "weakest_classes": [],
        }
    elif tree is not None:
        labels = surrogate.feature_labels(summary["feature_names"], shape)
        rules = surrogate.rules(tree.tree, labels, n_rules, units=(X_test, raw_test))
        order = [int(c) for c in np.argsort(np.nan_to_num(tree.class_fidelity, nan=2.0))]
        record["surrogate"] = {
            **tree.metrics(),
            "network_accuracy": tree.network_accuracy,
            "max_depth": int(tree.depths.max()),
            "rules": [rule.text(classes) for rule in rules],
            "weakest_classes": [
                {"class": classes[c], "fidelity": float(tree.class_fidelity[c])}
                for c in order[:3]
                if np.isfinite(tree.class_fidelity[c])
            ],
        }
    return record


def run(cfg: Config) -> dict[str, Any]:
    progress.mode()  # a bad GLASSNET_PROGRESS stops the stage now, not minutes in
    ecfg = cfg.explain
    arrays, summary = artifacts.load_data(cfg)
    n_samples, n_background, notes = sample_sizes(
        len(arrays["y_test"]), len(arrays["y_train"]), ecfg.n_samples, ecfg.n_background
    )
    for note in notes:
        log.info("%s.", note)
    name = ecfg.explainer.value
    options = explainer_options(name, dict(ecfg.options), cfg.seed)
    net = artifacts.load_model(cfg)
    run_info = runs.load_run(layout.run_file(cfg))
    regression = task.is_regression(summary)
    result = explain(
        net,
        arrays["X_test"],
        arrays["y_test"],
        arrays["X_train"],
        explainer=name,
        options=options,
        n_samples=n_samples,
        n_background=n_background,
        n_mistakes=ecfg.n_examples if summary["image_shape"] and not regression else 0,
        trust=ecfg.trust,
        seed=cfg.seed,
        sanity_config=ecfg.sanity,
        surrogate_config=ecfg.surrogate,
        image_shape=tuple(summary["image_shape"]) if summary["image_shape"] else None,
        regression=regression,
    )
    folder = layout.figure_dir(cfg.paths.explain)
    plots.clear(folder)
    jobs = figure_jobs(result.arrays, summary, arrays["X_test_raw"], ecfg.n_examples)
    jobs.update(check_jobs(result, summary, arrays["X_test"], arrays["X_test_raw"]))
    figures = plots.render_all(jobs, folder, cfg.report.dpi)
    # What was asked, beside what was used (n_samples, n_background): the report says when they differ.
    metrics = {
        **result.metrics,
        "n_samples_requested": ecfg.n_samples,
        "n_background_requested": ecfg.n_background,
    }
    io.write_npz(layout.shap_file(cfg), **result.arrays)
    io.write_json(
        layout.importance_file(cfg),
        {
            "class_names": summary["class_names"],
            "feature_names": summary["feature_names"],
            "image_shape": summary["image_shape"],
            "importance": result.arrays["importance"].tolist(),  # (classes, features)
        },
    )
    io.write_json(
        layout.checks_file(cfg),
        checks_record(result, summary, arrays["X_test"], arrays["X_test_raw"], ecfg.surrogate.n_rules),
    )
    # The plot files exist whether or not a check ran: DVC expects every declared output.
    sanity_rows = result.sanity.rows() if result.sanity is not None else []
    io.write_csv(
        cfg.paths.sanity_plot,
        ["layers_randomised", "layer", "rank_median", "signed_rank_median", "ssim_median"],
        [
            [r[k] for k in ("layers_randomised", "layer", "rank_median", "signed_rank_median", "ssim_median")]
            for r in sanity_rows
        ],
    )
    tree_rows = result.surrogate.rows() if result.surrogate is not None else []
    io.write_csv(
        cfg.paths.surrogate_plot,
        ["depth", "fidelity", "tree_accuracy"],
        [[r["depth"], r["fidelity"], r["tree_accuracy"]] for r in tree_rows],
    )
    path = explainer_path(name, net, arrays["X_train"][:4])
    io.write_json(cfg.paths.explain_metrics, {**metrics, "path": path})
    prefixed = {f"shap_{k}": v for k, v in metrics.items()}
    logged = [*figures, layout.importance_file(cfg), layout.checks_file(cfg)]
    records.write(layout.mlflow_record(cfg.paths.explain), run_info, prefixed, logged, "explain")
    log.info(
        "SHAP (%s, %s) on %d samples vs %d background rows in %.1f s: additivity error max %.2e; "
        "faithfulness area %.3f; agreement with Integrated Gradients: median Spearman %.2f",
        name,
        path,
        metrics["n_samples"],
        metrics["n_background"],
        metrics["explainer_seconds"],
        metrics["additivity_max_error"],
        metrics["faithfulness_area"],
        metrics["ig_spearman_median"],
    )
    return metrics


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
