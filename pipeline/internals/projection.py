"""2-D projections (PCA, t-SNE) of a layer's view of the data, and how well they separate the classes
(or, for a regression, order the target): arrays in, arrays out."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline import progress

TSNE_ITERATIONS = 500


def project_all(
    jobs: dict[tuple[str, str], np.ndarray], *, seed: int, perplexity: float, pca_dims: int
) -> dict[tuple[str, str], np.ndarray]:
    """The 2-D projection of each (method, name) -> rows by PCA or t-SNE (PCA-reduced to
    ``pca_dims`` first)."""
    return {
        (method, name): project(X, method, seed=seed, perplexity=perplexity, pca_dims=pca_dims, name=name)
        for (method, name), X in jobs.items()
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


def project(
    X: np.ndarray, method: str, *, seed: int, perplexity: float, pca_dims: int, name: str = ""
) -> np.ndarray:
    """The 2-D projection (rows, 2) of the rows ``X`` by ``method``, "pca" or "tsne" (PCA-reduced to
    ``pca_dims`` first; its progress bar is named after ``name``)."""
    from sklearn.decomposition import PCA

    X = np.asarray(X, dtype=np.float64)
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
    score: Callable[[np.ndarray, np.ndarray], float],
    metric: str,
    seed: int,
    perplexity: float,
    pca_dims: int,
) -> tuple[dict[tuple[str, str], np.ndarray], dict[str, float]]:
    """The 2-D projections of ``jobs`` ((method, source) -> rows), and how well each arranges
    ``labels``: ``score(points, labels)`` (the silhouette of the classes, or a regression's neighbour R²
    of the target), by ``separation_name`` (``<metric>_<source>_<method>``)."""
    projections = project_all(jobs, seed=seed, perplexity=perplexity, pca_dims=pca_dims)
    separation = {
        separation_name(metric, source, method): score(points, labels)
        for (method, source), points in projections.items()
    }
    return projections, separation


def separation_name(metric: str, source: str, method: str) -> str:
    """The metric name ``panels`` gives the score of one projection."""
    return f"{metric}_{source}_{method}"
