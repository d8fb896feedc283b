"""Stage 5: render one self-contained HTML report of the run.

    python -m pipeline report report.title="My network"

Reads every earlier stage's outputs, embeds the figures they drew in the order and with the
captions of ``pipeline.plots.figures``, and renders ``templates/`` with Jinja2 (autoescaped, CSS
inline, figures as data: URIs; see ``pipeline.report.html``); the publish stage logs the page to the
run's MLflow record.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from pipeline import io, layout, task
from pipeline.config import Config
from pipeline.nets.arch import summary_line
from pipeline.plots import figures
from pipeline.plots.figures import SECTIONS
from pipeline.report.html import ReportFigure, embed_figure, fmt_num, fmt_pct, render_page
from pipeline.tracking import location

log = logging.getLogger(__name__)


def verdict(
    metrics: dict[str, Any],
    top_confusions: list[dict[str, Any]],
    explain: dict[str, Any],
    checks: dict[str, Any] | None = None,
) -> list[str]:
    """Plain-language sentences for the "at a glance" panel (``checks``: the explain stage's
    sanity verdict and surrogate tree, where they ran)."""
    sentences = [
        f"The network classifies {fmt_pct(metrics['accuracy'])} of the {metrics['n_test']:,} test samples "
        f"correctly (macro F1 {metrics['macro_f1']:.3f})."
    ]
    if top_confusions:
        pairs = [f"{c['true']} taken for {c['predicted']} ({c['count']}×)" for c in top_confusions[:3]]
        sentences.append("Its most frequent mistakes: " + "; ".join(pairs) + ".")
    else:
        sentences.append("It made no mistakes on the test set.")
    ece = metrics["ece"]
    calibration = (
        "well calibrated: its confidence can be taken at face value"
        if ece < 0.03
        else "somewhat miscalibrated: read its probabilities with care"
        if ece < 0.1
        else "poorly calibrated: its probabilities do not match how often it is right"
    )
    sentences.append(f"It is {calibration} (expected calibration error {ece:.3f}).")
    if "faithfulness_area" in explain:
        trust = trust_summary(explain)
        sentences.append(
            f"Explanation checks: additivity gap {trust['additivity_max_error']:.1e}, faithfulness area "
            f"{trust['faithfulness_area']:.3f}, agreement with Integrated Gradients "
            f"{trust['ig_spearman_median']:.2f}. {trust['verdict']}"
        )
    else:
        gap = explain["additivity_max_error"]
        sentences.append(
            f"The SHAP attributions add up to the network's outputs (largest gap {gap:.1e})."
            if gap < 0.01
            else f"The SHAP attributions miss the network's outputs by up to {gap:.2g}: "
            "treat them as approximate."
        )
    checks = checks or {}
    if checks.get("sanity"):
        sentences.append(checks["sanity"]["verdict"])
    tree = checks.get("surrogate")
    if tree:
        sentences.append(
            f"A decision tree of depth {int(tree['surrogate_depth'])} imitates the network on "
            f"{fmt_pct(tree['surrogate_fidelity'])} of the test samples"
            + (
                f"; it follows it least on class {tree['weakest_classes'][0]['class']} "
                f"({fmt_pct(tree['weakest_classes'][0]['fidelity'])})."
                if tree.get("weakest_classes")
                else "."
            )
        )
    return sentences


def regression_verdict(
    metrics: dict[str, Any],
    largest: list[dict[str, Any]],
    summary: dict[str, Any],
    explain: dict[str, Any],
    checks: dict[str, Any] | None = None,
) -> list[str]:
    """The "at a glance" sentences of a regression run: its errors in the target's units."""
    target, f = task.target_name(summary), task.fmt
    r2 = metrics["r2"]
    sentences = [
        f"On the {metrics['n_test']:,} test samples the network's predictions of {target} are off by "
        f"{f(metrics['mae'])} on average (mean absolute error; RMSE {f(metrics['rmse'])}), against "
        f"{f(metrics['baseline_rmse'])} RMSE for always predicting the training mean of "
        f"{f(summary['target_mean'])}.",
        f"It explains {fmt_pct(max(r2, 0.0))} of the spread of {target} (R² {r2:.3f})"
        + (": no better than predicting the average." if r2 <= 0 else "."),
    ]
    if largest:
        worst = largest[0]
        sentences.append(
            f"Its largest error: test row {worst['row']}, actual {f(worst['actual'])}, predicted "
            f"{f(worst['predicted'])} ({'too low' if worst['error'] > 0 else 'too high'} by "
            f"{f(abs(worst['error']))})."
        )
    bias = metrics["bias"]
    if abs(bias) > 0.1 * metrics["rmse"]:
        sentences.append(
            f"It predicts too {'low' if bias > 0 else 'high'} on average (mean residual {f(bias)}): a "
            "systematic bias, not only noise."
        )
    if "faithfulness_area" in explain:
        trust = trust_summary(explain, regression=True)
        sentences.append(
            f"Explanation checks: additivity gap {trust['additivity_max_error']:.1e}, faithfulness area "
            f"{trust['faithfulness_area']:.3f}, agreement with Integrated Gradients "
            f"{trust['ig_spearman_median']:.2f}. {trust['verdict']}"
        )
    checks = checks or {}
    if checks.get("sanity"):
        sentences.append(checks["sanity"]["verdict"])
    tree = checks.get("surrogate")
    if tree and "surrogate_fidelity_r2" in tree:
        sentences.append(
            f"A regression tree of depth {int(tree['surrogate_depth'])} imitates the network with R² "
            f"{tree['surrogate_fidelity_r2']:.2f} on the test samples."
        )
    return sentences


# Section titles that speak of classes, as a regression's report names them.
REGRESSION_TITLES = {"errors": "The largest errors"}


def render_report(context: dict[str, Any]) -> str:
    """Pure: context in, HTML out."""
    titles = REGRESSION_TITLES if context.get("regression") else {}
    sections = [(sid, titles.get(sid, title)) for sid, title in SECTIONS]
    return render_page("base.html.j2", sections, "sections", context)


def section_figures(
    section: str, folders: Mapping[str, Path], kind: str = task.CLASSIFICATION
) -> list[ReportFigure]:
    """Embed the PNGs of ``section``'s figures that their stage (``folders[stage]``) wrote, in registry
    order, with the title and caption of the task ``kind``; a figure a stage did not draw for this
    data (beeswarm for images, a confusion matrix for a regression) is left out."""
    found = [(spec, folders[spec.stage] / f"{spec.id}.png") for spec in figures.in_section(section)]
    return [
        embed_figure(path, spec.title_for(kind), spec.caption_for(kind), spec.alt)
        for spec, path in found
        if path.exists()
    ]


def layer_rows(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The visualize stage's layer specs as table rows: block name, shape, parameters."""
    rows = []
    for spec in specs:
        kind = spec["kind"]
        if kind == "linear":
            block, shape = "Linear", f"{spec['fan_in']:,} → {spec['width']:,}"
        elif kind == "activation":
            block, shape = spec["function"], f"{spec['width']:,} units"
        elif kind == "dropout":
            block, shape = f"Dropout (p = {spec['p']:g}, training only)", f"{spec['width']:,} units"
        elif kind == "input":
            block, shape = "Input", f"{spec['width']:,} features"
        elif spec.get("name") == "prediction":  # a regression's output: the value itself
            block, shape = "Output", f"1 value: the predicted {spec.get('target', 'target')}"
        else:
            block, shape = "softmax", f"{spec['width']:,} class probabilities"
        rows.append({"block": block, "shape": shape, "params": spec["params"]})
    return rows


def network_context(cfg: Config) -> dict[str, Any]:
    """The visualize stage's outputs for the network, activations and errors sections."""
    network = io.read_json(layout.network_file(cfg), "visualize")
    # The thresholds visualize used (its config section is among the report's params in dvc.yaml).
    network["saturation_margin"] = cfg.visualize.saturation_margin
    network["saturation_share"] = cfg.visualize.saturation_share
    return {
        "network": {
            **network,
            "layer_rows": layer_rows(network["layers"]),
            "metrics": io.read_json(cfg.paths.visualize_metrics, "visualize"),
        }
    }


def configuration_yaml(cfg: Config) -> str:
    """The resolved config of every section a stage reads; paths (dvc.yaml's deps and outs) and compare
    (not a stage of the pipeline) are left out, so dvc.yaml can declare all of it as the report's params."""
    sections = {
        "seed": cfg.seed,
        "data": cfg.data,
        "model": cfg.model,
        "optim": cfg.optim,
        "scheduler": cfg.scheduler,
        "trainer": cfg.trainer,
        "train": cfg.train,
        "evaluate": cfg.evaluate,
        "explain": cfg.explain,
        "visualize": cfg.visualize,
        "tracking": cfg.tracking,
        "report": cfg.report,
    }
    plain = {
        name: OmegaConf.to_container(node, resolve=True, enum_to_str=True)
        if OmegaConf.is_config(node)
        else node
        for name, node in sections.items()
    }
    return OmegaConf.to_yaml(plain)


def _grade(value: float, good: float, fair: float) -> int:
    """2 (good), 1 (fair) or 0 (poor) for a statistic where larger is better."""
    return 2 if value >= good else 1 if value >= fair else 0


def trust_summary(explain: dict[str, Any], regression: bool = False) -> dict[str, Any]:
    """The three trust numbers of the explain stage, each read in plain words, and one verdict.
    (A regression's faithfulness area is the rise of the RMSE in target standard deviations.)

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
            "removing the features it ranks first raises the error far more than removing random ones"
            if regression
            else "removing the features it ranks first hurts accuracy far more than removing random ones",
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
        verdict = "Trust it: all three checks pass clearly."
    elif min(grades.values()) >= 1 and score >= 4:
        verdict = "Trust it with care: the checks pass, one of them only narrowly."
    elif grades["faithfulness"] == 0:
        verdict = (
            "Do not trust it: the features it calls important are barely more important than random ones."
        )
    else:
        verdict = (
            "Trust it with care: at least one check is weak; compare with the second method before acting."
        )
    return {
        "additivity_max_error": additivity,
        "faithfulness_area": area,
        "ig_spearman_median": rho,
        "readings": {key: readings[key][2 - grade] for key, grade in grades.items()},
        "grades": grades,
        "verdict": verdict,
    }


def build_context(cfg: Config) -> dict[str, Any]:
    """Read every earlier stage's outputs into the template's context."""
    summary = io.read_json(layout.summary_file(cfg), "prepare")
    run = io.read_json(layout.run_file(cfg), "train")
    train_metrics = io.read_json(cfg.paths.train_metrics, "train")
    evaluation = io.read_json(layout.evaluation_file(cfg), "evaluate")
    explain = io.read_json(cfg.paths.explain_metrics, "explain")
    checks = io.read_json(layout.checks_file(cfg), "explain")
    metrics = evaluation["metrics"]
    folders = {stage: layout.figure_dir(getattr(cfg.paths, stage)) for stage in figures.STAGES}
    arch = run["arch"]
    uri = run["tracking_uri"]
    is_server = uri.startswith(("http://", "https://"))
    model_text = summary_line(arch)
    kind = task.name_of(summary)
    regression = task.is_regression(summary)
    if regression:
        f = task.fmt
        target = task.target_name(summary)
        described = (
            f"a numeric target, {target} (train mean {f(summary['target_mean'])}, "
            f"sd {f(summary['target_std'])})"
        )
        cards = [
            {"label": f"test RMSE ({target})", "value": f(metrics["rmse"])},
            {"label": "mean absolute error", "value": f(metrics["mae"])},
            {"label": "R² (share of spread explained)", "value": fmt_num(metrics["r2"])},
            {"label": "RMSE of predicting the mean", "value": f(metrics["baseline_rmse"])},
        ]
        glance = regression_verdict(metrics, evaluation.get("largest_errors", []), summary, explain, checks)
    else:
        described = f"{summary['n_classes']} classes"
        cards = [
            {"label": "test accuracy", "value": fmt_pct(metrics["accuracy"])},
            {"label": "macro F1", "value": fmt_num(metrics["macro_f1"])},
            {"label": "log loss", "value": fmt_num(metrics["log_loss"])},
            {"label": "calibration error (ECE)", "value": fmt_num(metrics["ece"])},
        ]
        glance = verdict(metrics, evaluation["top_confusions"], explain, checks)
    balance = summary.get("class_balance") or {}
    return {
        "title": cfg.report.title,
        "task": kind,
        "regression": regression,
        "target": summary.get("target_summary")
        and {"name": task.target_name(summary), **summary["target_summary"]},
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "summary": {
            "dataset": summary["dataset"],
            "sizes": ", ".join(f"{n:,} {split}" for split, n in summary["sizes"].items())
            + f"; {summary['n_features']} features, {described}",
            "model": model_text,
            "n_parameters": train_metrics["n_parameters"],
            "warnings": summary.get("warnings", []),
            # rows: (class, count per split), columns in the splits' order
            "class_counts": [
                (name, [balance[split][i] for split in balance])
                for i, name in enumerate(summary["class_names"])
            ]
            if balance
            else [],
            "splits": list(balance),
            "cards": cards,
        },
        "run": {
            **{
                k: run.get(k, "unknown")
                for k in ("run_id", "experiment_name", "experiment_id", "started", "git_commit", "git_dirty")
            },
            "tracking_uri": uri,
            "ui_command": location.ui_command(uri),
            "ui_url": (
                f"{uri.rstrip('/')}/#/experiments/{run['experiment_id']}/runs/{run['run_id']}"
                if is_server
                else ""
            ),
        },
        "verdict": glance,
        "checks": checks,
        "training": train_metrics,
        "metrics": metrics,
        "per_class": evaluation.get("per_class", []),
        "top_confusions": evaluation.get("top_confusions", []),
        "largest_errors": evaluation.get("largest_errors", []),
        "explain": explain,
        "explainer": cfg.explain.explainer.value,
        "trust": trust_summary(explain, regression),
        "figures": {sid: section_figures(sid, folders, kind) for sid, _ in SECTIONS},
        "config_yaml": configuration_yaml(cfg),
        **network_context(cfg),
    }


def run(cfg: Config) -> Path:
    context = build_context(cfg)
    html = render_report(context)
    out = Path(cfg.paths.report)
    io.write_text(out, html)
    log.info("Report written to %s (%.0f kB)", out.resolve(), len(html.encode()) / 1024)
    return out


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
