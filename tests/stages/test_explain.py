"""The explain stage: the trust statistics on hand-made cases (pipeline.explain.trust, core, jobs),
the attribution figures, and the stage on small runs (its files, MLflow record and report)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from pipeline import io, layout
from pipeline.errors import ConfigError
from pipeline.explain import core, jobs, similarity, trust
from pipeline.nets import model
from pipeline.plots import attribution as figs
from pipeline.plots import figures
from pipeline.stages import explain, report
from pipeline.task.classification import Classification
from pipeline.tracking import runs, store
from tests.conftest import toy_summary
from tests.stages.test_visualize import live_figures

CLASSES = Classification(
    toy_summary({"class_names": ["a", "b", "c"], "feature_names": ["x"], "image_shape": None})
)

# --- statistics on hand-made cases -------------------------------------------------------------


def test_additivity_error_and_importance_by_hand() -> None:
    values = np.array([[[1.0, -1.0], [2.0, 0.5]]])  # (1 sample, 2 features, 2 classes)
    base = np.array([0.5, 0.0])
    outputs = np.array([[3.5, -0.25]])
    assert trust.additivity_error(values, base, outputs).tolist() == [[0.0, 0.25]]
    # per-sample base values (n, classes) give the same answer
    assert trust.additivity_error(values, base[None], outputs).tolist() == [[0.0, 0.25]]
    assert trust.mean_abs_importance(values).tolist() == [[1.0, 2.0], [1.0, 0.5]]


def test_predicted_class_values_and_order() -> None:
    values = np.arange(12, dtype=float).reshape(2, 3, 2)  # (2 samples, 3 features, 2 classes)
    picked = trust.for_class(values, np.array([1, 0]))
    assert picked.tolist() == [[1, 3, 5], [6, 8, 10]]
    assert trust.importance_order(np.array([[0.1, -3.0, 2.0, 2.0]])).tolist() == [[1, 2, 3, 0]]


def _one_feature_model(x: np.ndarray) -> np.ndarray:
    """Logits [-x0, x0]: feature 0 alone decides the class; removal (x0 -> 0) ties -> class 0."""
    return np.stack([-x[:, 0], x[:, 0]], axis=1)


def test_removal_accuracy_and_faithfulness_area_on_a_one_feature_model() -> None:
    # 4 features, 2 samples per class; class 1 iff x0 > 0; the baseline (mean) has x0 = 0.
    X = np.array([[1, 5, 5, 5], [1, -5, 2, 0], [-1, 3, 3, 3], [-1, 0, 1, 2]], dtype=np.float32)
    y = np.array([1, 1, 0, 0])
    baseline = np.zeros(4, dtype=np.float32)
    first = np.tile([0, 1, 2, 3], (4, 1))  # feature 0 first (what a faithful explanation says)
    guided = trust.removal_accuracy(_one_feature_model, X, y, first, baseline, steps=4)
    # Removing x0 makes every class-1 sample wrong (tie -> class 0): accuracy 1 -> 0.5 at once.
    assert guided.tolist() == [1.0, 0.5, 0.5, 0.5, 0.5]
    # All 24 orders per sample: feature 0 is among the first j of 4 with probability j/4.
    all_orders = np.array([np.tile(p, (4, 1)) for p in itertools.permutations(range(4))])  # (24, 4, 4)
    random = trust.removal_accuracy(_one_feature_model, X, y, all_orders, baseline, steps=4).mean(axis=0)
    assert np.allclose(random, [1.0, 0.875, 0.75, 0.625, 0.5])
    fractions = trust.removal_fractions(4, 4)
    assert fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    # Gap [0, .375, .25, .125, 0] integrated over the removed fraction: 0.25 * 0.75 = 0.1875.
    assert trust.faithfulness_area(fractions, guided, random) == pytest.approx(0.1875)
    # An explanation that ranks feature 0 last is worse than random: negative area, mirrored.
    last = np.tile([1, 2, 3, 0], (4, 1))
    worst = trust.removal_accuracy(_one_feature_model, X, y, last, baseline, steps=4)
    assert worst.tolist() == [1.0, 1.0, 1.0, 1.0, 0.5]
    assert trust.faithfulness_area(fractions, worst, random) == pytest.approx(-0.1875)


def test_faithfulness_with_seeded_random_orders() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    X[:, 0] = np.where(np.arange(200) % 2, 1.0, -1.0)
    y = (X[:, 0] > 0).astype(int)
    attributions = np.zeros((200, 6))
    attributions[:, 0] = 1.0  # the explanation puts feature 0 first for every sample
    out = trust.faithfulness(
        _one_feature_model,
        X,
        y,
        attributions,
        np.zeros(6),
        steps=6,
        n_random=20,
        rng=np.random.default_rng(1),
    )
    assert out["guided"].tolist() == [1.0] + [0.5] * 6
    # Expected random curve 1 - 0.5 j/6 -> area = 0.5 * sum_{j=1..5}(j/6)/6 ... = 5/24 * 1 - ... ~ 0.2083
    expected = np.trapezoid(1 - 0.5 * np.arange(7) / 6 - out["guided"], out["fractions"])
    assert out["area"] == pytest.approx(expected, abs=0.02)
    again = trust.faithfulness(
        _one_feature_model,
        X,
        y,
        attributions,
        np.zeros(6),
        steps=6,
        n_random=20,
        rng=np.random.default_rng(1),
    )
    assert again["area"] == out["area"]  # seeded


def test_split_examples_and_extra_mistakes() -> None:
    y_true, y_pred = np.array([0, 1, 2, 3, 4]), np.array([1, 1, 0, 3, 0])
    groups = jobs.split_examples(y_true, y_pred, 2)
    assert groups["correct"].tolist() == [1, 3] and groups["wrong"].tolist() == [0, 2]
    wrong = CLASSES.wrong_rows(y_true, y_pred)
    assert wrong.tolist() == [0, 2, 4]
    # Mistakes of the whole test split (rows 0, 2, 4) not already explained (rows 0, 1): 2 then 4.
    assert core.extra_mistakes(wrong, np.array([0, 1]), 5).tolist() == [2, 4]
    assert core.extra_mistakes(wrong, np.array([0, 1]), 1).tolist() == [2]
    assert core.extra_mistakes(wrong, np.array([0, 1]), -3).tolist() == []


def test_classification_explains_the_predicted_class_and_shows_mistakes_first() -> None:
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5], [0.0, 0.2, 0.1]])
    assert CLASSES.prediction_of(logits).tolist() == [1, 0, 1]
    assert CLASSES.explained_outputs(logits, np.arange(3)).tolist() == [1, 0, 1]
    y_true, y_pred = np.array([0, 1, 2, 3, 4, 5]), np.array([0, 2, 2, 0, 4, 1])
    assert CLASSES.pick_examples(y_true, y_pred, 4).tolist() == [1, 3, 0, 2]  # 2 of 3 mistakes, then right
    assert CLASSES.pick_examples(y_true, y_pred, 9).tolist() == [1, 3, 5, 0, 2, 4]
    assert CLASSES.removal_score() is trust.ACCURACY


def test_rank_agreement_matches_scipy_with_ties() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(30, 12)).astype(float)  # many ties
    b = rng.integers(0, 5, size=(30, 12)).astype(float)
    a[3] = 2.0  # a constant row: no ranking
    rho = similarity.rank_agreement(a, b)
    expected = [
        spearmanr(x, y).statistic if i != 3 else np.nan for i, (x, y) in enumerate(zip(a, b, strict=True))
    ]
    np.testing.assert_allclose(rho, expected, atol=1e-12)
    assert np.isnan(rho[3])


def test_rank_agreement_known_answers() -> None:
    a = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [0.1, 0.3, 0.2, 0.4], [1.0, 1.0, 1.0, 1.0]])
    b = np.array([[10.0, 20.0, 30.0, 40.0], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    rho = similarity.rank_agreement(a, b)
    assert rho[0] == pytest.approx(1.0)  # same order, different scale
    assert rho[1] == pytest.approx(-1.0)  # reversed
    assert rho[2] == pytest.approx(1 - 6 * 2 / (4 * 15))  # one adjacent swap: 0.8
    assert np.isnan(rho[3])  # a constant row has no ranking
    summary = trust.summarize(rho)
    assert summary["n"] == 3
    assert summary["median"] == pytest.approx(0.8)
    assert summary["mean"] == pytest.approx((1 - 1 + 0.8) / 3)


def test_summarize_quantiles() -> None:
    s = trust.summarize(np.linspace(0, 1, 11))
    assert (s["mean"], s["median"], s["q10"], s["q90"]) == pytest.approx((0.5, 0.5, 0.1, 0.9))
    assert s["q25"] == pytest.approx(0.25) and s["q75"] == pytest.approx(0.75)


# --- figures ------------------------------------------------------------------------------------


def _drawn(fig: Any) -> bool:
    return any(ax.has_data() or ax.images or ax.collections for ax in fig.axes)


def test_attribution_figures_draw_and_close() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(12, 5, 3))
    data = rng.normal(size=(12, 5))
    names = [f"f{i}" for i in range(5)]
    made = [
        figs.beeswarm(values, data, names, ["a", "b", "c"]),
        figs.waterfalls(values[:3, :, 0], np.zeros(3), data[:3], names, ["x", "y", "z"], max_display=3),
        figs.feature_importance_bars(np.abs(values).mean(axis=0).T, names, ["a", "b", "c"]),
        figs.faithfulness_curves(np.linspace(0, 1, 5), np.linspace(1, 0, 5), np.ones(5), np.zeros(5)),
        figs.rank_agreement_hist(np.array([0.9, 0.8, np.nan, -0.2])),
        figs.class_importance_maps(np.abs(rng.normal(size=(3, 4))), (2, 2), ["a", "b", "c"]),
        figs.example_maps(data[:2, :4], values[:2, :4, 0], (2, 2), ["p", "q"]),
    ]
    assert [fig for fig in made if not _drawn(fig)] == []
    # The beeswarm has one panel per class (plus its colour bar).
    assert [ax.get_title() for ax in made[0].axes[:3]] == ["class a", "class b", "class c"]
    del made  # the test's own hold on them: once it is dropped, none may be left alive
    assert live_figures() == []


# --- the stage ----------------------------------------------------------------------------------

TRUST_KEYS = {
    "additivity_max_error",
    "additivity_mean_error",
    "faithfulness_area",
    "faithfulness_acc_full",
    "ig_spearman_mean",
    "ig_spearman_median",
    "ig_spearman_q10",
    "ig_spearman_q90",
    "ig_completeness_max_error",
    "explainer_seconds",
}


def test_run_records_additivity_and_trust(small_run) -> None:  # type: ignore[no-untyped-def]
    cfg, results = small_run
    metrics = json.loads(Path(cfg.paths.explain_metrics).read_text())
    assert set(metrics) >= TRUST_KEYS
    assert metrics["n_samples"] == 24 and metrics["n_background"] == 20
    assert metrics["additivity_max_error"] < 1e-3
    assert 0 < metrics["faithfulness_area"] < 1
    assert (
        -1 <= metrics["ig_spearman_q10"] <= metrics["ig_spearman_median"] <= metrics["ig_spearman_q90"] <= 1
    )
    # The MLP's DeepSHAP values come from the closed form, and the file and the report say so.
    assert (
        json.loads(Path(cfg.paths.explain_metrics).read_text())["path"]
        == "closed form (pipeline.explain.fast_deep)"
    )
    assert "explainer (closed form (pipeline.explain.fast_deep))" in Path(cfg.paths.report).read_text()
    shap = np.load(layout.shap_file(cfg))
    assert shap["values"].shape == (24, 64, 10)
    assert shap["base"].shape == (24, 10)
    assert shap["importance"].shape == (10, 64)
    assert shap["ig_values"].shape == (24, 64) and shap["ig_spearman"].shape == (24,)
    figures = {p.stem for p in layout.figure_dir(cfg.paths.explain).glob("*.png")}
    assert {
        "class_importance",
        "examples_correct",
        "examples_wrong",
        "faithfulness",
        "ig_agreement",
        "feature_importance",
    } <= figures
    # The same numbers reached MLflow, prefixed, and the figures are the run's artifacts.
    from mlflow import MlflowClient

    run = runs.load_run(layout.run_file(cfg))
    client = MlflowClient(run.tracking_uri)
    logged = client.get_run(run.run_id).data.metrics
    assert logged["shap_faithfulness_area"] == pytest.approx(metrics["faithfulness_area"])
    assert logged["shap_ig_spearman_median"] == pytest.approx(metrics["ig_spearman_median"])
    artifacts = {Path(a.path).stem for a in client.list_artifacts(run.run_id, "explain")}
    assert figures <= artifacts


def test_report_explains_how_far_to_trust(small_run) -> None:  # type: ignore[no-untyped-def]
    cfg, _ = small_run
    html = Path(cfg.paths.report).read_text()
    assert "How far to trust this explanation" in html and "Verdict:" in html
    for fig in ("faithfulness", "ig_agreement", "examples_correct", "examples_wrong"):
        assert f'id="fig-{fig}"' in html
        assert figures.spec(fig).caption[:40] in html.replace("&#39;", "'")


def test_trust_summary_verdicts() -> None:
    good = report.trust_summary(
        {"additivity_max_error": 1e-6, "faithfulness_area": 0.4, "ig_spearman_median": 0.9}
    )
    assert good["grades"] == {"additivity": 2, "faithfulness": 2, "agreement": 2}
    assert good["verdict"].startswith("Trust it:")
    narrow = report.trust_summary(
        {"additivity_max_error": 0.05, "faithfulness_area": 0.4, "ig_spearman_median": 0.9}
    )
    assert narrow["verdict"].startswith("Trust it with care") and "only approximately" in str(
        narrow["readings"]
    )
    unfaithful = report.trust_summary(
        {"additivity_max_error": 1e-6, "faithfulness_area": 0.01, "ig_spearman_median": 0.9}
    )
    assert unfaithful["verdict"].startswith("Do not trust it")
    no_agreement = report.trust_summary(
        {"additivity_max_error": 1e-6, "faithfulness_area": 0.3, "ig_spearman_median": float("nan")}
    )
    assert no_agreement["grades"]["agreement"] == 0


def _tabular_run(make_cfg, explainer: str, *options: str):  # type: ignore[no-untyped-def]
    """A synthetic tabular dataset in the prepare layout, a small trained MLP and a real MLflow run."""
    cfg = make_cfg(
        f"explain={explainer}",
        "explain.n_samples=30",
        "explain.n_background=20",
        "explain.n_examples=3",
        *options,
    )
    rng = np.random.default_rng(0)
    names = ["age", "income", "debt", "noise"]

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        X = rng.normal(size=(n, 4)).astype(np.float32)
        return X, (X[:, 1] - X[:, 2] > 0).astype(np.int64)

    (Xtr, ytr), (Xva, yva), (Xte, yte) = split(120), split(30), split(40)
    io.write_arrays(
        layout.data_file(cfg),
        X_train=Xtr, y_train=ytr, X_val=Xva, y_val=yva, X_test=Xte, y_test=yte, X_test_raw=Xte * 10 + 50,
    )  # fmt: skip
    io.write_json(
        layout.summary_file(cfg),
        {"dataset": "synthetic", "n_features": 4, "n_classes": 2, "feature_names": names,
         "class_names": ["no", "yes"], "image_shape": None},
    )  # fmt: skip
    torch.manual_seed(0)
    net = model.MLP(4, 2, hidden_sizes=[16], dropout=0.0)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(torch.from_numpy(Xtr)), torch.from_numpy(ytr)).backward()
        opt.step()
    model.save(net.eval(), layout.model_file(cfg))
    uri = str(cfg.tracking.uri)
    experiment = store.ensure_experiment(uri, "glassnet")
    run_id = store.client(uri).create_run(experiment).info.run_id
    io.write_json(layout.run_file(cfg), runs.RunInfo(uri, "glassnet", experiment, run_id, "").to_dict())
    return cfg


@pytest.mark.parametrize("explainer", ["deep", "kernel"])
def test_tabular_run_draws_beeswarm_waterfall_and_bar(make_cfg, explainer: str) -> None:  # type: ignore[no-untyped-def]
    cfg = _tabular_run(make_cfg, explainer)
    stale = layout.figure_dir(cfg.paths.explain) / "examples_wrong.png"  # from an earlier image run
    io.write_bytes(stale, b"old")
    metrics = explain.run(cfg)
    assert metrics["additivity_max_error"] < 1e-4
    # Income and debt decide the label: removing them first hurts far more than random removal.
    assert metrics["faithfulness_area"] > 0.15
    assert metrics["ig_spearman_median"] > 0.5
    figures = {p.stem for p in layout.figure_dir(cfg.paths.explain).glob("*.png")}
    checks = {"sanity_curve", "surrogate_fidelity", "surrogate_tree", "surrogate_classes"}  # no maps: a table
    assert figures == {"beeswarm", "waterfall", "feature_importance", "faithfulness", "ig_agreement", *checks}
    importance = np.load(layout.shap_file(cfg))["importance"].sum(axis=0)
    assert set(np.argsort(importance)[-2:]) == {1, 2}  # income, debt


def test_unknown_option_stops_the_stage_before_any_work(small_run) -> None:  # type: ignore[no-untyped-def]
    cfg, _ = small_run
    from omegaconf import OmegaConf

    bad = OmegaConf.create(OmegaConf.to_container(cfg))  # type: ignore[arg-type]  # not struct: may add keys
    bad.explain.options.nsamples = 10  # deep takes no options
    bad.paths.prepare = "nowhere"  # a stage that read its inputs first would fail on these instead
    with pytest.raises(ConfigError, match=r"explain.options.nsamples.*deep"):
        explain.run(bad)  # type: ignore[arg-type]
    bad.explain.options = {"_target_": "pipeline.explain.explainers.lime_shap", "_partial_": True}
    with pytest.raises(ConfigError, match=r"explain.options._target_"):
        explain.run(bad)  # type: ignore[arg-type]


def test_tabular_figures_reach_the_report_with_captions(make_cfg) -> None:  # type: ignore[no-untyped-def]
    cfg = _tabular_run(make_cfg, "permutation", "explain.options.max_evals=20")
    explain.run(cfg)
    embedded = report.section_figures("explanation", {"explain": layout.figure_dir(cfg.paths.explain)})
    assert [f.id for f in embedded] == [
        "beeswarm",
        "feature_importance",
        "waterfall",
        "faithfulness",
        "ig_agreement",
    ]
    assert all(len(f.caption) > 200 and f.alt for f in embedded)


def test_sample_sizes_are_upper_bounds_and_say_so() -> None:
    sample_sizes = core.sample_sizes

    assert sample_sizes(360, 1257, 200, 100) == (200, 100, [])
    used_samples, used_background, notes = sample_sizes(114, 364, 200, 400)
    assert (used_samples, used_background) == (114, 364)
    assert notes == [
        "explain.n_samples = 200 is more than the 114 rows of the test split: used all 114",
        "explain.n_background = 400 is more than the 364 rows of the train split: used all 364",
    ]
