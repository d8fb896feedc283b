"""The visualize stage: its cores with numbers, its figures, and whole runs on image
(digits) and tabular (synthetic) data."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shap  # noqa: F401 -- imported before any figure is drawn: see live_figures
import torch
from matplotlib.figure import Figure
from PIL import Image

from pipeline import io, layout, stats, task
from pipeline.config import Config, to_config
from pipeline.data.dataset import Dataset
from pipeline.errors import ConfigError
from pipeline.internals import activations, analysis, network, projection
from pipeline.nets import layers as vocabulary
from pipeline.nets import model, predict
from pipeline.plots import activations as act_figs
from pipeline.plots import network as net_figs
from pipeline.stages import prepare, visualize
from tests.conftest import toy_summary

IMAGE_FIGURES = {
    "architecture",
    "activation_functions",
    "weight_distributions",
    "first_layer_images",
    "weight_history",
    "gradient_norms",
    "loss_line",
    "activation_distributions",
    "class_activations",
    "projections",
    "error_gallery",
}
TABULAR_FIGURES = (IMAGE_FIGURES - {"first_layer_images"}) | {"first_layer_features"}
CLASSIFIER = task.of(toy_summary({"task": "classification", "class_names": ["a", "b", "c"]}))


def live_figures() -> list[Figure]:
    """The matplotlib figures still alive in this process. glassnet makes its figures without
    pyplot (``pipeline.plots.subplots``), so ``plt.get_fignums()`` never lists them: such a figure
    is closed once nothing refers to it, and one that something still holds is found here.

    shap keeps the ImportErrors of its optional parts for good, and through their tracebacks every
    frame on the stack when it was first imported: this module imports it first, so that the frame
    is not plots.attribution.beeswarm's (which imports it when it draws), whose figure it would keep.
    """
    while gc.collect():  # a figure's cycles may take more than one pass to free
        pass
    return [obj for obj in gc.get_objects() if isinstance(obj, Figure)]


def _net(
    hidden: list[int], activation: str = "relu", in_features: int = 4, n_classes: int = 3
) -> model.Shaped:
    """An MLP as the stages load it: seen through model.Shaped (flat rows in)."""
    torch.manual_seed(0)
    return model.Shaped(
        model.MLP(in_features, n_classes, hidden, activation, dropout=0.1), (in_features,)
    ).eval()


def test_layer_specs_follow_the_network() -> None:
    net = _net([5, 3], "tanh")
    specs = network.layer_specs(net, CLASSIFIER)
    assert [s["kind"] for s in specs] == [
        "input",
        *["linear", "activation", "dropout"] * 2,
        "linear",
        "output",
    ]
    assert [s["width"] for s in specs] == [4, 5, 5, 5, 3, 3, 3, 3, 3]
    assert specs[1]["params"] == 4 * 5 + 5 and specs[7]["params"] == 3 * 3 + 3
    assert sum(s["params"] for s in specs) == model.n_parameters(net)
    assert specs[2]["function"] == "tanh" and specs[3]["p"] == pytest.approx(0.1)


def test_collect_activations_matches_a_manual_forward_pass() -> None:
    net = _net([5, 3], "relu")
    X = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    layers, logits = activations.capture(net.net, lambda: predict.outputs(net, X))
    with torch.no_grad():
        h1_pre = net.net.net[0](torch.from_numpy(X))
        h1 = torch.relu(h1_pre)
        h2 = torch.relu(net.net.net[3](h1))
        out = net(torch.from_numpy(X))
    assert [layer.label for layer in layers] == ["hidden 1", "hidden 2"]
    assert np.allclose(layers[0].pre, h1_pre.numpy()) and np.allclose(layers[0].post, h1.numpy())
    assert np.allclose(layers[1].post, h2.numpy())
    assert np.allclose(logits, out.numpy(), atol=1e-6)
    # The hooks are gone: a second forward pass captures nothing new.
    assert all(not m._forward_hooks for m in net.modules())


@pytest.mark.parametrize("act", [torch.nn.GELU, torch.nn.SiLU])
def test_every_elementwise_nonlinearity_shows_its_activations(act: type[torch.nn.Module]) -> None:
    """A user's network with GELU or SiLU (and a leaky ReLU): visualize captures both layers'
    activations, counts their dead units as a rectifier's, and draws them with the network's own
    functions (the leaky ReLU's slope is the network's)."""
    from pipeline.config import VisualizeConfig
    from pipeline.data.summary import Summary
    from pipeline.internals import jobs

    torch.manual_seed(0)
    inner = torch.nn.Sequential(
        torch.nn.Linear(4, 6), act(), torch.nn.Linear(6, 5), torch.nn.LeakyReLU(0.1), torch.nn.Linear(5, 3)
    )
    net = model.Shaped(inner, (4,)).eval()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4)).astype(np.float32)
    y = np.arange(40) % 3
    layers, logits = activations.capture(net.net, lambda: predict.outputs(net, X))
    name = act.__name__.lower()
    assert [(layer.label, layer.name, layer.activation) for layer in layers] == [
        ("hidden 1", "1", name),
        ("hidden 2", "3", "leakyrelu"),
    ]
    with torch.no_grad():
        pre = inner[0](torch.from_numpy(X))
        assert np.allclose(layers[0].pre, pre.numpy()) and np.allclose(layers[0].post, act()(pre).numpy())
        assert np.allclose(logits, net(torch.from_numpy(X)).numpy(), atol=1e-6)
    rows = activations.layer_stats(layers, 0.01, 0.9)
    assert [row["statistic"] for row in rows] == ["dead", "dead"]
    assert [s["kind"] for s in network.layer_specs(net, CLASSIFIER)][2] == "activation"
    x = np.array([-2.0, 2.0])
    curves = activations.activation_curves(net.net, layers, x)
    assert list(curves) == sorted([name, "leakyrelu"])
    assert curves["leakyrelu"][1].tolist() == pytest.approx([0.1, 1.0])

    summary = Summary(
        dataset="t", n_features=4, n_classes=3, class_names=["a", "b", "c"], feature_names=list("abcd")
    )
    arrays = {"X_test": X, "y_test": y, "X_test_raw": X}
    vcfg = VisualizeConfig(tsne_max_samples=30, tsne_perplexity=5.0, pca_before_tsne=4)
    found = analysis.analyse(net, X, y, CLASSIFIER, vcfg, seed=0)
    found = analysis.project(found, X[found.rows], CLASSIFIER, seed=0, perplexity=5.0, pca_dims=4)
    history = {"quantiles": list(stats.QUANTILES), "epochs": [0], "layers": {}}
    made = jobs.figure_jobs(net, CLASSIFIER, found, arrays, summary, jobs.Training(history, 0), vcfg, None)
    assert {"activation_functions", "activation_distributions", "class_activations"} <= {
        item.figure_id for item in made
    }
    drawn = net_figs.activation_functions(x, curves, layers[0].pre)
    assert {ax.get_title() for ax in drawn.axes} >= {"leaky ReLU", "GELU" if name == "gelu" else "SiLU"}
    assert act_figs.activation_distributions(layers, rows, 0.01, 0.9).axes


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid"])
def test_activation_curve_derivative_is_analytic(name: str) -> None:
    x = np.array([-2.0, -0.5, 0.5, 2.0])
    f, df = activations.activation_curve(vocabulary.ACTIVATIONS[name](), x)
    expected = {
        "relu": (np.maximum(x, 0), (x > 0).astype(float)),
        "tanh": (np.tanh(x), 1 - np.tanh(x) ** 2),
        "sigmoid": (1 / (1 + np.exp(-x)), np.exp(-x) / (1 + np.exp(-x)) ** 2),
    }[name]
    assert np.allclose(f, expected[0]) and np.allclose(df, expected[1])


def test_projection_shapes_and_small_inputs() -> None:
    X = np.random.default_rng(0).normal(size=(20, 60))
    for method in ("pca", "tsne"):
        points = projection.project(X, method, seed=0, perplexity=30.0, pca_dims=10)
        assert points.shape == (20, 2) and np.isfinite(points).all()


def test_projections_together_equal_one_at_a_time() -> None:
    rng = np.random.default_rng(1)
    jobs = {(m, name): rng.normal(size=(40, d)) for m in ("pca", "tsne") for name, d in (("a", 30), ("b", 8))}
    together = projection.project_all(jobs, seed=3, perplexity=10.0, pca_dims=10)
    assert list(together) == list(jobs)
    for (method, name), X in jobs.items():
        alone = projection.project(X, method, seed=3, perplexity=10.0, pca_dims=10)
        assert np.array_equal(together[(method, name)], alone), (method, name)


def test_tile_lays_images_out_row_by_row() -> None:
    images = np.arange(3 * 2 * 2, dtype=float).reshape(3, 2, 2)
    mosaic = net_figs.tile(images, cols=2)
    assert mosaic.shape == (5, 5)
    assert mosaic[0:2, 0:2].tolist() == images[0].tolist()
    assert mosaic[0:2, 3:5].tolist() == images[1].tolist()
    assert mosaic[3:5, 0:2].tolist() == images[2].tolist()
    assert np.isnan(mosaic[2]).all() and np.isnan(mosaic[3:5, 3:5]).all()


def test_every_figure_function_draws_and_leaves_nothing_open() -> None:
    rng = np.random.default_rng(0)
    net = _net([6, 4], "sigmoid", in_features=4)
    X = rng.normal(size=(30, 4)).astype(np.float32)
    y = np.arange(30) % 3
    layers, probs = activations.capture(net.net, lambda: CLASSIFIER.predict(net, X))
    rows = activations.layer_stats(layers, 0.01, 0.9)
    x = np.linspace(-5, 5, 50)
    history = {
        "quantiles": list(stats.QUANTILES),
        "epochs": [0, 1, 2],
        "layers": {"net.0": {"shape": [6, 4], "weight": [[-1, -0.5, 0, 0.5, 1]] * 3}},
    }
    points = {(m, s): rng.normal(size=(30, 2)) for m in ("pca", "tsne") for s in ("inputs", "hidden")}
    classes = ["a", "b", "c"]
    figures = [
        net_figs.architecture(network.layer_specs(net, CLASSIFIER), (2, 2)),
        net_figs.activation_functions(x, activations.activation_curves(net.net, layers, x), layers[0].pre),
        net_figs.weight_distributions(network.weight_arrays(net)),
        net_figs.unit_weight_images(network.weight_arrays(net)[0][1], (2, 2)),
        net_figs.unit_weight_heatmap(network.weight_arrays(net)[0][1], ["f1", "f2", "f3", "f4"]),
        net_figs.weight_history(history, 1),
        act_figs.activation_distributions(layers, rows, 0.01, 0.9),
        act_figs.class_activation_heatmap([("hidden 1", stats.class_means(layers[0].post, y, 3))], classes),
        act_figs.projections(points, y, classes, {"silhouette_inputs_pca": 0.1}),
        act_figs.error_gallery_images(X[:3], probs[:3], y[:3], classes, (2, 2)),
        act_figs.error_gallery_table(X[:3], X[:3], probs[:3], y[:3], classes, ["f1", "f2", "f3", "f4"]),
    ]
    blank = [
        fig
        for fig in figures
        if not any(ax.has_data() or ax.patches or ax.texts or ax.tables for ax in fig.axes)
    ]
    assert blank == []
    del figures  # the test's own hold on them: once it is dropped, none may be left alive
    assert live_figures() == []


@pytest.mark.parametrize(
    "override",
    [
        "visualize.n_units=0",
        "visualize.tsne_max_samples=2",
        "visualize.tsne_perplexity=0",
        "visualize.saturation_margin=0.6",
        "visualize.saturation_share=0",
        "visualize.n_errors=-1",
    ],
)
def test_out_of_range_visualize_settings_name_the_key(override: str) -> None:
    from tests.conftest import compose_conf

    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        to_config(compose_conf([override]))


def _check_stage(cfg: Config, expected: set[str]) -> dict[str, Any]:
    folder = layout.figure_dir(cfg.paths.visualize)
    names = {p.stem for p in folder.glob("*.png")}
    assert names == expected
    for path in folder.glob("*.png"):
        with Image.open(path) as img:
            assert img.size[0] > 100 and img.size[1] > 100
    assert live_figures() == []  # every stage that ran in this process let go of its figures
    metrics = json.loads(Path(cfg.paths.visualize_metrics).read_text())
    record = json.loads(layout.network_file(cfg).read_text())
    from mlflow import MlflowClient

    run = json.loads(layout.run_file(cfg).read_text())
    client = MlflowClient(run["tracking_uri"])
    logged = {Path(a.path).stem for a in client.list_artifacts(run["run_id"], "visualize")}
    assert logged == expected
    mlflow_metrics = client.get_run(run["run_id"]).data.metrics
    assert mlflow_metrics["viz_n_parameters"] == metrics["n_parameters"]
    return {"metrics": metrics, "record": record, "mlflow": mlflow_metrics}


def test_stage_on_digits_draws_every_figure_and_records_metrics(small_run) -> None:  # type: ignore[no-untyped-def]
    cfg, results = small_run
    out = _check_stage(cfg, IMAGE_FIGURES)
    metrics, record = out["metrics"], out["record"]
    # Equal up to rounding: PCA's sums may take another order from one process to the next.
    assert metrics == pytest.approx(results["visualize"], rel=1e-9)
    assert metrics["n_parameters"] == 64 * 128 + 128 + 128 * 10 + 10
    assert 0.0 <= metrics["layer1_dead_fraction"] <= 1.0
    assert "viz_layer1_dead_fraction" in out["mlflow"]
    assert metrics["tsne_samples"] == 150
    # The network separates the classes better than its inputs do (t-SNE silhouette).
    assert metrics["silhouette_hidden_tsne"] > metrics["silhouette_inputs_tsne"] - 0.05
    assert [row["label"] for row in record["activation_stats"]] == ["hidden 1"]
    assert len(record["errors"]) <= 6
    p_true = [e["p_true"] for e in record["errors"]]
    assert p_true == sorted(p_true) and all(e["true"] != e["predicted"] for e in record["errors"])


def test_weight_history_holds_initial_and_every_epoch(small_run) -> None:  # type: ignore[no-untyped-def]
    import pytorch_lightning as pl

    from pipeline.training.build import build_net

    cfg, results = small_run
    history = json.loads(layout.weight_history_file(cfg).read_text())
    assert history["epochs"] == list(range(results["train"]["epochs_run"] + 1))
    assert set(history["layers"]) == {"net.0", "net.3"}
    entry = history["layers"]["net.0"]
    assert entry["shape"] == [128, 64] and len(entry["weight"]) == len(history["epochs"])
    assert all(np.all(np.diff(q) >= 0) for q in entry["weight"])  # quantiles ascend
    # Epoch 0 is the untrained network: rebuild it with the same seed and compare.
    pl.seed_everything(cfg.seed, verbose=False)
    fresh, _ = build_net(cfg, (1, 8, 8), 10)
    assert entry["weight"][0] == pytest.approx(stats.quantiles(fresh.net[0].weight.detach().numpy()))
    assert entry["weight"][-1] != pytest.approx(entry["weight"][0])  # training moved them


def _synthetic_tabular(cfg: Config, n: int = 240) -> None:
    """Three separable-ish classes in 6 named features, written as the prepare stage would."""
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    centres = rng.normal(scale=2.0, size=(3, 6))
    X = (centres[y] + rng.normal(size=(n, 6)) * np.array([1, 1, 1, 10, 0.1, 1])).astype(np.float32)
    ds = Dataset("synthetic", X, y.astype(np.int64), [f"feat_{c}" for c in "abcdef"], ["x", "y", "z"])
    arrays, summary = prepare.prepare(ds, StandardScaler(), 0.25, 0.15, cfg.seed)
    assert summary.image_shape is None
    io.write_arrays(layout.data_file(cfg), **arrays)
    io.write_json(layout.summary_file(cfg), summary.to_dict())


@pytest.mark.slow
def test_stage_and_report_on_tabular_data(make_cfg: Callable[..., Config]) -> None:
    from pipeline.stages import evaluate, explain, publish, report, train
    from tests.stages.test_report import parse

    cfg = make_cfg(
        "model.activation=tanh",
        "model.hidden_sizes=[16,8]",
        "explain.n_samples=12",
        "explain.n_background=12",
    )
    _synthetic_tabular(cfg)
    train.run(cfg)
    evaluate.run(cfg)
    explain.run(cfg)
    metrics = visualize.run(cfg)
    publish.run(cfg)
    out = _check_stage(cfg, TABULAR_FIGURES)
    assert set(metrics) >= {"layer1_saturated_fraction", "layer2_saturated_fraction", "n_parameters"}
    assert "layer1_dead_fraction" not in metrics
    assert [r["activation"] for r in out["record"]["activation_stats"]] == ["tanh", "tanh"]

    html = Path(report.run(cfg)).read_text()
    page = parse(html)
    assert {sid for sid, _ in report.SECTIONS} <= page.ids
    for fig_id in TABULAR_FIGURES - ({"error_gallery"} if not out["record"]["errors"] else set()):
        assert f'id="fig-{fig_id}"' in html
    assert "saturated" in html  # the tanh layers report saturation, not dead units


def test_size_settings_are_upper_bounds_and_the_log_says_so() -> None:
    from types import SimpleNamespace

    vcfg = SimpleNamespace(tsne_max_samples=1000, n_units=64, n_errors=12)
    assert analysis.size_notes(vcfg, 5000, 128, 40) == []
    assert analysis.size_notes(vcfg, 30, 16, 3) == [
        "visualize.tsne_max_samples = 1000 is more than the 30 rows of the test split: projected all 30",
        "visualize.n_units = 64 is more than the 16 units of the first layer: drew all 16",
        "visualize.n_errors = 12 is more than the 3 misclassified test rows: showed all 3",
    ]
