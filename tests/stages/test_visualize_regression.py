"""The visualize stage on a regression (one output, in the target's units): its cores with numbers,
its figures, and a whole run on the diabetes table (the ``regression_trained`` fixture)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib.collections import PathCollection

from pipeline import artifacts, layout, stats, task
from pipeline.config import Config
from pipeline.internals import analysis, conv, network, projection
from pipeline.nets import model
from pipeline.plots import activations as act_figs
from pipeline.plots import figures
from pipeline.plots import network as net_figs
from pipeline.stages import visualize
from tests.conftest import toy_summary
from tests.stages.test_visualize import live_figures

# Every figure of a tabular classifier (tests/stages/test_visualize.py) but the per-class one.
REGRESSION_FIGURES = {
    "architecture",
    "activation_functions",
    "weight_distributions",
    "first_layer_features",
    "weight_history",
    "gradient_norms",
    "loss_line",
    "activation_distributions",
    "projections",
    "error_gallery",
}
PROJECTIONS = [(m, s) for m in ("pca", "tsne") for s in ("inputs", "hidden")]
REGRESSION = task.of(
    toy_summary({"task": "regression", "target_name": "progression", "class_names": ["progression"]})
)
CLASSIFICATION = task.of(toy_summary({"task": "classification", "class_names": ["a", "b"]}))


def _texts(fig: Any) -> str:
    """Every piece of text on a figure: titles, labels, tick labels, table cells, block text."""
    from matplotlib.text import Text

    fig.canvas.draw()  # tick labels exist once drawn
    return " ".join(t.get_text() for t in fig.findobj(Text))


def test_largest_errors_are_sorted_by_absolute_error() -> None:
    y = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    predicted = np.array([12.0, 5.0, 30.0, 47.0, 43.0])  # errors +2, -15, 0, +7, -7
    assert stats.largest_errors(predicted, y, 3).tolist() == [1, 3, 4]  # the tie keeps row order
    assert stats.largest_errors(predicted, y, 10).tolist() == [1, 3, 4, 0, 2]
    assert stats.largest_errors(predicted, y, 0).tolist() == []


def test_neighbour_r2_is_high_when_the_layout_orders_the_target() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    ordered = np.column_stack([y, rng.normal(scale=0.01, size=200)])  # x is the target itself
    assert stats.neighbour_r2(ordered, y) > 0.9
    assert stats.neighbour_r2(rng.normal(size=(200, 2)), y) < 0.2  # no relation
    assert np.isnan(stats.neighbour_r2(ordered, np.ones(200)))  # a constant target
    assert np.isnan(stats.neighbour_r2(ordered[:2], y[:2]))


def test_neighbour_r2_leaves_each_row_out() -> None:
    # Two pairs far apart: each row's one nearest other row has the same target, so R² is 1; were
    # a row its own neighbour, a k of 1 would make it 1 whatever the targets.
    points = np.array([[0.0, 0.0], [0.0, 0.1], [9.0, 9.0], [9.0, 9.1]])
    assert stats.neighbour_r2(points, np.array([1.0, 1.0, 5.0, 5.0]), k=1) == pytest.approx(1.0)
    assert stats.neighbour_r2(points, np.array([1.0, 5.0, 1.0, 5.0]), k=1) < 0


def test_panels_score_a_regression_by_neighbour_r2() -> None:
    rng = np.random.default_rng(2)
    jobs = {key: rng.normal(size=(40, 5)) for key in PROJECTIONS}
    y = rng.normal(size=40) * 50 + 150
    settings: dict[str, Any] = {"seed": 0, "perplexity": 10.0, "pca_dims": 4}
    score, metric = REGRESSION.separation, REGRESSION.separation_metric
    projections, separation = projection.panels(jobs, y, score=score, metric=metric, **settings)
    assert set(separation) == {f"target_knn_r2_{s}_{m}" for m, s in PROJECTIONS}
    for (method, source), points in projections.items():
        expected = stats.neighbour_r2(points, y)
        assert separation[projection.separation_name(metric, source, method)] == expected
    score, metric = CLASSIFICATION.separation, CLASSIFICATION.separation_metric
    _, classified = projection.panels(jobs, np.arange(40) % 2, score=score, metric=metric, **settings)
    assert set(classified) == {f"silhouette_{s}_{m}" for m, s in PROJECTIONS}


def test_projections_are_coloured_by_the_target_on_one_continuous_scale() -> None:
    rng = np.random.default_rng(0)
    y = rng.uniform(25, 346, size=30)
    points = {key: rng.normal(size=(30, 2)) for key in PROJECTIONS}
    scores = {f"target_knn_r2_{s}_{m}": 0.25 for m, s in PROJECTIONS}
    fig = act_figs.projections(points, y, ["progression"], scores, "regression")
    panels = fig.axes[:4]
    for ax, key in zip(panels, PROJECTIONS, strict=True):
        (dots,) = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert np.allclose(dots.get_array(), y)  # each dot's colour value is its target
        assert np.allclose(dots.get_offsets(), points[key])
        assert dots.get_cmap().name == "viridis" and dots.get_cmap().N >= 256  # continuous, not tab10
        assert dots.norm.vmin == pytest.approx(y.min()) and dots.norm.vmax == pytest.approx(y.max())
        assert "neighbour R² 0.25" in ax.get_title()
    (bar,) = fig.axes[4:]  # one colorbar for the four panels
    assert bar.get_ylabel() == "progression"
    assert fig.legends == []


def test_error_gallery_shows_actual_against_predicted() -> None:
    rng = np.random.default_rng(0)
    actual, predicted = np.array([52.0, 310.0]), np.array([182.8, 184.8])
    raw = rng.normal(size=(2, 4))
    fig = act_figs.error_gallery(
        raw, raw, predicted, actual, ["progression"], ["a", "b", "c", "d"], None, "regression"
    )
    text = _texts(fig)
    assert "actual 52, predicted 182.8 (130.8 progression too high)" in text
    assert "actual 310, predicted 184.8 (125.2 progression too low)" in text
    assert "probability" not in text and "%" not in text
    # The actual value (green) and the prediction (red) on each row's axis, in target units.
    left = fig.axes[0]
    dots = [c.get_offsets()[0][0] for c in left.collections]
    assert dots == pytest.approx([52.0, 182.8])
    images = act_figs.error_gallery(raw, raw, predicted, actual, ["y"], [], (2, 2), "regression")
    assert "actual 52" in _texts(images) and "pred 182.8" in _texts(images)


def test_architecture_of_a_regression_ends_in_one_predicted_value() -> None:
    torch.manual_seed(0)
    net = model.Shaped(model.MLP(4, 1, [5], "relu", dropout=0.0), (4,)).eval()
    specs = network.layer_specs(net, REGRESSION)
    assert specs[-1] == {
        "kind": "output",
        "name": "prediction",
        "width": 1,
        "params": 0,
        "target": "progression",
    }
    fig = net_figs.architecture(specs)
    text = _texts(fig)
    assert "predicted\nprogression" in text
    assert "softmax" not in text and "probabilit" not in text
    assert network.layer_specs(net, CLASSIFICATION)[-1]["name"] == "softmax"  # a classifier's ends in softmax


def test_loss_label_names_the_regression_loss(make_cfg: Any) -> None:
    regression = task.of(toy_summary({"task": "regression", "target_name": "progression"}))
    assert regression.loss_label(make_cfg().loss._target_) == "MSE of the scaled target"
    assert regression.loss_label(make_cfg("loss=huber").loss._target_) == "Huber loss of the scaled target"
    assert (
        task.of(toy_summary({"task": "classification"})).loss_label(make_cfg().loss._target_)
        == "cross-entropy loss"
    )
    fig = net_figs.loss_line({"alpha": [0.0, 1.0], "train": [1.0, 0.5]}, "MSE of the scaled target")
    assert fig.axes[0].get_ylabel() == "MSE of the scaled target"


def test_regression_captions_do_not_speak_of_classes() -> None:
    for figure_id in ("architecture", "projections", "error_gallery", "loss_line"):
        spec = figures.spec(figure_id)
        caption = spec.caption_for("regression")
        assert caption != spec.caption
        assert "softmax" not in caption and "class" not in caption and "probabilit" not in caption
    assert figures.spec("error_gallery").title_for("regression") == "The largest errors"


def test_conv_jobs_for_a_regression_on_images() -> None:
    torch.manual_seed(0)
    net = model.Shaped(model.CNN((1, 8, 8), 1, channels=(4,), hidden_sizes=(), dropout=0.0), (1, 8, 8)).eval()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 64)).astype(np.float32)
    y = rng.uniform(0, 10, size=6)
    arrays = {"X_test": X, "y_test": y, "X_test_raw": X}
    summary = toy_summary(task="regression", target_name="t", class_names=["t"], image_shape=[8, 8])
    with torch.no_grad():
        predicted = net(torch.from_numpy(X))[:, 0].numpy()
    errors = stats.largest_errors(predicted, y, 3)
    jobs = conv.conv_jobs(net, task.of(summary), arrays, summary["image_shape"], predicted, errors)
    by_id = {item.figure_id: item.kwargs for item in jobs}
    assert set(by_id) == {"conv_filters", "conv_feature_maps", "grad_cam_errors"}  # no per-class map
    images, cams, titles = (by_id["grad_cam_errors"][k] for k in ("images", "cams", "titles"))
    assert images.shape == (3, 8, 8) and cams.shape == (3, 8, 8)
    first = errors[0]
    assert titles[0] == f"actual {y[first]:.4g} / pred {predicted[first]:.4g}"


@pytest.fixture(scope="module")
def visualized(
    regression_trained: tuple[Config, dict[str, Any]],
) -> tuple[Config, dict[str, float], dict[str, Any], dict[str, dict[str, Any]]]:
    """visualize.run on the trained regression; also the arguments each figure it drew with
    ``plots.render`` was given (the projections)."""
    from pipeline import plots

    cfg, _ = regression_trained
    drawn: dict[str, dict[str, Any]] = {}
    render = plots.render

    def recording(item: plots.Job, folder: Any, dpi: int) -> Path:
        drawn[item.figure_id] = dict(item.kwargs)
        return render(item, folder, dpi)

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(Path(cfg.paths.prepare).parents[1])
        patch.setattr(plots, "render", recording)
        metrics = visualize.run(cfg)
    return cfg, metrics, json.loads(layout.network_file(cfg).read_text()), drawn


Visualized = tuple[Config, dict[str, float], dict[str, Any], dict[str, dict[str, Any]]]


def test_stage_on_a_regression_draws_its_figures(visualized: Visualized) -> None:
    cfg, _, _, _ = visualized
    folder = layout.figure_dir(cfg.paths.visualize)
    assert {p.stem for p in folder.glob("*.png")} == REGRESSION_FIGURES
    assert live_figures() == []  # the stage let go of every figure it drew


def test_stage_on_a_regression_records_regression_metrics(
    visualized: Visualized,
) -> None:
    cfg, metrics, record, _ = visualized
    written = json.loads(Path(cfg.paths.visualize_metrics).read_text())
    assert written == pytest.approx(metrics, rel=1e-9, nan_ok=True)
    assert {f"target_knn_r2_{s}_{m}" for m, s in PROJECTIONS} <= set(metrics)
    assert not any(name.startswith("silhouette") for name in metrics) and "n_misclassified" not in metrics
    assert all(np.isfinite(metrics[f"target_knn_r2_{s}_{m}"]) for m, s in PROJECTIONS)
    assert record["task"] == "regression" and record["target_name"] == "progression"
    assert set(record["separation"]) == {f"target_knn_r2_{s}_{m}" for m, s in PROJECTIONS}
    assert record["layers"][-1]["name"] == "prediction"

    # The errors are the model's own largest absolute errors, largest first, in target units.
    arrays, _ = artifacts.load_data(cfg)
    net = artifacts.load_model(cfg)
    with torch.inference_mode():
        predicted = net(torch.from_numpy(arrays["X_test"])).squeeze(1).numpy().astype(np.float64)
    y = arrays["y_test"].astype(np.float64)
    errors = record["errors"]
    assert len(errors) == min(cfg.visualize.n_errors, len(y))
    sizes = [e["abs_error"] for e in errors]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] == pytest.approx(np.abs(predicted - y).max(), rel=1e-5)
    assert metrics["max_abs_error"] == pytest.approx(sizes[0], rel=1e-6)
    for entry in errors:
        row = entry["row"]
        assert entry["actual"] == pytest.approx(y[row])
        assert entry["predicted"] == pytest.approx(predicted[row], rel=1e-5, abs=1e-4)
        assert entry["error"] == pytest.approx(entry["actual"] - entry["predicted"])  # the residual
    shown = np.sort(np.abs(predicted - y))[::-1][: len(errors)]
    assert sizes == pytest.approx(shown.tolist(), rel=1e-5)


def test_projection_colours_of_the_stage_are_the_test_targets(visualized: Visualized) -> None:
    cfg, _, record, drawn = visualized
    arrays, _ = artifacts.load_data(cfg)
    pick = analysis.projection_sample(len(arrays["y_test"]), cfg.visualize.tsne_max_samples, cfg.seed)
    assert record["projection_samples"] == len(pick)
    points, labels, names, scores, kind = (
        drawn["projections"][k] for k in ("points", "y", "class_names", "separation", "task")
    )
    assert kind == "regression" and names == ["progression"] and scores == record["separation"]
    assert labels.dtype.kind == "f" and np.array_equal(labels, arrays["y_test"][pick])  # values, not classes
    fig = act_figs.projections(points, labels, names, scores, kind)
    for ax, key in zip(fig.axes[:4], PROJECTIONS, strict=True):
        dots = next(c for c in ax.collections if isinstance(c, PathCollection))
        assert np.allclose(dots.get_array(), labels) and np.allclose(dots.get_offsets(), points[key])
    assert fig.axes[4].get_ylabel() == "progression"
