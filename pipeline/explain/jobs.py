"""What the explain stage draws and records of an ``Explanation``: its figure jobs (pipeline.plots),
in report order, and the checks in words (``checks.json``). The task (pipeline.task) gives what
differs: its own attribution figures, the surrogate's figures and record; these are shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline import plots
from pipeline.explain import sanity, surrogate
from pipeline.explain.core import Explanation
from pipeline.task import Task


def figure_jobs(
    result: Explanation, task: Task, X_test: np.ndarray, raw_test: np.ndarray, n_examples: int
) -> list[plots.Job]:
    """Every figure of the explanation, then of its checks (those run), in report order.
    ``X_test`` and ``raw_test``, the whole test split scaled and not (``result.arrays["rows"]``
    index them), show the data and state thresholds in the features' own units."""
    return [
        *task.explanation_jobs(result.arrays, raw_test, n_examples),
        *check_jobs(result, task, X_test, raw_test),
    ]


def split_examples(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Up to ``n`` correctly and up to ``n`` incorrectly classified positions, in sample order."""
    return {
        "correct": np.flatnonzero(y_true == y_pred)[:n].astype(int),
        "wrong": np.flatnonzero(y_true != y_pred)[:n].astype(int),
    }


def trust_jobs(
    arrays: dict[str, np.ndarray],
    feature_names: Sequence[str],
    class_names: Sequence[str],
    target: str | None = None,
) -> list[plots.Job]:
    """The figures every explanation has after its own (``target``: a regression's target name):
    global importance, the faithfulness curves, the agreement with Integrated Gradients."""
    return [
        plots.job(
            "feature_importance",
            importance=arrays["importance"],
            feature_names=feature_names,
            class_names=class_names,
            target=target,
        ),
        plots.job(
            "faithfulness",
            fractions=arrays["faith_fractions"],
            guided=arrays["faith_guided"],
            random=arrays["faith_random"],
            random_std=arrays["faith_random_std"],
            target=target,
        ),
        plots.job("ig_agreement", rho=arrays["ig_spearman"], target=target),
    ]


def check_jobs(result: Explanation, task: Task, X_test: np.ndarray, raw_test: np.ndarray) -> list[plots.Job]:
    """The sanity check's figures and the surrogate tree's (those run)."""
    jobs = []
    checked, tree = result.sanity, result.surrogate
    shape = task.summary.image_shape
    if checked is not None and checked.layers:
        jobs.append(
            plots.job(
                "sanity_curve",
                layers=checked.layers,
                cascade_rank=checked.cascade_rank,
                cascade_signed=checked.cascade_signed,
                single_rank=checked.single_rank,
                cascade_ssim=checked.cascade_ssim,
                single_ssim=checked.single_ssim,
                threshold=checked.threshold,
            )
        )
        if shape and checked.maps.size:
            jobs.append(
                plots.job("sanity_maps", maps=checked.maps, layers=checked.layers, image_shape=tuple(shape))
            )
    if tree is not None:
        jobs.extend(task.surrogate_jobs(tree, surrogate_tree_job(tree, task.summary, X_test, raw_test)))
    return jobs


def surrogate_tree_job(
    tree: surrogate.Surrogate, summary: Any, X_test: np.ndarray, raw_test: np.ndarray
) -> plots.Job:
    """The chosen tree drawn (for images: the pixels it splits on, over the mean test image)."""
    shape = summary.image_hw
    return plots.job(
        "surrogate_tree",
        tree=tree.tree,
        labels=surrogate.feature_labels(summary.feature_names, shape),
        class_names=summary.class_names,
        image_shape=shape,
        mean_image=raw_test.mean(axis=0) if shape is not None else None,
        split_order=surrogate.split_features(tree.tree),
        thresholds=surrogate.threshold_texts(tree.tree, (X_test, raw_test)),
    )


def checks_record(
    result: Explanation, task: Task, X_test: np.ndarray, raw_test: np.ndarray, n_rules: int
) -> dict[str, Any]:
    """The checks in words for the report: the sanity verdict, the tree's rules (thresholds in the
    features' own units) and what the task adds (a classifier's weakest classes)."""
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
    if tree is not None:
        shape = task.summary.image_hw
        labels = surrogate.feature_labels(task.summary.feature_names, shape)
        rules = surrogate.rules(tree.tree, labels, n_rules, units=(X_test, raw_test))
        record["surrogate"] = task.surrogate_record(tree, rules)
    return record
