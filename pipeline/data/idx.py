"""MNIST and other datasets in the IDX format (Fashion-MNIST, KMNIST: the same four files).

    data=mnist           the four IDX files in data.loader.folder (plain or .gz); nothing is downloaded

Every problem with a file raises ``DataError`` naming the file, what is wrong and what to do.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.data.dataset import Dataset
from pipeline.errors import DataError

IMAGES_MAGIC = 2051  # IDX header: 0x00000803 = unsigned bytes, 3 dimensions (n, rows, cols)
LABELS_MAGIC = 2049  # IDX header: 0x00000801 = unsigned bytes, 1 dimension (n,)
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"


def find_idx(folder: Path, name: str) -> Path | None:
    """``folder/name`` or, failing that, ``folder/name.gz``; None when neither exists."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return candidate
    return None


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when its name ends in ``.gz``."""
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
    raw = read_bytes(path)
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


Part = tuple[np.ndarray, np.ndarray]  # images (n, rows, cols), labels (n,)


def find_files(folder: str) -> dict[str, Path]:
    """The four files by role (``MNIST_FILES``), each plain or gzipped, or a DataError naming the
    missing ones and where to get them."""
    root = Path(folder)
    found = {key: find_idx(root, name) for key, name in MNIST_FILES.items()}
    missing = [MNIST_FILES[key] for key, path in found.items() if path is None]
    if missing:
        raise DataError(
            f"Expected the four MNIST IDX files {', '.join(MNIST_FILES.values())} (each plain or .gz) "
            f"in data.loader.folder='{folder}' ({root.resolve()}); missing: {', '.join(missing)}. "
            f"glassnet does not download them: fetch them from {MNIST_URL} (or any MNIST mirror) "
            "into that folder, or point data.loader.folder=... at where they are."
        )
    return {key: path for key, path in found.items() if path is not None}


def read_parts(paths: dict[str, Path]) -> dict[str, Part]:
    """The train and test files' images and labels, checked to agree in count and image size."""
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
    return parts


def keep_first(parts: dict[str, Part], limit: int) -> dict[str, Part]:
    """The first rows of each part, ``limit`` in all, in the parts' proportion."""
    if limit < 2:
        raise DataError(f"data.loader.limit={limit} keeps too few MNIST rows; use at least 100 or null.")
    n_train, n_test = len(parts["train"][1]), len(parts["test"][1])
    keep_test = max(1, round(limit * n_test / (n_train + n_test)))
    keep = {"train": max(1, limit - keep_test), "test": keep_test}
    return {split: (imgs[: keep[split]], labs[: keep[split]]) for split, (imgs, labs) in parts.items()}


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
    paths = find_files(folder)
    parts = read_parts(paths)
    if limit is not None:
        parts = keep_first(parts, limit)
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
        uri=str(Path(folder).resolve()),
    )
