"""What every loader returns (``Dataset``), and the scaler for pixel images (``PixelScale``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import ConfigError
from pipeline.task import CLASSIFICATION


@dataclass
class Dataset:
    """Features (n, d) float32, the target (n,): integer labels (classification) or real values
    in the target's units (regression), and what the columns and classes mean."""

    name: str
    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    class_names: list[str]  # [] for regression
    # (height, width) when each row is a flattened image, else None.
    image_shape: tuple[int, ...] | None = None
    # Rows that form the dataset's official test set (MNIST's t10k files), else None:
    # then prepare draws a stratified test split of data.test_size.
    test_rows: np.ndarray | None = None
    # Where the rows came from, for messages about the splits (the files of MNIST's official split).
    source: str = ""
    # The file or folder the rows were read from (the run's MLflow dataset source); "" when a
    # loader reads none of the user's files (scikit-learn's bundled sets): then the loader is named.
    uri: str = ""
    task: str = CLASSIFICATION
    # The target's name (a regression target's column, shown with the predictions); "" for classes.
    target_name: str = ""


class PixelScale:
    """A scikit-learn transformer that divides every feature by one ``max_value`` (255 for 8-bit
    images), as the tutorials do for MNIST: each pixel keeps its meaning (0 = background, 1 = full
    ink) and no pixel is blown up by its own rare spread (see ``data.scaler`` in the README)."""

    def __init__(self, max_value: float = 255.0) -> None:
        if not max_value > 0:
            raise ConfigError(
                f"Config key 'data.scaler.max_value' = {max_value} must be positive (e.g. 255)."
            )
        self.max_value = max_value

    def fit(self, X: np.ndarray, y: Any = None) -> PixelScale:
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float32) / np.float32(self.max_value)

    def fit_transform(self, X: np.ndarray, y: Any = None) -> np.ndarray:
        return self.transform(X)
