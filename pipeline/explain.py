"""Stage 4: explain the trained model's test predictions with SHAP.

    python -m pipeline.explain explain.n_samples=100

DeepExplainer attributions for ``explain.n_samples`` test rows against a
background of ``explain.n_background`` train rows; the additivity error
(attributions + base value vs the model's output) is measured and recorded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline import fast_deep, io, layout, model, prepare, tracking
from pipeline.config import Config
from pipeline.errors import ConfigError

log = logging.getLogger(__name__)


def sample_rows(n_rows: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct row indices in increasing order."""
    return np.sort(rng.choice(n_rows, size=n, replace=False))


def deep_shap(net: torch.nn.Module, background: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SHAP values (n, features, classes) of the logits and the base value per class."""
    import shap

    net.eval()
    explainer = shap.DeepExplainer(net, torch.from_numpy(background))
    raw = explainer.shap_values(torch.from_numpy(X), check_additivity=False)
    # shap >= 0.45 returns one (n, features, classes) array; older releases a list per class.
    values = np.stack(raw, axis=-1) if isinstance(raw, list) else np.asarray(raw)
    return values.astype(np.float64), np.asarray(explainer.expected_value, dtype=np.float64).reshape(-1)


def additivity_error(values: np.ndarray, base: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """|sum of attributions + base value - model output| per sample and class."""
    return np.abs(values.sum(axis=1) + base[None, :] - outputs)


def mean_abs_importance(values: np.ndarray) -> np.ndarray:
    """Mean |SHAP| per class and feature: (classes, features)."""
    return np.abs(values).mean(axis=0).T


def pick_examples(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` positions: misclassified samples first (up to half), then correct ones."""
    wrong = np.flatnonzero(y_true != y_pred)[: n // 2]
    right = np.flatnonzero(y_true == y_pred)[: n - len(wrong)]
    return np.concatenate([wrong, right]).astype(int)


def draw(
    cfg: Config, summary: dict[str, Any], result: dict[str, np.ndarray], raw: np.ndarray, folder: Path
) -> list[Path]:
    import matplotlib.pyplot as plt

    from pipeline.plots import attribution as figs
    from pipeline.plots import save_png

    classes = summary["class_names"]
    figures = {}
    if summary["image_shape"]:
        shape = summary["image_shape"]
        figures["class_importance"] = figs.class_importance_maps(result["importance"], shape, classes)
        picks = pick_examples(result["y_true"], result["y_pred"], cfg.explain.n_examples)
        if len(picks):
            pred = result["y_pred"][picks]
            attributions = result["values"][picks, :, pred]  # (k, features): the predicted class's map
            titles = [
                f"true {classes[t]} / pred {classes[p]}"
                for t, p in zip(result["y_true"][picks], pred, strict=True)
            ]
            figures["examples"] = figs.example_maps(raw[picks], attributions, shape, titles)
    figures["feature_importance"] = figs.feature_importance_bars(
        result["importance"], summary["feature_names"]
    )
    paths = []
    for name, fig in figures.items():
        paths.append(save_png(fig, folder / f"{name}.png", cfg.report.dpi))
        plt.close(fig)
    return paths


def run(cfg: Config) -> dict[str, Any]:
    arrays, summary = prepare.load(cfg)
    net = model.load(layout.model_file(cfg))
    run_info = tracking.load_run(layout.run_file(cfg))
    n_test, n_train = len(arrays["y_test"]), len(arrays["y_train"])
    for key, wanted, available, split in (
        ("explain.n_samples", cfg.explain.n_samples, n_test, "test"),
        ("explain.n_background", cfg.explain.n_background, n_train, "train"),
    ):
        if wanted > available:
            raise ConfigError(
                f"Config key '{key}' = {wanted} exceeds the {available} rows of the "
                f"{split} split; set {key}={available} or less."
            )

    rng = np.random.default_rng(cfg.seed)
    rows = sample_rows(n_test, cfg.explain.n_samples, rng)
    background = arrays["X_train"][sample_rows(n_train, cfg.explain.n_background, rng)]
    X = arrays["X_test"][rows]
    values, base = fast_deep.deep_shap(net, background, X)  # = deep_shap's numbers, faster
    with torch.inference_mode():
        outputs = net(torch.from_numpy(X)).double().numpy()
    error = additivity_error(values, base, outputs)
    result = {
        "rows": rows,
        "values": values,
        "base": base,
        "outputs": outputs,
        "importance": mean_abs_importance(values),
        "y_true": arrays["y_test"][rows],
        "y_pred": outputs.argmax(axis=1),
    }
    metrics = {
        "additivity_max_error": float(error.max()),
        "additivity_mean_error": float(error.mean()),
        "n_samples": int(len(rows)),
        "n_background": int(len(background)),
    }
    figures = draw(cfg, summary, result, arrays["X_test_raw"][rows], layout.figure_dir(cfg.paths.explain))
    io.write_npz(layout.shap_file(cfg), **result)
    io.write_json(cfg.paths.explain_metrics, metrics)
    tracking.log_metrics(run_info, {f"shap_{k}": v for k, v in metrics.items()})
    tracking.log_artifacts(run_info, figures, "explain")
    log.info(
        "SHAP (%s) on %d samples vs %d background rows: additivity error max %.2e",
        cfg.explain.explainer.value,
        len(rows),
        len(background),
        metrics["additivity_max_error"],
    )
    return metrics


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
