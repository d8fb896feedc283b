"""The explain stage's core: a network's test predictions explained, and how far to trust that.

    result = core.explain(net, X_test, y_test, X_train, explainer=explainers.from_config(...),
                          config=cfg.explain, task=task.of(summary), seed=cfg.seed)

sample -> explain -> trust -> sanity -> surrogate: ``config.n_samples`` seeded test rows are
explained against ``config.n_background`` train rows by the explainer (pipeline.explain.explainers);
their additivity, faithfulness and agreement with Integrated Gradients are measured
(pipeline.explain.trust); the weight-randomisation check re-explains some of them on randomised
copies of the network (pipeline.explain.sanity), and a decision tree imitates the network
(pipeline.explain.surrogate). Arrays and objects in, an ``Explanation`` out; the task
(pipeline.task) says what is explained, how faithfulness is scored and which tree imitates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from pipeline import stats
from pipeline.config import ExplainConfig, SanityConfig, TrustConfig
from pipeline.explain import sanity, similarity, surrogate, trust
from pipeline.nets import predict
from pipeline.task import Task

# An explainer with its options bound (explainers.from_config): (net, background, X) -> (values, base).
log = logging.getLogger(__name__)

Explainer = Callable[[nn.Module, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class Explanation:
    """What ``explain`` computed: the attributions of the explained test rows, the extra mistakes
    explained only to be drawn, the trust checks' metrics and arrays."""

    arrays: dict[str, np.ndarray]  # rows, values (n, F, C), base (n, C), outputs, importance (C, F), ...
    metrics: dict[str, float] = field(default_factory=dict)
    sanity: sanity.SanityResult | None = None
    surrogate: surrogate.Surrogate | None = None


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


def sample_rows(n_rows: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct row indices in increasing order, drawn from ``rng``. Unlike stats.subsample
    (a seed per draw), successive draws share one generator: the background follows the
    explained rows, and the default run's numbers depend on that order."""
    return np.sort(rng.choice(n_rows, size=n, replace=False))


def extra_mistakes(wrong: np.ndarray, explained: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` of the ``wrong`` test rows (the network's mistakes) outside ``explained``:
    explained as well when the sample holds too few mistakes to show."""
    return np.setdiff1d(wrong, explained)[: max(n, 0)].astype(int)


def trust_metrics(
    net: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    values: np.ndarray,
    target: np.ndarray,
    background: np.ndarray,
    config: TrustConfig,
    seed: int,
    task: Task,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Faithfulness and agreement with Integrated Gradients (metrics, arrays to keep) of the
    attributions ``values`` of the rows ``X`` (true answers ``y``) for their ``target`` outputs."""
    baseline = background.mean(axis=0)
    attributions = trust.for_class(values, target)
    faith = trust.faithfulness(
        predict.logits_fn(net),
        X,
        y,
        attributions,
        baseline,
        steps=config.removal_steps,
        n_random=config.random_orders,
        rng=np.random.default_rng(seed + 1),
        score=task.removal_score(),
    )
    ig, ig_gap = trust.integrated_gradients(net, X, baseline, target, config.ig_steps)
    rho = similarity.rank_agreement(attributions, ig)
    metrics = {
        **task.faithfulness_metrics(faith, y),
        **{f"ig_spearman_{k}": v for k, v in trust.summarize(rho).items()},
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


def sanity_check(
    net: nn.Module,
    explainer: Explainer,
    background: np.ndarray,
    X: np.ndarray,
    values: np.ndarray,
    target: np.ndarray,
    config: SanityConfig,
    image_shape: tuple[int, int] | None,
    seed: int,
) -> sanity.SanityResult:
    """The weight-randomisation check on the first ``config.n_samples`` explained rows, with the
    explainer (and options) that explained them."""
    m = min(config.n_samples, len(X))
    sample = torch.from_numpy(np.ascontiguousarray(X[:4], dtype=np.float32)).to(predict.device_of(net))
    return sanity.check(
        net,
        lambda randomised: explainer(randomised, background, X[:m])[0],
        values[:m],
        target[:m],
        sample,
        image_shape=image_shape,
        seed=seed,
        n_maps=config.n_maps,
        threshold=config.threshold,
    )


def explain(
    net: nn.Module,
    X_test: np.ndarray,
    y_test: np.ndarray,
    X_train: np.ndarray,
    *,
    explainer: Explainer,
    config: ExplainConfig,
    task: Task,
    seed: int,
) -> Explanation:
    """Explain ``config.n_samples`` seeded test rows against ``config.n_background`` train rows
    (each at most what its split holds, which the log says); measure additivity, faithfulness and
    agreement with Integrated Gradients; for images explain up to ``config.n_examples`` more of the
    network's mistakes when the sample holds fewer; run the sanity check and fit the surrogate tree
    where ``config`` enables them."""
    forward = predict.logits_fn(net)
    image_shape = task.summary.image_hw
    n_samples, n_background, notes = sample_sizes(
        len(y_test), len(X_train), config.n_samples, config.n_background
    )
    for note in notes:
        log.info("%s.", note)
    rng = np.random.default_rng(seed)
    rows = sample_rows(len(y_test), n_samples, rng)
    background = X_train[sample_rows(len(X_train), n_background, rng)]
    X, y_true = X_test[rows], y_test[rows]
    outputs = forward(X)
    # The output each row is explained for (the predicted class; a regression's one output).
    target = task.explained_outputs(outputs, np.arange(len(rows)))
    y_pred = task.prediction_of(outputs)
    extra = np.zeros(0, dtype=int)
    if image_shape is not None and config.n_examples:
        wrong = task.wrong_rows(y_test, task.prediction_of(forward(X_test)))
        extra = extra_mistakes(wrong, rows, config.n_examples - len(task.wrong_rows(y_true, y_pred)))
    started = time.perf_counter()
    values, base = explainer(net, background, X)
    seconds = time.perf_counter() - started
    error = trust.additivity_error(values, base, outputs)
    extra_values = (
        explainer(net, background, X_test[extra])[0] if len(extra) else np.zeros((0, *values.shape[1:]))
    )
    trust_values, trust_arrays = trust_metrics(
        net, X, y_true, values, target, background, config.trust, seed, task
    )
    arrays = {
        "rows": rows,
        "values": values,
        "base": base,
        "outputs": outputs,
        "importance": trust.mean_abs_importance(values),
        "y_true": y_true,
        "y_pred": y_pred,
        # misclassified test rows outside the sample, explained only to be drawn
        "extra_rows": extra,
        "extra_values": extra_values,
        "extra_y_true": y_test[extra],
        "extra_y_pred": task.prediction_of(forward(X_test[extra])) if len(extra) else extra,
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
    if config.sanity.enabled:
        started = time.perf_counter()
        checked = sanity_check(
            net, explainer, background, X, values, target, config.sanity, image_shape, seed
        )
        metrics.update(checked.metrics())
        metrics["sanity_seconds"] = round(time.perf_counter() - started, 3)
    if config.surrogate.enabled:
        started = time.perf_counter()
        fitted_on = X_train[stats.subsample(len(X_train), surrogate.MAX_TRAIN_ROWS, seed)]
        tree = task.fit_surrogate(forward, fitted_on, X_test, y_test, config.surrogate, seed)
        metrics.update(tree.metrics())
        metrics["surrogate_seconds"] = round(time.perf_counter() - started, 3)
    return Explanation(arrays, metrics, checked, tree)
