"""How far to trust an explanation: statistics of attributions, arrays in, numbers out.

- additivity: attributions + base value against the model's output;
- faithfulness: a score of the model (accuracy; a regression's RMSE) as each sample's most
  important features (by |attribution| for the explained output) are replaced by the background
  mean, against the same removal in random order; the area between the two curves is one number;
- agreement with a second method, Captum's Integrated Gradients: per-sample Spearman rank
  correlation of the two attributions (pipeline.explain.similarity.rank_agreement).

Attributions are (n, features, outputs) throughout: outputs are a classifier's logits, or a
regression's single prediction in the target's units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline import progress

# The network as a numpy function: rows (m, F) -> float64 outputs (m, C).
Predict = Callable[[np.ndarray], np.ndarray]
PROGRESS_STEPS = 100  # pieces at most, per progress bar
# Rows per Integrated Gradients piece, at least: each Captum call has a fixed cost, and 100
# pieces of 2 rows took 0.20 s where 10 of 20 took 0.06 s (the default 200 digits rows).
IG_PIECE_ROWS = 20


def additivity_error(values: np.ndarray, base: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """|sum of attributions + base value - model output| per sample and output.
    ``base`` is (outputs,) or (n, outputs)."""
    return np.abs(values.sum(axis=1) + base - outputs)


def mean_abs_importance(values: np.ndarray) -> np.ndarray:
    """Mean |SHAP| per output and feature: (outputs, features)."""
    return np.abs(values).mean(axis=0).T


def for_class(values: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(n, features): each sample's attributions for its output ``target[i]`` (the class the
    network predicted; a regression's one output)."""
    return np.take_along_axis(values, np.asarray(target)[:, None, None], axis=2)[:, :, 0]


def importance_order(attributions: np.ndarray) -> np.ndarray:
    """(n, features) feature indices per sample, largest |attribution| first (stable on ties)."""
    return np.argsort(-np.abs(attributions), axis=1, kind="stable")


def removal_fractions(n_features: int, steps: int) -> np.ndarray:
    """Fractions of features removed at each of ``steps`` + 1 points (0 to 1), as counts allow."""
    counts = np.round(np.linspace(0, n_features, steps + 1)).astype(int)
    return counts / n_features


def accuracy_score(outputs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Share of samples whose largest output is their label, per step: (S, n, C), (n,) -> (S,)."""
    return np.asarray((outputs.argmax(axis=2) == y[None]).mean(axis=1), dtype=np.float64)


def rmse_score(outputs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Root mean squared error of the single output against ``y``, per step: (S, n, 1), (n,) -> (S,)."""
    error = outputs[:, :, 0] - np.asarray(y, dtype=np.float64)[None]
    return np.asarray(np.sqrt((error**2).mean(axis=1)), dtype=np.float64)


@dataclass(frozen=True)
class Score:
    """What the removal curves measure: ``of(outputs (S, n, C), y (n,))`` gives one value per
    removal step (S,); ``grows``: removing what matters raises it (an error) instead of lowering
    it (accuracy), so the faithfulness area is taken the other way round."""

    of: Callable[[np.ndarray, np.ndarray], np.ndarray]
    grows: bool = False


ACCURACY = Score(accuracy_score)
RMSE = Score(rmse_score, grows=True)


def removal_accuracy(
    predict: Predict,
    X: np.ndarray,
    y: np.ndarray,
    orders: np.ndarray,
    baseline: np.ndarray,
    steps: int,
    score: Callable[[np.ndarray, np.ndarray], np.ndarray] = accuracy_score,
) -> np.ndarray:
    """Accuracy after replacing each sample's first features in ``orders`` by ``baseline``
    (another ``score`` of the outputs, e.g. ``rmse_score`` for regression, where given).

    ``orders`` is (n, F) or (R, n, F) (R orders per sample); returns (steps + 1,) or (R, steps + 1),
    one accuracy per removal fraction of ``removal_fractions``. All masked copies of one order go
    through ``predict`` in one call.
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
    score: Score = ACCURACY,
) -> dict[str, Any]:
    """Removal curves by attribution order and by ``n_random`` seeded random orders, and their area.
    ``ACCURACY`` falls as the features that matter go; an error (``RMSE`` of the single output
    against ``y``) grows, and the area is then (attribution order - random order), so positive
    still means faithful, in the score's units."""
    n, n_features = attributions.shape
    random_orders = np.argsort(rng.random((n_random, n, n_features)), axis=2)
    curves = removal_accuracy(
        predict,
        X,
        y,
        np.concatenate([importance_order(attributions)[None], random_orders]),
        baseline,
        steps,
        score.of,
    )
    fractions = removal_fractions(n_features, steps)
    guided, random = curves[0], curves[1:].mean(axis=0)
    return {
        "fractions": fractions,
        "guided": guided,
        "random": random,
        "random_std": curves[1:].std(axis=0),
        "area": faithfulness_area(fractions, random, guided)
        if score.grows
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
    """Captum's Integrated Gradients of the target outputs from ``baseline`` to each row of ``X``:
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
