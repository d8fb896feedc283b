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
    "architecture": (
        "Architecture",
        "The network drawn as the data flows through it, left to right. Each block is one layer: its "
        "type, its sizes (inputs → outputs) and how many weights and biases it learns. A Linear layer "
        "multiplies its input by a weight matrix and adds a bias; the activation after it bends the "
        "result, which is what lets stacked layers learn more than one straight-line rule; Dropout "
        "switches off a random share of units during training only; softmax turns the last layer's scores"
        " into class probabilities. Taller blocks are wider layers.",
        "Block diagram of the network's layers with their types, sizes and parameter counts.",
    ),
    "activation_functions": (
        "Activation functions and their derivatives",
        "The solid line is the activation function each hidden unit applies to its input; the dashed line"
        " is its slope (derivative), which scales the gradient that flows back through the unit during "
        "training. Where the slope is 0 (ReLU left of 0, the flat ends of sigmoid and tanh) a unit passes"
        " back no gradient and stops learning. The grey histogram behind shows where the hidden units' "
        "inputs actually fall on the test data: mass in a flat region warns of dead or saturated units.",
        "Line plot of each activation function and its derivative over a histogram of its test-set inputs.",
    ),
    "weight_distributions": (
        "Weight and bias distributions per layer",
        "Each violin shows how the learned weights (left) or biases (right) of one layer are spread: the "
        "width at a height is how many parameters have that value, the middle bar is the median. Weights "
        "centred on 0 with a modest spread are healthy; a few very large weights, or a spread that "
        "differs wildly between layers, point to poor scaling or too little regularisation.",
        "Violin plots of the weights and of the biases of each linear layer.",
    ),
    "first_layer_images": (
        "What each first-layer unit looks for",
        "Each small square is one hidden unit of the first layer (units numbered row by row: the label on"
        " the left is the first unit of the row, +k along it): its incoming weight from every input "
        "pixel, drawn at that pixel's place. Red pixels excite the unit when they are dark in the input, "
        "blue pixels inhibit it; white means the pixel is ignored. Stroke-like red/blue patterns are the "
        "features the network learned to detect; squares that still look like random noise belong to "
        "units that learned little.",
        "Grid of images, one per first-layer unit, of its incoming weights in the input image's shape.",
    ),
    "first_layer_features": (
        "First-layer weights per input feature",
        "Each row is one hidden unit of the first layer and each column an input feature; the colour is "
        "the weight from the feature to the unit (red positive, blue negative, white near 0). A column "
        "that stays white is a feature the network hardly uses; strong, varied columns are the features "
        "it builds on.",
        "Heatmap of first-layer weights, units by input features.",
    ),
    "weight_history": (
        "How the weights moved during training",
        "For each linear layer, the spread of its weights after each epoch (epoch 0 is the random "
        "initialisation): the dark band holds the middle half of the weights, the light band 90% of them,"
        " the line is the median. Bands that widen show the layer learning; bands that stop changing show"
        " it has settled; a band that keeps growing fast can signal instability. The dotted line marks "
        "the epoch whose weights were kept.",
        "Quantile bands of each layer's weights over the training epochs.",
    ),
    "activation_distributions": (
        "Activations on the test set",
        "Top: every output value of each hidden layer over all test samples (log-scaled counts). Bottom: "
        "one count per unit: for ReLU, the share of test samples on which the unit is active (output > "
        "0); a unit at 0 never fires and is dead. For sigmoid/tanh, the share of samples on which the "
        "unit sits at the flat end of its curve; units right of the dashed line are saturated. Dead and "
        "saturated units waste capacity: they pass no gradient and carry no information about the input.",
        "Histograms of hidden-layer activations and of each unit's share of active or saturated samples.",
    ),
    "class_activations": (
        "Mean activation of each hidden unit per class",
        "Each column is one hidden unit and each row a true class; the colour is the unit's average "
        "output on the test samples of that class. Units are grouped by the class they respond to most, "
        "so a staircase of bright blocks means units have specialised in classes; a column bright for "
        "several classes is a unit shared between them (often classes the network confuses), and a dark "
        "column a unit that is silent for every class.",
        "Heatmap of mean hidden-unit activation per class, units grouped by preferred class.",
    ),
    "projections": (
        "The data seen by the network: 2-D projections",
        "Each dot is a test sample, coloured by its true class, squeezed into two dimensions: by PCA "
        "(top, the two directions of largest variance, distances roughly kept) and by t-SNE (bottom, "
        "keeps neighbours close, distances between clusters mean little). Left: the inputs; right: the "
        "last hidden layer. If the classes form cleaner, more separate clusters on the right, the network"
        " has rearranged the data so the last layer can split them with straight lines. The silhouette "
        "score (from -1 to 1, higher is better separated) puts a number on it.",
        "Scatter plots of PCA and t-SNE projections of the inputs and of the last hidden layer, by class.",
    ),
    "error_gallery": (
        "The worst mistakes",
        "The test samples the network got wrong, worst first: those to which it gave the lowest "
        "probability for the true class. Each shows the true and the predicted class with their "
        "probabilities and a bar per class (green: true class, red: predicted). Confident mistakes (a "
        "tall red bar) on samples a person finds easy point to a gap in what the network learned; "
        "mistakes on ambiguous or mislabelled samples are forgivable. For tabular data the table lists "
        "the sample's most unusual feature values (z-score: how many standard deviations from the "
        "training mean).",
        "Gallery of misclassified test samples with true and predicted labels and class probabilities.",
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


def png_dpi(data: bytes) -> float | None:
    """Resolution from a PNG's pHYs chunk (matplotlib writes it), or None."""
    at = data.find(b"pHYs")
    if at < 0:
        return None
    per_x, _, unit = struct.unpack(">IIB", data[at + 4 : at + 13])
    return per_x * 0.0254 if unit == 1 else None


CSS_DPI = 96  # a CSS pixel is 1/96 inch


def embed_figure(path: Path, text: tuple[str, str, str] | None = None) -> ReportFigure:
    """Inline a PNG; it is shown at its physical size, so a high-DPI render stays sharp on dense screens.

    ``text`` is (title, caption, alt); by default it comes from FIGURE_TEXT by file name.
    """
    data = path.read_bytes()
    width, height = png_size(data)
    scale = CSS_DPI / (png_dpi(data) or CSS_DPI)
    width, height = round(width * scale), round(height * scale)
    title, caption, alt = text or FIGURE_TEXT.get(path.stem, (path.stem.replace("_", " "), "", path.stem))
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


def truncate_id(value: str, length: int = 10) -> str:
    return str(value)[:length]


def verdict(
    metrics: dict[str, Any], top_confusions: list[dict[str, Any]], explain: dict[str, Any]
) -> list[str]:
    """Plain-language sentences for the "at a glance" panel."""
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
    return sentences


def make_env() -> Environment:
    env = Environment(
        loader=PackageLoader("pipeline", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        fmt_pct=fmt_pct, fmt_num=fmt_num, fmt_sci=fmt_sci, fmt_int=fmt_int, truncate_id=truncate_id
    )
    return env


SECTIONS = (
    ("summary", "Summary"),
    ("network", "The network: structure and weights"),
    ("training", "Training"),
    ("evaluation", "Evaluation on the test set"),
    ("explanation", "Explanation (SHAP)"),
    ("activations", "Inside the network: activations"),
    ("errors", "The worst mistakes"),
    ("configuration", "Configuration"),
)


def render_report(context: dict[str, Any]) -> str:
    """Pure: context in, HTML out."""
    sections = [{"id": sid, "title": title} for sid, title in SECTIONS]
    return make_env().get_template("base.html.j2").render(sections=sections, **context)


def figures_in(folder: Path, order: tuple[str, ...]) -> list[ReportFigure]:
    """Embed the PNGs of ``folder`` named in ``order`` that exist, in that order."""
    return [embed_figure(folder / f"{name}.png") for name in order if (folder / f"{name}.png").exists()]


NETWORK_FIGURES = (
    "architecture",
    "activation_functions",
    "weight_distributions",
    "first_layer_images",
    "first_layer_features",
    "weight_history",
)
ACTIVATION_FIGURES = ("activation_distributions", "class_activations", "projections")


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
        else:
            block, shape = "softmax", f"{spec['width']:,} class probabilities"
        rows.append({"block": block, "shape": shape, "params": spec["params"]})
    return rows


def network_context(cfg: Config) -> dict[str, Any]:
    """The visualize stage's outputs for the network, activations and errors sections."""
    network = io.read_json(layout.network_file(cfg), "visualize")
    folder = layout.figure_dir(cfg.paths.visualize)
    return {
        "network": {
            **network,
            "layer_rows": layer_rows(network["layers"]),
            "metrics": io.read_json(cfg.paths.visualize_metrics, "visualize"),
            "saturation_margin": cfg.visualize.saturation_margin,
            "saturation_share": cfg.visualize.saturation_share,
            "figures": figures_in(folder, NETWORK_FIGURES),
            "activation_figures": figures_in(folder, ACTIVATION_FIGURES),
            "error_figures": figures_in(folder, ("error_gallery",)),
        }
    }


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
        "verdict": verdict(metrics, evaluation["top_confusions"], explain),
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
