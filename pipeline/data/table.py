"""A user's own table, CSV or Parquet: which columns, what to do with empty cells, which task
the target implies, and how the target and the text columns become numbers.

    data=csv             data.loader.path=my.csv data.loader.target=label (Parquet by its suffix)

Every problem with the file or a column raises ``DataError`` saying which file or column, what is
wrong and what to do.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.dataset import Dataset
from pipeline.errors import ConfigError, DataError
from pipeline.task import CLASSIFICATION, REGRESSION, Kind


class Missing(str, enum.Enum):
    """What to do with empty cells (``data.loader.missing``)."""

    error = "error"  # stop and say which columns have them (the default: nothing silent)
    drop = "drop"  # drop every row with an empty cell in the target or a used feature
    mean = "mean"  # numeric: the column's mean; categorical: a "<missing>" category of its own


PARQUET_SUFFIXES = (".parquet", ".pq")


def read_table(path: str | Path, sep: str = ",") -> Any:
    """A CSV or Parquet file as a pandas DataFrame with at least one row and text column names, or a
    DataError saying why it cannot be read."""
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
            frame = pd.read_parquet(p)
        else:
            with open(p, "rb") as fh:
                head = fh.read(4096)
            if b"\x00" in head:  # text never holds NUL bytes; pandas would report a baffling parse error
                raise DataError(
                    f"Data file '{path}' is a binary file (it contains NUL bytes), not CSV text. "
                    "Save it as CSV (UTF-8), or as Parquet with a .parquet suffix."
                )
            frame = pd.read_csv(p, sep=sep)
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
    if len(frame) == 0:
        raise DataError(f"Data file '{path}' has a header but no data rows.")
    frame.columns = [str(c) for c in frame.columns]
    return frame


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
    policy = missing_policy(missing)
    frame = read_table(path, sep)
    used = feature_columns(list(frame.columns), target, features, split, path)
    frame = empty_cells(frame[[*used, target, *([split] if split else [])]], target, policy, path)
    test_rows = None if split is None else split_rows(frame[split], split, path)
    chosen = choose_task(frame[target], task)
    y, class_names = target_values(frame[target], chosen, target, path)
    X, names = encode_features(frame, used, policy, max_categories, path)
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


def missing_policy(missing: str) -> Missing:
    """``data.loader.missing`` as a ``Missing``, or a DataError listing the policies."""
    try:
        return Missing(missing)
    except ValueError as err:
        raise DataError(
            f"data.loader.missing={missing!r} is not a missing-value policy; "
            f"use one of {', '.join(m.value for m in Missing)}."
        ) from err


def feature_columns(
    columns: list[str], target: str, features: Sequence[str] | None, split: str | None, path: str
) -> list[str]:
    """The feature columns: ``features``, or every column but the target and the split column;
    each named column must exist, and none may play two parts."""
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
    return used


def empty_cells(frame: Any, target: str, policy: Missing, path: str) -> Any:
    """The rows to use under ``policy``: empty cells are an error, or their rows are dropped; an
    empty target cannot be filled (``mean`` fills the features later, in ``encode_column``)."""
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
    return frame


def choose_task(values: Any, task: str | None) -> str:
    """The configured ``task``, checked, or the one the target column implies."""
    try:
        return Kind(task).value if task is not None else infer_task(values)
    except ValueError as err:
        raise ConfigError(f"Config key 'task' = {task!r} is not one of classification, regression.") from err


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


def target_values(values: Any, task: str, column: str, path: str) -> tuple[np.ndarray, list[str]]:
    """The target column as the task needs it: float32 values (regression, no class names) or
    integer labels and their class names (classification, at least two)."""
    if task == REGRESSION:
        return regression_target(values, column, path), []
    y, class_names = class_labels(values, column, path)
    if len(class_names) < 2:
        raise DataError(
            f"Target column '{column}' in '{path}' has a single value ({class_names[0]!r}); "
            "a classifier needs at least two classes."
        )
    return y, class_names


def regression_target(values: Any, column: str, path: str) -> np.ndarray:
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


def class_labels(values: Any, column: str, path: str) -> tuple[np.ndarray, list[str]]:
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


def encode_features(
    frame: Any, used: list[str], policy: Missing, max_categories: int, path: str
) -> tuple[np.ndarray, list[str]]:
    """The feature columns side by side as float64 (n, d), and the name of each of the d columns."""
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for column in used:
        block, block_names = encode_column(frame[column], column, policy, max_categories, path)
        blocks.append(block)
        names.extend(block_names)
    return np.concatenate(blocks, axis=1), names


def encode_column(
    values: Any, column: str, policy: Missing, max_categories: int, path: str
) -> tuple[np.ndarray, list[str]]:
    """One column as numbers (n, k) and their k names: booleans and numbers as they are (empty
    cells filled with the mean under ``Missing.mean``), text one-hot, one column per value."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=np.float64)[:, None], [column]
    if pd.api.types.is_numeric_dtype(values):
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
        return numeric[:, None], [column]
    if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_timedelta64_dtype(values):
        raise DataError(
            f"Feature column '{column}' in '{path}' holds dates/times ({values.dtype}), which "
            "glassnet cannot use; derive numeric columns from it or leave it out of data.loader.features."
        )
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
    return encoded, [f"{column}={level}" for level in levels]


SPLIT_VALUES = ("train", "test")


def split_rows(values: Any, column: str, path: str) -> np.ndarray:
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
