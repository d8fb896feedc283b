"""The datasets shipped with scikit-learn: nothing to download, nothing to configure.

data=digits          1,797 handwritten digits, 8x8 pixels (the default)
data=breast_cancer   569 tumours, 30 named features, malignant or benign
data=diabetes        442 patients, 10 features, disease progression (a regression)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.data.dataset import Dataset
from pipeline.task import REGRESSION

DIABETES_FEATURES = ("age", "sex", "bmi", "bp", "tc", "ldl", "hdl", "tch", "ltg", "glu")


def from_bunch(name: str, bunch: Any, **meaning: Any) -> Dataset:
    """A scikit-learn ``Bunch`` as a ``Dataset``: float32 features named by the bunch's
    ``feature_names``, and int64 labels named by its ``target_names`` (float32 values with
    ``task=REGRESSION``); ``meaning`` sets or overrides the other ``Dataset`` fields."""
    fields: dict[str, Any] = {
        "feature_names": [str(f) for f in getattr(bunch, "feature_names", [])],
        "class_names": [str(c) for c in getattr(bunch, "target_names", [])],
        **meaning,
    }
    target_type = np.float32 if fields.get("task") == REGRESSION else np.int64
    return Dataset(name=name, X=bunch.data.astype(np.float32), y=bunch.target.astype(target_type), **fields)


def load_digits() -> Dataset:
    """scikit-learn's 1,797 handwritten digits, 8x8 pixels with values 0-16."""
    from sklearn import datasets

    return from_bunch(
        "digits",
        datasets.load_digits(),
        feature_names=[f"pixel_{r}_{c}" for r in range(8) for c in range(8)],
        image_shape=(8, 8),
    )


def load_breast_cancer() -> Dataset:
    """scikit-learn's Wisconsin diagnostic breast cancer table: 569 tumours, 30 named features."""
    from sklearn import datasets

    return from_bunch("breast_cancer", datasets.load_breast_cancer())


def load_diabetes() -> Dataset:
    """scikit-learn's diabetes table in its original units: 442 patients, 10 features (age, sex,
    body mass index, blood pressure and six blood serum measurements: total cholesterol, LDL, HDL,
    total/HDL cholesterol, log triglycerides, glucose); the target is disease progression one year
    after baseline (25 to 346). A regression task."""
    from sklearn import datasets

    return from_bunch(
        "diabetes",
        datasets.load_diabetes(scaled=False),  # raw units: the surrogate's rules read "bmi > 27.5"
        feature_names=list(DIABETES_FEATURES),  # scikit-learn's s1..s6 say less
        task=REGRESSION,
        target_name="progression",
    )
