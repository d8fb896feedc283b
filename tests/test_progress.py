"""Progress bars of long work: shown when asked (or on a terminal), quiet otherwise, and cutting the
work into pieces changes no result."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from pipeline import progress
from pipeline.errors import ConfigError
from pipeline.explain import explainers, trust
from pipeline.internals import projection
from pipeline.nets import predict
from tests.explain.test_explainers import _tiny_mlp


def bar_text(err: str) -> list[str]:
    """The states a tqdm bar drew (it redraws in place with carriage returns)."""
    return [part.strip() for part in err.replace("\r", "\n").splitlines() if part.strip()]


def test_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, expected in (
        ("", "auto"),
        ("auto", "auto"),
        ("1", "always"),
        ("Always", "always"),
        ("0", "never"),
    ):
        monkeypatch.setenv(progress.VARIABLE, value)
        assert progress.mode() == expected
    monkeypatch.delenv(progress.VARIABLE)
    assert progress.mode() == "auto"
    monkeypatch.setenv(progress.VARIABLE, "loud")
    with pytest.raises(ConfigError, match=r"GLASSNET_PROGRESS='loud' is not one of auto, always"):
        progress.mode()


def test_chunks_cover_the_rows_in_order() -> None:
    assert [(s.start, s.stop) for s in progress.chunks(10, 4)] == [(0, 2), (2, 5), (5, 8), (8, 10)]
    assert [(s.start, s.stop) for s in progress.chunks(3, 100)] == [(0, 1), (1, 2), (2, 3)]
    assert list(progress.chunks(0, 5)) == []


@pytest.mark.parametrize(
    ("name", "options"), [("kernel", {"nsamples": 40}), ("permutation", {"max_evals": 13}), ("partition", {})]
)
def test_row_by_row_explainers_show_progress_and_give_the_same_values(
    name: str, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    net, background, X = _tiny_mlp()
    target = f"pipeline.explain.explainers.{name}_shap"
    explainer = explainers.from_config({"_target_": target, "_partial_": True, **options}, 0)
    np.random.seed(0)  # kernel SHAP draws its coalitions from numpy's global generator
    whole, whole_base = explainer(net, background, X)
    assert capsys.readouterr().err == ""  # not a terminal: quiet
    monkeypatch.setenv(progress.VARIABLE, "always")
    monkeypatch.setattr(explainers, "PROGRESS_STEPS", 3)  # 7 rows in pieces of 2-3
    np.random.seed(0)
    values, base = explainer(net, background, X)
    assert np.allclose(values, whole, atol=1e-12) and np.allclose(base, whole_base, atol=1e-12)
    drawn = bar_text(capsys.readouterr().err)
    assert drawn[-1].startswith(f"SHAP ({name}): 100%") and "7/7" in drawn[-1]
    assert any("/7 [" in state and "<" in state for state in drawn[:-1])  # counts and time left meanwhile


def test_quiet_when_stderr_is_not_a_terminal_or_when_told(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    net, background, X = _tiny_mlp()
    for value in ("auto", "never"):  # pytest's captured stderr is not a terminal
        monkeypatch.setenv(progress.VARIABLE, value)
        explainers.kernel_shap(net, background, X, nsamples=40)
        trust.integrated_gradients(net, X, background.mean(axis=0), np.zeros(len(X), dtype=int), steps=4)
        assert capsys.readouterr().err == ""


def test_integrated_gradients_and_faithfulness_show_progress(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    net, background, X = _tiny_mlp()
    baseline, target = background.mean(axis=0), np.array([0, 1, 2, 0, 1, 2, 0])
    whole, whole_gap = trust.integrated_gradients(net, X, baseline, target, steps=16)
    monkeypatch.setenv(progress.VARIABLE, "always")
    monkeypatch.setattr(trust, "PROGRESS_STEPS", 4)
    monkeypatch.setattr(trust, "IG_PIECE_ROWS", 1)  # 7 rows in 4 pieces, not one of 20 or more
    pieces, gap = trust.integrated_gradients(net, X, baseline, target, steps=16)
    assert np.allclose(pieces, whole, atol=1e-6) and np.allclose(gap, whole_gap, atol=1e-6)
    y = target
    trust.faithfulness(
        predict.logits_fn(net), X, y, X, baseline, steps=3, n_random=4, rng=np.random.default_rng(0)
    )
    drawn = bar_text(capsys.readouterr().err)
    assert any(s.startswith("Integrated Gradients: 100%") and "7/7" in s for s in drawn)
    assert any(s.startswith("faithfulness curves: 100%") and "5/5" in s for s in drawn)  # 1 + 4 orders


def test_tsne_shows_its_iterations_and_projects_the_same(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    X = np.random.default_rng(0).normal(size=(80, 5))
    job = {("tsne", ""): X}
    quiet = projection.project_all(job, seed=0, perplexity=10, pca_dims=50)[("tsne", "")]
    assert capsys.readouterr().err == "" and capsys.readouterr().out == ""
    monkeypatch.setenv(progress.VARIABLE, "always")
    shown = projection.project_all(job, seed=0, perplexity=10, pca_dims=50)[("tsne", "")]
    captured = capsys.readouterr()
    assert np.array_equal(quiet, shown)
    assert captured.out == ""  # scikit-learn's own report is read for the bar, not printed
    drawn = bar_text(captured.err)
    assert drawn[-1].startswith("t-SNE: 100%") and "500/500" in drawn[-1]
    # The bar follows scikit-learn's report of its iterations, every 50.
    from tqdm import tqdm

    shown = tqdm(total=500, disable=False, file=io.StringIO())
    reader = projection.TsneIterations(shown)
    reader.write("[t-SNE] Computed conditional probabilities in 0.004s\n")
    assert shown.n == 0
    reader.write("[t-SNE] Iteration 50: error = 54.0, gradient norm = 0.1 (50 iterations in 0.01s)\n")
    assert shown.n == 50
    reader.write("[t-SNE] Iteration 300: error = 1.0, gradient norm = 0.01 (50 iterations in 0.01s)\n")
    assert shown.n == 300
