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
    "examples": (
        "Individual predictions explained",
        "Top row: test images with their true and predicted labels (mistakes first). Bottom row: the "
        "SHAP map for the predicted class over the faint image; red pixels pushed the network towards "
        "its answer, blue pixels against it.",
        "Test digits with their SHAP attribution maps for the predicted class.",
    ),
    "feature_importance": (
        "Global feature importance",
        "Input features ranked by their mean absolute SHAP value over all explained samples and classes: "
        "the features whose values move the network's outputs the most.",
        "Horizontal bar chart of the most important input features.",
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
        "layers": run["layers"],
        "training": train_metrics,
        "metrics": metrics,
        "per_class": evaluation["per_class"],
        "top_confusions": evaluation["top_confusions"],
        "explain": explain,
        "explainer": cfg.explain.explainer.value,
        "figures": {
            "training": figures_in(layout.figure_dir(cfg.paths.evaluate), ("training_curves",)),
            "evaluation": figures_in(
                layout.figure_dir(cfg.paths.evaluate), ("confusion_matrix", "per_class", "reliability")
            ),
            "explanation": figures_in(
                layout.figure_dir(cfg.paths.explain), ("class_importance", "examples", "feature_importance")
            ),
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
