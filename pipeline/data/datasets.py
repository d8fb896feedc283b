"""Dataset loaders. Each returns a ``Dataset``; ``conf/data/*.yaml`` names one by ``_target_``
and passes the rest of ``data.loader`` as keyword arguments.

    data=digits          scikit-learn's 8x8 digits (default)
    data=mnist           the real MNIST from its four IDX files in data.loader.folder
    data=breast_cancer   scikit-learn's Wisconsin breast cancer table (30 named features)
    data=diabetes        scikit-learn's diabetes table: a numeric target (regression)
    data=csv             your own CSV or Parquet file (data.loader.path, data.loader.target)

Every problem with a file or column raises ``DataError`` saying which file or
column, what is wrong and what to do.
"""

from __future__ import annotations

import enum
import gzip
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, DataError
from pipeline.task import CLASSIFICATION, REGRESSION, Kind


def check_batch_size(n_train: int, batch_size: int) -> None:
    """A train split smaller than one batch is almost surely a mistake (wrong file, wrong key)."""
    if n_train < batch_size:
        raise ConfigError(
            f"The train split has {n_train} rows, fewer than one batch (train.batch_size={batch_size}). "
            f"Lower train.batch_size (e.g. train.batch_size={max(1, n_train // 4)}) or use more data "
            "(data.loader.*, data.test_size, data.val_size)."
        )


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


def load_breast_cancer() -> Dataset:
    """scikit-learn's Wisconsin diagnostic breast cancer table: 569 tumours, 30 named features."""
    from sklearn.datasets import load_breast_cancer as sk_load_breast_cancer

    bunch = sk_load_breast_cancer()
    return Dataset(
        name="breast_cancer",
        X=bunch.data.astype(np.float32),
        y=bunch.target.astype(np.int64),
        feature_names=[str(f) for f in bunch.feature_names],
        class_names=[str(c) for c in bunch.target_names],
    )


DIABETES_FEATURES = ("age", "sex", "bmi", "bp", "tc", "ldl", "hdl", "tch", "ltg", "glu")


def load_diabetes() -> Dataset:
    """scikit-learn's diabetes table in its original units: 442 patients, 10 features (age, sex,
    body mass index, blood pressure and six blood serum measurements: total cholesterol, LDL, HDL,
    total/HDL cholesterol, log triglycerides, glucose); the target is disease progression one year
    after baseline (25 to 346). A regression task."""
    from sklearn.datasets import load_diabetes as sk_load_diabetes

    bunch = sk_load_diabetes(scaled=False)  # raw units: the surrogate's rules read "bmi > 27.5"
    return Dataset(
        name="diabetes",
        X=bunch.data.astype(np.float32),
        y=bunch.target.astype(np.float32),
        feature_names=list(DIABETES_FEATURES),
        class_names=[],
        task=REGRESSION,
        target_name="progression",
    )


# ---------------------------------------------------------------------------------------- MNIST

IMAGES_MAGIC = 2051  # IDX header: 0x00000803 = unsigned bytes, 3 dimensions (n, rows, cols)
LABELS_MAGIC = 2049  # IDX header: 0x00000801 = unsigned bytes, 1 dimension (n,)
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"


def _find_idx(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except IsADirectoryError as err:
        raise DataError(f"MNIST file '{path}' is a directory, not a file.") from err
    except PermissionError as err:
        raise DataError(f"MNIST file '{path}' cannot be read: permission denied.") from err
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(
            f"MNIST file '{path}' is not a readable gzip file ({err}); it is truncated or corrupt: "
            "download it again."
        ) from err


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """One IDX file (plain or gzipped) as a uint8 array: (n, rows, cols) images or (n,) labels.

    The header is a big-endian int32 magic number followed by one int32 per
    dimension; the data are unsigned bytes. Magic number and length are checked.
    """
    path = Path(path)
    raw = _read_bytes(path)
    n_dims = magic & 0xFF
    header = 4 + 4 * n_dims
    if len(raw) < 4:
        raise DataError(f"MNIST file '{path}' is truncated: {len(raw)} bytes, too short for an IDX header.")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise DataError(
            f"MNIST file '{path}' has magic number {found}, expected {magic} for an IDX {kind} file: "
            "it is not the right file, or it is corrupt."
        )
    if len(raw) < header:
        raise DataError(f"MNIST file '{path}' is truncated: {len(raw)} bytes, shorter than its header.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(
            f"MNIST file '{path}' is {problem}: its header announces shape {shape} "
            f"({expected:,} bytes) but it has {len(raw):,} bytes. Download it again."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_mnist(
    folder: str = "data/mnist",
    limit: int | None = None,
    official_split: bool = True,
    class_names: Sequence[str] | None = None,
) -> Dataset:
    """MNIST from the four standard IDX files in ``folder`` (each plain or ``.gz``).

    ``limit`` keeps the first rows of each file, ``limit`` in all, in the files'
    proportion (for quick runs). ``official_split`` keeps the t10k files as the
    test set; otherwise all rows are pooled and split like any dataset.
    ``class_names`` (default the digits 0-9) lets Fashion-MNIST and other IDX
    datasets in the same format name their classes.
    """
    root = Path(folder)
    found = {key: _find_idx(root, name) for key, name in MNIST_FILES.items()}
    missing = [MNIST_FILES[key] for key, path in found.items() if path is None]
    if missing:
        raise DataError(
            f"Expected the four MNIST IDX files {', '.join(MNIST_FILES.values())} (each plain or .gz) "
            f"in data.loader.folder='{folder}' ({root.resolve()}); missing: {', '.join(missing)}. "
            f"glassnet does not download them: fetch them from {MNIST_URL} (or any MNIST mirror) "
            "into that folder, or point data.loader.folder=... at where they are."
        )
    paths = {key: path for key, path in found.items() if path is not None}
    parts = {}
    for split in ("train", "test"):
        images = read_idx(paths[f"{split}_images"], IMAGES_MAGIC)
        labels = read_idx(paths[f"{split}_labels"], LABELS_MAGIC)
        if len(images) != len(labels):
            raise DataError(
                f"MNIST files '{paths[f'{split}_images']}' and '{paths[f'{split}_labels']}' disagree: "
                f"{len(images)} images but {len(labels)} labels."
            )
        parts[split] = (images, labels)
    if parts["train"][0].shape[1:] != parts["test"][0].shape[1:]:
        raise DataError(
            f"MNIST images in '{paths['train_images']}' are {parts['train'][0].shape[1:]} but those in "
            f"'{paths['test_images']}' are {parts['test'][0].shape[1:]}; they must have one size."
        )
    if limit is not None:
        if limit < 2:
            raise DataError(f"data.loader.limit={limit} keeps too few MNIST rows; use at least 100 or null.")
        n_train, n_test = len(parts["train"][1]), len(parts["test"][1])
        keep_test = max(1, round(limit * n_test / (n_train + n_test)))
        keep = {"train": max(1, limit - keep_test), "test": keep_test}
        parts = {split: (imgs[: keep[split]], labs[: keep[split]]) for split, (imgs, labs) in parts.items()}

    images = np.concatenate([parts["train"][0], parts["test"][0]])
    y = np.concatenate([parts["train"][1], parts["test"][1]]).astype(np.int64)
    names = [str(c) for c in class_names] if class_names is not None else [str(d) for d in range(10)]
    if y.max() >= len(names):
        raise DataError(
            f"MNIST labels go up to {int(y.max())} but there are {len(names)} class names; "
            "set data.loader.class_names to one name per class."
        )
    height, width = images.shape[1:]
    n_train = len(parts["train"][1])
    return Dataset(
        name="mnist",
        X=images.reshape(len(images), -1).astype(np.float32),
        y=y,
        feature_names=[f"pixel_{r}_{c}" for r in range(height) for c in range(width)],
        class_names=names,
        image_shape=(height, width),
        test_rows=np.arange(n_train, len(y)) if official_split else None,
        source=f"'{paths['train_labels']}' (train) and '{paths['test_labels']}' (test)",
        uri=str(root.resolve()),
    )


# ------------------------------------------------------------------------------ your own table


class Missing(str, enum.Enum):
    """What to do with empty cells (``data.loader.missing``)."""

    error = "error"  # stop and say which columns have them (the default: nothing silent)
    drop = "drop"  # drop every row with an empty cell in the target or a used feature
    mean = "mean"  # numeric: the column's mean; categorical: a "<missing>" category of its own


PARQUET_SUFFIXES = (".parquet", ".pq")


def read_table(path: str | Path, sep: str = ",") -> Any:
    """A CSV or Parquet file as a pandas DataFrame, or a DataError saying why it cannot be read."""
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise DataError(
            f"Data file data.loader.path='{path}' does not exist ({p.resolve()}); "
            "set data.loader.path to your CSV or Parquet file."
        )
    if p.is_dir():
        raise DataError(f"Data file data.loader.path='{path}' is a directory, not a file.")
    if p.stat().st_size == 0:
        raise DataError(f"Data file '{path}' is empty (0 bytes).")
    is_parquet = p.suffix.lower() in PARQUET_SUFFIXES
    try:
        if is_parquet:
            return pd.read_parquet(p)
        with open(p, "rb") as fh:
            head = fh.read(4096)
        if b"\x00" in head:  # text never holds NUL bytes; pandas would report a baffling parse error
            raise DataError(
                f"Data file '{path}' is a binary file (it contains NUL bytes), not CSV text. "
                "Save it as CSV (UTF-8), or as Parquet with a .parquet suffix."
            )
        return pd.read_csv(p, sep=sep)
    except DataError:
        raise
    except PermissionError as err:
        raise DataError(f"Data file '{path}' cannot be read: permission denied.") from err
    except pd.errors.EmptyDataError as err:
        raise DataError(f"Data file '{path}' is empty: it has no header row and no data.") from err
    except UnicodeDecodeError as err:
        raise DataError(
            f"Data file '{path}' is not a UTF-8 text CSV (byte {err.start}: {err.reason}); "
            "is it a binary file? Save it as CSV (UTF-8) or Parquet."
        ) from err
    except Exception as err:  # pandas/pyarrow parse errors have many types; all mean "malformed"
        kind = "Parquet" if is_parquet else "CSV"
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"Data file '{path}' is not a readable {kind} file: {first_line}") from err


# A numeric target with more distinct values than this is read as a quantity (regression) when
# ``task`` is not set: 20 classes is already more than any shipped dataset has.
MAX_INFERRED_CLASSES = 20


def infer_task(values: Any) -> str:
    """The task a target column implies: numbers with a non-integer value, or with more than
    ``MAX_INFERRED_CLASSES`` distinct values, are a quantity to regress; anything else is a class."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return CLASSIFICATION
    numbers = values.to_numpy(dtype=np.float64)
    finite = numbers[np.isfinite(numbers)]
    if np.any(np.mod(finite, 1) != 0) or len(np.unique(finite)) > MAX_INFERRED_CLASSES:
        return REGRESSION
    return CLASSIFICATION


def _regression_target(values: Any, column: str, path: str) -> np.ndarray:
    """A numeric target column as float32 values; text, infinite values or a single value raise."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        sample = next((v for v in values if isinstance(v, str)), values.iloc[0])
        raise DataError(
            f"Target column '{column}' in '{path}' holds text (e.g. {sample!r}), but task=regression "
            "needs numbers. Use task=classification for a categorical target, or choose a numeric "
            "data.loader.target."
        )
    numbers = values.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers)
    if bad.any():
        raise DataError(
            f"Target column '{column}' in '{path}' has {int(bad.sum())} non-finite value(s) (NaN or "
            f"infinite; first in data row {int(np.flatnonzero(bad)[0]) + 1}): a regression target must "
            "be a finite number in every row. Fix those cells, or leave them empty and use "
            "data.loader.missing=drop."
        )
    distinct = np.unique(numbers)
    if len(distinct) < 2:
        raise DataError(
            f"Target column '{column}' in '{path}' holds a single value ({distinct[0]:g}) in all "
            f"{len(numbers)} rows: there is nothing to predict. Choose another data.loader.target."
        )
    return numbers.astype(np.float32)


def _class_labels(values: Any, column: str, path: str) -> tuple[np.ndarray, list[str]]:
    """Map a target column to integer labels; class names are the sorted distinct values as strings."""
    import pandas as pd

    if pd.api.types.is_float_dtype(values) and not np.all(np.mod(values.to_numpy(), 1) == 0):
        sample = next(v for v in values if v % 1 != 0)
        n_distinct = values.nunique()
        raise DataError(
            f"Target column '{column}' in '{path}' holds real numbers (e.g. {sample}; {n_distinct} "
            "distinct values), but task=classification needs a category or an integer class. If it is "
            "a quantity to predict, use task=regression (or leave task unset: it is inferred); else "
            "bin the values into classes first, or choose another data.loader.target."
        )
    if pd.api.types.is_float_dtype(values):
        values = values.astype(np.int64)  # 1.0, 2.0: integers that pandas read as floats
    if not (
        pd.api.types.is_integer_dtype(values)
        or pd.api.types.is_bool_dtype(values)
        or pd.api.types.is_string_dtype(values)
        or isinstance(values.dtype, pd.CategoricalDtype)
        or values.dtype == object
    ):
        raise DataError(
            f"Target column '{column}' in '{path}' has type {values.dtype}, which cannot be a class "
            "label; use a column of categories or integers as data.loader.target."
        )
    classes = sorted(values.unique())
    codes = {value: i for i, value in enumerate(classes)}
    return values.map(codes).to_numpy(dtype=np.int64), [str(c) for c in classes]


def load_table(
    path: str,
    target: str,
    features: Sequence[str] | None = None,
    missing: str = "error",
    max_categories: int = 20,
    sep: str = ",",
    name: str | None = None,
    split: str | None = None,
    task: str | None = None,
) -> Dataset:
    """A user's CSV or Parquet table: one column is the target, the others (or ``features``) the inputs.

    ``task``: classification (the target is a class), regression (a number to predict) or None:
    inferred from the target (``infer_task``). The prepare stage passes the config's ``task``.

    ``split``: a column that marks each row ``train`` or ``test``: the table's own test set, used
    as it is (data.test_size is then unused; validation rows are drawn from the train rows).

    Numeric and boolean columns are used as they are; other columns are one-hot
    encoded (``colour=red``, ``colour=blue``) when they have at most
    ``max_categories`` distinct values, else rejected. Empty cells follow
    ``missing`` (see ``Missing``). Infinite values are always an error.
    """
    import pandas as pd

    try:
        policy = Missing(missing)
    except ValueError as err:
        raise DataError(
            f"data.loader.missing={missing!r} is not a missing-value policy; "
            f"use one of {', '.join(m.value for m in Missing)}."
        ) from err
    frame = read_table(path, sep)
    if len(frame) == 0:
        raise DataError(f"Data file '{path}' has a header but no data rows.")
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if target not in columns:
        raise DataError(
            f"Target column data.loader.target='{target}' is not in '{path}'; "
            f"its columns are: {', '.join(columns)}."
        )
    if split is not None and split not in columns:
        raise DataError(
            f"Split column data.loader.split='{split}' is not in '{path}'; its columns are: "
            f"{', '.join(columns)}. Name the column that marks rows train/test, or set it to null."
        )
    if split is not None and split == target:
        raise DataError(f"Column '{target}' is both data.loader.target and data.loader.split.")
    if features is None:
        used = [c for c in columns if c not in (target, split)]
    else:
        used = [str(f) for f in features]
        unknown = [f for f in used if f not in columns]
        if unknown:
            raise DataError(
                f"Feature column(s) {', '.join(repr(f) for f in unknown)} in data.loader.features are "
                f"not in '{path}'; its columns are: {', '.join(columns)}."
            )
        if target in used:
            raise DataError(f"Column '{target}' is both data.loader.target and in data.loader.features.")
        if split in used:
            raise DataError(f"Column '{split}' is both data.loader.split and in data.loader.features.")
    if not used:
        raise DataError(f"'{path}' has no feature columns besides the target '{target}'.")
    frame = frame[[*used, target, *([split] if split else [])]]

    # Empty cells.
    empty = frame.isna().sum()
    with_empty = {c: int(n) for c, n in empty.items() if n > 0}
    if with_empty and policy is Missing.error:
        listed = ", ".join(f"'{c}' ({n} rows)" for c, n in with_empty.items())
        raise DataError(
            f"Data file '{path}' has empty cells in column(s) {listed}. Choose a policy: "
            "data.loader.missing=drop (drop those rows) or data.loader.missing=mean (fill numeric "
            "columns with their mean, categorical ones with a '<missing>' category)."
        )
    if with_empty.get(target) and policy is not Missing.drop:
        raise DataError(
            f"Target column '{target}' in '{path}' is empty in {with_empty[target]} rows; a target "
            "value cannot be filled in. Use data.loader.missing=drop to drop those rows."
        )
    if policy is Missing.drop:
        frame = frame.dropna()
        if len(frame) == 0:
            raise DataError(f"No rows of '{path}' are left after dropping those with empty cells.")

    test_rows = None if split is None else _test_rows(frame[split], split, path)
    try:
        chosen = Kind(task).value if task is not None else infer_task(frame[target])
    except ValueError as err:
        raise ConfigError(f"Config key 'task' = {task!r} is not one of classification, regression.") from err
    if chosen == REGRESSION:
        y: np.ndarray = _regression_target(frame[target], target, path)
        class_names: list[str] = []
    else:
        y, class_names = _class_labels(frame[target], target, path)
        if len(class_names) < 2:
            raise DataError(
                f"Target column '{target}' in '{path}' has a single value ({class_names[0]!r}); "
                "a classifier needs at least two classes."
            )

    blocks: list[np.ndarray] = []
    names: list[str] = []
    for column in used:
        values = frame[column]
        if pd.api.types.is_bool_dtype(values):
            blocks.append(values.to_numpy(dtype=np.float64)[:, None])
            names.append(column)
        elif pd.api.types.is_numeric_dtype(values):
            numeric = values.to_numpy(dtype=np.float64)
            n_inf = int(np.isinf(numeric).sum())
            if n_inf:
                raise DataError(
                    f"Feature column '{column}' in '{path}' has {n_inf} infinite value(s) "
                    f"(first in data row {int(np.flatnonzero(np.isinf(numeric))[0]) + 1}); "
                    "replace them with finite numbers or leave the cells empty."
                )
            if policy is Missing.mean and np.isnan(numeric).any():
                numeric = np.where(np.isnan(numeric), np.nanmean(numeric), numeric)
            blocks.append(numeric[:, None])
            names.append(column)
        elif pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_timedelta64_dtype(values):
            raise DataError(
                f"Feature column '{column}' in '{path}' holds dates/times ({values.dtype}), which "
                "glassnet cannot use; derive numeric columns from it or leave it out of data.loader.features."
            )
        else:
            text = values.astype("string").fillna("<missing>")
            levels = sorted(text.unique())
            if len(levels) > max_categories:
                raise DataError(
                    f"Feature column '{column}' in '{path}' is not numeric and has {len(levels)} "
                    f"distinct values, more than data.loader.max_categories={max_categories}, so it "
                    "cannot be one-hot encoded (an identifier or free text?). Leave it out with "
                    "data.loader.features=[...], fix its values if they should be numbers, or raise "
                    "data.loader.max_categories."
                )
            encoded = np.stack([(text == level).to_numpy(dtype=np.float64) for level in levels], axis=1)
            blocks.append(encoded)
            names.extend(f"{column}={level}" for level in levels)

    X = np.concatenate(blocks, axis=1)
    return Dataset(
        name=name or Path(path).stem,
        X=X.astype(np.float32),
        y=y,
        feature_names=names,
        class_names=class_names,
        test_rows=test_rows,
        source=f"'{path}'" if split is None else f"'{path}' (split by column '{split}')",
        uri=str(Path(path).resolve()),
        task=chosen,
        target_name=target if chosen == REGRESSION else "",
    )


SPLIT_VALUES = ("train", "test")


def _test_rows(values: Any, column: str, path: str) -> np.ndarray:
    """The rows column ``column`` marks ``test`` (case and spaces aside); every row must say
    train or test, and each of the two must occur."""
    marks = values.astype("string").str.strip().str.lower()
    bad = marks[~marks.isin(SPLIT_VALUES)]
    if len(bad):
        shown = ", ".join(repr(v) for v in list(dict.fromkeys(values[bad.index].astype("string")))[:5])
        raise DataError(
            f"Split column '{column}' in '{path}' must say train or test in every row; "
            f"{len(bad)} rows say otherwise (e.g. {shown}). Fix those cells, or set data.loader.split=null "
            "to draw a stratified test split instead."
        )
    for needed in SPLIT_VALUES:
        if not (marks == needed).any():
            raise DataError(
                f"Split column '{column}' in '{path}' marks no row '{needed}': both a train and a test "
                "part are needed. Mark some rows, or set data.loader.split=null for a stratified split."
            )
    return np.flatnonzero((marks == "test").to_numpy())
