"""Stage 5: render one self-contained HTML report of the run.

    python -m pipeline.report report.title="My network"

Reads every earlier stage's outputs, renders ``templates/`` with Jinja2
(autoescaped, CSS inline, figures as data: URIs) and attaches the page to the
run's MLflow record.
"""

from __future__ import annotations

import base64
import logging
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from pipeline import io, layout, tracking
from pipeline.config import Config, to_yaml

log = logging.getLogger(__name__)

# id -> (title, caption, alt text). Captions teach the reader how to read the figure.
FIGURE_TEXT: dict[str, tuple[str, str, str]] = {
    "training_curves": (
        "Training curves",
        "Loss (left) and accuracy (right) after each epoch, on the training data and on the validation "
        "data the network never trains on. Both losses falling together means the network is learning; "
        "a validation loss that rises while the training loss keeps falling means it has begun to memorise "
        "(overfit). The dotted line marks the epoch whose weights were kept.",
        "Line charts of training and validation loss and accuracy per epoch.",
    ),
    "confusion_matrix": (
        "Confusion matrix",
        "Each row is a true class and each column the class the network predicted; the number in a cell "
        "counts test samples. Counts on the diagonal are correct answers; any count off the diagonal is a "
        "mistake, and large ones show which classes the network mixes up.",
        "Heatmap of test-set counts of true class against predicted class.",
    ),
    "per_class": (
        "Precision, recall and F1 per class",
        "Precision: of the samples predicted as this class, the share that truly are. Recall: of the "
        "samples of this class, the share found. F1 is their harmonic mean. A short bar singles out a "
        "class the network finds hard.",
        "Bar chart of precision, recall and F1 for each class.",
    ),
    "reliability": (
        "Calibration (reliability diagram)",
        "Test samples are grouped by the network's confidence in its answer; each point compares that "
        "confidence with how often the answer was right. Points on the diagonal mean the confidence can be "
        "taken at face value; points below it mean over-confidence. ECE is the average gap.",
        "Scatter of accuracy against mean confidence per confidence bin, with the diagonal.",
    ),
    "class_importance": (
        "What each class looks at (mean |SHAP| per pixel)",
        "For each class, the average size of each pixel's contribution to that class's score over the "
        "explained test samples. Bright pixels are the ones the network relies on to recognise or rule "
        "out the class; dark pixels barely matter.",
        "Grid of heatmaps, one per class, of mean absolute SHAP value per input pixel.",
    ),
    "examples_correct": (
        "Correct predictions explained",
        "Top row: correctly classified test images with their true and predicted labels. Bottom row: the "
        "SHAP map for the predicted class over the faint image; red pixels pushed the network towards "
        "its answer, blue pixels against it. A sensible explanation lights up the strokes that make the "
        "digit what it is (the loop of a 6, the bar of a 7) rather than empty background.",
        "Correctly classified test images with their SHAP attribution maps for the predicted class.",
    ),
    "examples_wrong": (
        "Mistakes explained",
        "The same view for test images the network got wrong. The map shows which pixels made it choose "
        "the wrong class: red where the image looked like the predicted class to the network, blue where "
        "it spoke against it. Comparing with the true label often shows the stroke that misled it.",
        "Misclassified test images with their SHAP attribution maps for the (wrong) predicted class.",
    ),
    "beeswarm": (
        "How each feature pushes each class (beeswarm)",
        "One panel per class. Each row is a feature (most important at the top) and each dot one explained "
        "sample: the dot's horizontal position is that feature's SHAP value for the class (right raises the "
        "class's score, left lowers it) and its colour the feature's value (red high, blue low). Red dots on "
        "the right mean that high values of the feature argue for the class; a wide spread means the feature "
        "matters a lot for some samples.",
        "Beeswarm plots of per-sample SHAP values per feature, coloured by feature value, one per class.",
    ),
    "waterfall": (
        "Individual predictions explained (waterfall)",
        "Each panel explains one test sample (mistakes first). It starts at the base value, the network's "
        "average score for the predicted class over the background data (dashed line), and adds the "
        "features' contributions one by one, largest first: red bars push the score up, blue bars down, "
        "and the remaining features are lumped into one bar. The bars end at the network's actual score "
        "for this sample (solid line). The labels give each feature's value.",
        "Waterfall charts of the largest feature contributions for selected test samples.",
    ),
    "feature_importance": (
        "Global feature importance",
        "Input features ranked by their mean absolute SHAP value over the explained samples, summed over "
        "the classes: the features whose values move the network's outputs the most. Each bar is split "
        "by class, so a bar dominated by one colour belongs to a feature that matters mainly for that class.",
        "Horizontal bar chart of the most important input features, stacked by class.",
    ),
    "faithfulness": (
        "Faithfulness: does removing the important features hurt?",
        "Accuracy on the explained samples as more and more of each sample's features are replaced by their "
        "average (the background mean), either in the order the explanation ranks them (largest |SHAP| "
        "for the predicted class first, red) or in random order (grey, mean of several orders with a band "
        "of one standard deviation). If the explanation is faithful, removing its top features destroys the "
        "prediction much faster than removing random ones, so the red curve falls well below the grey one; "
        "the shaded area between them is the faithfulness area (0: no better than chance).",
        "Accuracy against fraction of features removed, in attribution order and in random order.",
    ),
    "ig_agreement": (
        "Agreement with a second method (Integrated Gradients)",
        "For each explained sample, the Spearman rank correlation between the SHAP attributions and those "
        "of Integrated Gradients (a different method, computed with Captum from the same baseline) for the "
        "predicted class: 1 means both methods rank the features identically, 0 unrelated, -1 reversed. "
        "Mass near 1 means the explanation does not depend much on the method chosen; a wide spread means "
        "that for some samples the two methods tell different stories.",
        "Histogram of per-sample rank correlations between SHAP and Integrated Gradients attributions.",
    ),
}


@dataclass(frozen=True)
class ReportFigure:
    id: str
    title: str
    caption: str
    alt: str
    src: str
    width: int
    height: int


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def embed_figure(path: Path) -> ReportFigure:
    data = path.read_bytes()
    width, height = png_size(data)
    title, caption, alt = FIGURE_TEXT.get(path.stem, (path.stem.replace("_", " "), "", path.stem))
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return ReportFigure(path.stem, title, caption, alt, src, width, height)


def fmt_pct(value: float) -> str:
    return f"{100 * float(value):.1f}%"


def fmt_num(value: float) -> str:
    return f"{float(value):.4f}" if abs(float(value)) < 1000 else f"{float(value):,.0f}"


def fmt_sci(value: float) -> str:
    return f"{float(value):.2e}"


def fmt_int(value: float) -> str:
    return f"{int(value):,}"


def make_env() -> Environment:
    env = Environment(
        loader=PackageLoader("pipeline", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(fmt_pct=fmt_pct, fmt_num=fmt_num, fmt_sci=fmt_sci, fmt_int=fmt_int)
    return env


SECTIONS = (
    ("summary", "Summary"),
    ("training", "Training"),
    ("evaluation", "Evaluation on the test set"),
    ("explanation", "Explanation (SHAP)"),
    ("configuration", "Configuration"),
)


def render_report(context: dict[str, Any]) -> str:
    """Pure: context in, HTML out."""
    sections = [{"id": sid, "title": title} for sid, title in SECTIONS]
    return make_env().get_template("base.html.j2").render(sections=sections, **context)


def figures_in(folder: Path, order: tuple[str, ...]) -> list[ReportFigure]:
    """Embed the PNGs of ``folder`` named in ``order`` that exist, in that order."""
    return [embed_figure(folder / f"{name}.png") for name in order if (folder / f"{name}.png").exists()]


EXPLANATION_FIGURES = (
    "class_importance",
    "examples_correct",
    "examples_wrong",
    "beeswarm",
    "feature_importance",
    "waterfall",
    "faithfulness",
    "ig_agreement",
)


def _grade(value: float, good: float, fair: float) -> int:
    """2 (good), 1 (fair) or 0 (poor) for a statistic where larger is better."""
    return 2 if value >= good else 1 if value >= fair else 0


def trust_summary(explain: dict[str, Any]) -> dict[str, Any]:
    """The three trust numbers of the explain stage, each read in plain words, and one verdict.

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
            "removing the features it ranks first hurts accuracy far more than removing random ones",
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
    metrics = evaluation["metrics"]
    arch = run["arch"]
    uri = run["tracking_uri"]
    is_server = uri.startswith(("http://", "https://"))
    model_text = (
        f"MLP {arch['in_features']} → {' → '.join(str(h) for h in arch['hidden_sizes'])} → "
        f"{arch['n_classes']} ({arch['activation']}, dropout {arch['dropout']})"
    )
    return {
        "title": cfg.report.title,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "summary": {
            "dataset": summary["dataset"],
            "sizes": ", ".join(f"{n:,} {split}" for split, n in summary["sizes"].items())
            + f"; {summary['n_features']} features, {summary['n_classes']} classes",
            "model": model_text,
            "n_parameters": train_metrics["n_parameters"],
            "cards": [
                {"label": "test accuracy", "value": fmt_pct(metrics["accuracy"])},
                {"label": "macro F1", "value": fmt_num(metrics["macro_f1"])},
                {"label": "log loss", "value": fmt_num(metrics["log_loss"])},
                {"label": "calibration error (ECE)", "value": fmt_num(metrics["ece"])},
            ],
        },
        "run": {
            **{
                k: run.get(k, "unknown")
                for k in ("run_id", "experiment_name", "experiment_id", "started", "git_commit", "git_dirty")
            },
            "tracking_uri": uri,
            "ui_command": tracking.ui_command(uri),
            "ui_url": (
                f"{uri.rstrip('/')}/#/experiments/{run['experiment_id']}/runs/{run['run_id']}"
                if is_server
                else ""
            ),
        },
        "layers": run["layers"],
        "training": train_metrics,
        "metrics": metrics,
        "per_class": evaluation["per_class"],
        "top_confusions": evaluation["top_confusions"],
        "explain": explain,
        "explainer": cfg.explain.explainer.value,
        "trust": trust_summary(explain),
        "figures": {
            "training": figures_in(layout.figure_dir(cfg.paths.evaluate), ("training_curves",)),
            "evaluation": figures_in(
                layout.figure_dir(cfg.paths.evaluate), ("confusion_matrix", "per_class", "reliability")
            ),
            "explanation": figures_in(layout.figure_dir(cfg.paths.explain), EXPLANATION_FIGURES),
        },
        "config_yaml": to_yaml(cfg),
    }


def run(cfg: Config) -> Path:
    context = build_context(cfg)
    html = render_report(context)
    out = Path(cfg.paths.report)
    io.write_text(out, html)
    run_info = tracking.load_run(layout.run_file(cfg))
    tracking.log_artifacts(run_info, [out], "report")
    log.info("Report written to %s (%.0f kB)", out.resolve(), len(html.encode()) / 1024)
    return out


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
