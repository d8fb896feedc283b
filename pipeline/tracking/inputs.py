"""The data a run used, as MLflow dataset inputs: one per split (train, validation, test), so
the MLflow UI's Datasets column shows which data a run read and when two runs read the same.

Each input carries the split's name, a digest (the MD5 of the prepared split's files, equal
exactly when the arrays are), the source the rows were read from (the CSV/Parquet file, the IDX
folder; or, for a loader that reads no file of the user's, the loader function) and MLflow's
tensor schema and profile of the arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.numpy_dataset import from_numpy

# Documented as mlflow.data.sources.LocalArtifactDatasetSource, but MLflow defines it at import
# time (one class per artifact repository), so type checkers cannot see it.
from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from pipeline.tracking import store
from pipeline.tracking.provenance import combined_md5

# MLflow's names for what a dataset was used for (the "mlflow.data.context" tag).
CONTEXTS = {"train": "training", "val": "validation", "test": "test"}


def split_digests(md5s: dict[str, str]) -> dict[str, str]:
    """{split: digest} from the prepared data folder's {file: MD5}: the combined MD5 of the
    split's X and y files (``provenance.file_md5s``)."""
    return {
        split: combined_md5({name: md5s[name] for name in (f"X_{split}.npy", f"y_{split}.npy")})
        for split in CONTEXTS
    }


def describe(
    folder: Path, dataset: str, uri: str | None, loader: str, digests: dict[str, str]
) -> list[dict[str, Any]]:
    """The splits in the prepared data ``folder`` as MLflow datasets (``Dataset.to_dict()``):
    ``dataset``'s name with the split's, its digest, schema and profile, and its source: ``uri``
    (a local file or folder) if given, else the ``loader`` function's dotted name."""
    source = LocalArtifactDatasetSource(uri) if uri else CodeDatasetSource(tags={"loader": loader})
    described = []
    for split in CONTEXTS:
        # Memory maps: the schema and profile need only the arrays' dtype and shape.
        features = np.load(folder / f"X_{split}.npy", mmap_mode="r")
        targets = np.load(folder / f"y_{split}.npy", mmap_mode="r")
        found = from_numpy(
            features, source=source, targets=targets, name=f"{dataset}-{split}", digest=digests[split]
        )
        described.append({"context": CONTEXTS[split], **found.to_dict()})
    return described


def log_splits(
    uri: str,
    run_id: str,
    folder: Path,
    dataset: str,
    source: str | None,
    loader: str,
    digests: dict[str, str],
) -> None:
    """Log the prepared splits in ``folder`` to run ``run_id`` as its dataset inputs (see describe)."""
    inputs = []
    for entry in describe(folder, dataset, source, loader, digests):
        context = entry.pop("context")
        inputs.append(DatasetInput(Dataset(**entry), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    store.client(uri).log_inputs(run_id, datasets=inputs)
