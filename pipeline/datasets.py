"""Dataset loaders. Each returns a ``Dataset``; ``conf/data/*.yaml`` names one by ``_target_``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Dataset:
    """Features (n, d) float32, integer labels (n,), and what the columns and classes mean."""

    name: str
    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    class_names: list[str]
    # (height, width) when each row is a flattened image, else None.
    image_shape: tuple[int, ...] | None = None


def load_digits() -> Dataset:
    """scikit-learn's 1,797 handwritten digits, 8x8 pixels with values 0-16."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    return Dataset(
        name="digits",
        X=bunch.data.astype(np.float32),
        y=bunch.target.astype(np.int64),
        feature_names=[f"pixel_{r}_{c}" for r in range(8) for c in range(8)],
        class_names=[str(c) for c in bunch.target_names],
        image_shape=(8, 8),
    )
