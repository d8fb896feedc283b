"""The report's verdicts in plain words: the "at a glance" sentences and how far to trust the explanation.

    sentences = verdict(task.of(summary), evaluation, explain, checks)
    trust = trust_summary(explain, task.of(summary).removal_effect)

The task (pipeline.task) says what it has to say about the test set and the surrogate tree; the
sentences on the explanation's checks are the same for every task and written here once.
"""

from __future__ import annotations

from typing import Any

from pipeline.task import Task
from pipeline.task.classification import Classification


def verdict(
    t: Task, evaluation: dict[str, Any], explain: dict[str, Any], checks: dict[str, Any] | None = None
) -> list[str]:
    """The "at a glance" sentences: the task's on the test set (``evaluation``: evaluate's
    evaluation.json), then the explanation's checks (``explain``: its metrics; ``checks``: its sanity
    verdict and surrogate tree, where they ran)."""
    sentences = [*t.glance(evaluation), explanation_sentence(explain, t.removal_effect)]
    checks = checks or {}
    if checks.get("sanity"):
        sentences.append(checks["sanity"]["verdict"])
    tree = checks.get("surrogate")
    surrogate = t.surrogate_sentence(tree) if tree else None
    if surrogate:
        sentences.append(surrogate)
    return sentences


def explanation_sentence(explain: dict[str, Any], removal_effect: str) -> str:
    """The three trust numbers and their verdict; only the additivity gap where the other checks
    did not run."""
    if "faithfulness_area" in explain:
        trust = trust_summary(explain, removal_effect)
        return (
            f"Explanation checks: additivity gap {trust['additivity_max_error']:.1e}, faithfulness area "
            f"{trust['faithfulness_area']:.3f}, agreement with Integrated Gradients "
            f"{trust['ig_spearman_median']:.2f}. {trust['verdict']}"
        )
    gap = explain["additivity_max_error"]
    if gap < 0.01:
        return f"The SHAP attributions add up to the network's outputs (largest gap {gap:.1e})."
    return f"The SHAP attributions miss the network's outputs by up to {gap:.2g}: treat them as approximate."


def _grade(value: float, good: float, fair: float) -> int:
    """2 (good), 1 (fair) or 0 (poor) for a statistic where larger is better."""
    return 2 if value >= good else 1 if value >= fair else 0


def trust_summary(
    explain: dict[str, Any], removal_effect: str = Classification.removal_effect
) -> dict[str, Any]:
    """The three trust numbers of the explain stage, each read in plain words, and one verdict.
    ``removal_effect``: what removing the top-ranked features does to the task's score (a regression's
    faithfulness area is the rise of the RMSE in target standard deviations).

    Thresholds are rules of thumb, stated in the text so a reader can disagree with them.
    """
    additivity = float(explain["additivity_max_error"])
    area = float(explain["faithfulness_area"])
    rho = float(explain["ig_spearman_median"])
    grades = {
        # Logits are O(1-10): 1e-3 is exact for practical purposes, 0.1 a visible approximation.
        "additivity": 2 if additivity < 1e-3 else 1 if additivity < 0.1 else 0,
        "faithfulness": _grade(area, 0.15, 0.05),
        "agreement": _grade(rho if rho == rho else -1.0, 0.7, 0.4),  # NaN (no valid sample) -> poor
    }
    readings = {
        "additivity": (
            "the attributions add up to the network's outputs",
            "the attributions add up to the outputs only approximately",
            "the attributions do not add up to the outputs",
        ),
        "faithfulness": (
            f"removing the features it ranks first {removal_effect} far more than removing random ones",
            "its top features matter more than random ones, but not by much",
            "its top features matter little more than random ones",
        ),
        "agreement": (
            "Integrated Gradients ranks the features much the same way",
            "Integrated Gradients agrees only in part",
            "Integrated Gradients tells a different story",
        ),
    }
    score = sum(grades.values())
    if min(grades.values()) == 2:
        summary = "Trust it: all three checks pass clearly."
    elif min(grades.values()) >= 1 and score >= 4:
        summary = "Trust it with care: the checks pass, one of them only narrowly."
    elif grades["faithfulness"] == 0:
        summary = (
            "Do not trust it: the features it calls important are barely more important than random ones."
        )
    else:
        summary = (
            "Trust it with care: at least one check is weak; compare with the second method before acting."
        )
    return {
        "additivity_max_error": additivity,
        "faithfulness_area": area,
        "ig_spearman_median": rho,
        "readings": {key: readings[key][2 - grade] for key, grade in grades.items()},
        "grades": grades,
        "verdict": summary,
    }
