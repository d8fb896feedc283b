"""2-D projections (PCA, t-SNE) of a layer's view of the data, and how well they separate the classes
(or, for a regression, order the target).

Arrays in, arrays out: no torch here.
"""

from __future__ import annotations

import contextlib
import io
import re
from typing import Any

import numpy as np

from pipeline import progress, stats

TSNE_ITERATIONS = 500


def project_all(
    jobs: dict[tuple[str, str], np.ndarray], *, seed: int, perplexity: float, pca_dims: int
) -> dict[tuple[str, str], np.ndarray]:
    """The 2-D projection of each (method, name) -> rows by PCA or t-SNE (PCA-reduced to
    ``pca_dims`` first)."""
    return {
        key: _project(np.asarray(X, dtype=np.float64), key[0], seed, perplexity, pca_dims, key[1])
        for key, X in jobs.items()
    }


class TsneIterations(io.TextIOBase):
    """A text stream for t-SNE's verbose report: each "Iteration N" it reads moves ``shown`` to N
    (scikit-learn's TSNE reports every 50 iterations and has no callback); the text is dropped."""

    def __init__(self, shown: Any) -> None:
        self.shown = shown

    def write(self, text: str) -> int:
        for found in re.finditer(r"Iteration (\d+)", text):
            self.shown.update(max(0, min(int(found.group(1)), self.shown.total) - self.shown.n))
        return len(text)


def _project(
    X: np.ndarray, method: str, seed: int, perplexity: float, pca_dims: int, name: str
) -> np.ndarray:
    from sklearn.decomposition import PCA

    if method == "pca":
        return np.asarray(PCA(n_components=2, random_state=seed).fit_transform(X))
    from sklearn.manifold import TSNE

    if X.shape[1] > pca_dims:
        X = PCA(n_components=min(pca_dims, len(X)), random_state=seed).fit_transform(X)
    # sklearn requires perplexity < rows; (rows - 1) / 3 keeps three neighbourhoods' worth of points.
    perplexity = min(perplexity, max(1.0, (len(X) - 1) / 3))
    with progress.bar(TSNE_ITERATIONS, f"t-SNE {name}".strip(), "iter") as shown:
        verbose = 0 if shown.disable else 2
        tsne = TSNE(
            n_components=2,
            perplexity=perplexity,
            init="pca",
            random_state=seed,
            max_iter=TSNE_ITERATIONS,
            verbose=verbose,
        )
        with contextlib.redirect_stdout(TsneIterations(shown)) if verbose else contextlib.nullcontext():
            points = np.asarray(tsne.fit_transform(X))
        shown.update(shown.total - shown.n)  # it may stop early, converged
    return points


def panels(
    jobs: dict[tuple[str, str], np.ndarray],
    labels: np.ndarray,
    *,
    seed: int,
    perplexity: float,
    pca_dims: int,
    regression: bool = False,
) -> dict[str, Any]:
    """The 2-D projections of ``jobs`` ((method, source) -> rows) and how well they arrange
    ``labels`` (``separation``, by name): the silhouette of the classes per projection
    (``silhouette_<source>_<method>``), or for a regression (``labels`` the target's values) the
    neighbour R² of the target (``target_knn_r2_<source>_<method>``, see stats.neighbour_r2)."""
    projections = project_all(jobs, seed=seed, perplexity=perplexity, pca_dims=pca_dims)
    score = SEPARATION[regression][1]
    separation = {
        separation_name(source, method, regression=regression): score(points, labels)
        for (method, source), points in projections.items()
    }
    return {"projections": projections, "separation": separation}


# regression? -> (metric name prefix, score of (points, labels))
SEPARATION = {False: ("silhouette", stats.silhouette), True: ("target_knn_r2", stats.neighbour_r2)}


def separation_name(source: str, method: str, *, regression: bool = False) -> str:
    """The metric name ``panels`` gives the score of one projection."""
    return f"{SEPARATION[regression][0]}_{source}_{method}"
