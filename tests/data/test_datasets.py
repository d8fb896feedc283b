"""Dataset loaders: MNIST from IDX files the tests write in the real format, the breast
cancer table, a user's CSV/Parquet, and each of them through the whole pipeline."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from pipeline import layout
from pipeline.config import Config
from pipeline.data import bundled, idx, split
from pipeline.data.batch_size import check_batch_size
from pipeline.data.dataset import Dataset, PixelScale
from pipeline.data.idx import IMAGES_MAGIC, LABELS_MAGIC, MNIST_FILES
from pipeline.data.table import infer_task, load_table
from pipeline.errors import ConfigError, DataError
from pipeline.stages import prepare

# ------------------------------------------------------------------------------------ IDX files


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """``array`` (uint8) in the IDX format: big-endian magic, one int32 per dimension, the bytes."""
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def synthetic_mnist(n: int, seed: int = 0, side: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of ``side``x``side`` whose class shows as a bright band at a class-specific row."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, side, side)).astype(np.uint8)
    for i, label in enumerate(labels):
        row = 2 + int(label) * (side - 4) // 10
        images[i, row : row + 2, 4:-4] = 230
    return images, labels


def write_mnist(folder: Path, n_train: int = 300, n_test: int = 100, gz: bool = True, side: int = 28) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    train, test = synthetic_mnist(n_train, 1, side), synthetic_mnist(n_test, 2, side)
    contents = {
        MNIST_FILES["train_images"]: idx_bytes(train[0], IMAGES_MAGIC),
        MNIST_FILES["train_labels"]: idx_bytes(train[1], LABELS_MAGIC),
        MNIST_FILES["test_images"]: idx_bytes(test[0], IMAGES_MAGIC),
        MNIST_FILES["test_labels"]: idx_bytes(test[1], LABELS_MAGIC),
    }
    for name, data in contents.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_mnist_reads_idx_files(tmp_path: Path, gz: bool) -> None:
    folder = write_mnist(tmp_path / "mnist", 300, 100, gz=gz)
    ds = idx.load_mnist(str(folder))
    images, labels = synthetic_mnist(300, 1)
    assert ds.X.shape == (400, 784) and ds.X.dtype == np.float32
    assert ds.image_shape == (28, 28)
    assert np.array_equal(ds.X[:300].reshape(300, 28, 28), images.astype(np.float32))
    assert np.array_equal(ds.y[:300], labels)
    assert ds.class_names == [str(d) for d in range(10)]
    assert ds.feature_names[0] == "pixel_0_0" and ds.feature_names[-1] == "pixel_27_27"
    assert np.array_equal(ds.test_rows, np.arange(300, 400))  # type: ignore[arg-type]


def test_mnist_mixed_plain_and_gz_and_options(tmp_path: Path) -> None:
    folder = write_mnist(tmp_path, 300, 100, gz=True)
    name = MNIST_FILES["test_labels"]
    (folder / name).write_bytes(gzip.decompress((folder / f"{name}.gz").read_bytes()))
    (folder / f"{name}.gz").unlink()
    ds = idx.load_mnist(str(folder), limit=200, official_split=False)
    assert len(ds.y) == 200 and ds.test_rows is None
    assert ds.y[150:].tolist() == synthetic_mnist(100, 2)[1][:50].tolist()  # 150 train + 50 test rows
    fashion = idx.load_mnist(str(folder), class_names=[f"c{i}" for i in range(10)])
    assert fashion.class_names[3] == "c3"
    with pytest.raises(DataError, match="class_names"):
        idx.load_mnist(str(folder), class_names=["a", "b"])


def test_mnist_missing_files_say_which_and_where(tmp_path: Path) -> None:
    folder = write_mnist(tmp_path / "m", 30, 10)
    (folder / f"{MNIST_FILES['test_images']}.gz").unlink()
    with pytest.raises(DataError) as err:
        idx.load_mnist(str(folder))
    message = str(err.value)
    assert "missing: t10k-images-idx3-ubyte." in message
    assert str(folder.resolve()) in message and "data.loader.folder" in message
    for name in MNIST_FILES.values():  # every expected file is named
        assert name in message
    assert "does not download" in message
    with pytest.raises(DataError, match="missing"):
        idx.load_mnist(str(tmp_path / "nowhere"))


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_mnist_truncated_file_is_named(tmp_path: Path, gz: bool) -> None:
    folder = write_mnist(tmp_path, 30, 10, gz=False)
    target = folder / MNIST_FILES["train_images"]
    data = target.read_bytes()[:-100]
    if gz:
        target.unlink()
        target = folder / f"{MNIST_FILES['train_images']}.gz"
        target.write_bytes(gzip.compress(data))
    else:
        target.write_bytes(data)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*truncated"):
        idx.load_mnist(str(folder))


def test_mnist_cut_gzip_stream_is_named(tmp_path: Path) -> None:
    folder = write_mnist(tmp_path, 30, 10, gz=True)
    target = folder / f"{MNIST_FILES['train_labels']}.gz"
    target.write_bytes(target.read_bytes()[:20])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz.*truncated or corrupt"):
        idx.load_mnist(str(folder))


def test_mnist_bad_magic_is_named(tmp_path: Path) -> None:
    folder = write_mnist(tmp_path, 30, 10, gz=False)
    # Images where labels belong: the magic number says so.
    target = folder / MNIST_FILES["test_labels"]
    target.write_bytes((folder / MNIST_FILES["test_images"]).read_bytes())
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte' has magic number 2051, expected 2049"):
        idx.load_mnist(str(folder))


def test_mnist_count_mismatch(tmp_path: Path) -> None:
    folder = write_mnist(tmp_path, 30, 10, gz=False)
    (folder / MNIST_FILES["train_labels"]).write_bytes(idx_bytes(np.zeros(29, np.uint8), LABELS_MAGIC))
    with pytest.raises(DataError, match="30 images but 29 labels"):
        idx.load_mnist(str(folder))


def test_read_idx_round_trip(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array, IMAGES_MAGIC))
    assert np.array_equal(idx.read_idx(tmp_path / "a", IMAGES_MAGIC), array)
    (tmp_path / "b").write_bytes(idx_bytes(array, IMAGES_MAGIC) + b"x")
    with pytest.raises(DataError, match="longer than its header"):
        idx.read_idx(tmp_path / "b", IMAGES_MAGIC)
    (tmp_path / "c").write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="too short"):
        idx.read_idx(tmp_path / "c", IMAGES_MAGIC)


# -------------------------------------------------------------------------------- breast cancer


def test_breast_cancer() -> None:
    ds = bundled.load_breast_cancer()
    assert ds.X.shape == (569, 30) and len(ds.feature_names) == 30
    assert ds.feature_names[0] == "mean radius" and ds.feature_names[-1] == "worst fractal dimension"
    assert ds.class_names == ["malignant", "benign"]
    assert np.bincount(ds.y).tolist() == [212, 357]
    assert ds.image_shape is None


# ---------------------------------------------------------------------------------------- tables


def table(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    species = np.array(["setosa", "virginica", "versicolor"])[np.arange(n) % 3]
    return pd.DataFrame(
        {
            "length": rng.normal(size=n) + (np.arange(n) % 3),
            "width": rng.normal(size=n),
            "colour": np.array(["red", "green"])[np.arange(n) % 2],
            "flag": np.arange(n) % 5 == 0,
            "species": species,
        }
    )


def split_table(n: int = 120, test_only: str | None = None, train_only: str | None = None) -> pd.DataFrame:
    """``table(n)`` with a column ``part`` marking a quarter of its rows test, the rest train;
    ``test_only`` moves every row of that class to test, ``train_only`` every row of it to train."""
    frame = table(n)
    part = np.where(np.arange(n) % 4 == 0, "test", "train").astype(object)
    if test_only:
        part[frame["species"] == test_only] = "test"
    if train_only:
        part[frame["species"] == train_only] = "train"
    return frame.assign(part=part)


def write(frame: pd.DataFrame, path: Path) -> str:
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_encodes_categoricals_and_keeps_names(tmp_path: Path, suffix: str) -> None:
    frame = table()
    ds = load_table(write(frame, tmp_path / f"flowers{suffix}"), target="species")
    assert ds.name == "flowers"
    assert ds.feature_names == ["length", "width", "colour=green", "colour=red", "flag"]
    assert ds.class_names == ["setosa", "versicolor", "virginica"]  # sorted distinct values
    assert ds.X.shape == (120, 5) and ds.X.dtype == np.float32
    assert np.allclose(ds.X[:, 0], frame["length"], atol=1e-6)
    assert ds.X[:, 3].tolist() == (frame["colour"] == "red").astype(float).tolist()
    assert ds.X[:, 4].tolist() == frame["flag"].astype(float).tolist()
    assert [ds.class_names[k] for k in ds.y[:3]] == ["setosa", "virginica", "versicolor"]


def test_table_feature_subset_and_integer_classes(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": np.arange(40.0), "b": np.ones(40), "label": np.arange(40) % 2 * 8 + 2})
    ds = load_table(write(frame, tmp_path / "t.csv"), target="label", features=["a"], name="mine")
    assert ds.name == "mine" and ds.feature_names == ["a"]
    assert ds.class_names == ["2", "10"]  # numeric order, not "10" < "2"
    assert ds.y.tolist()[:2] == [0, 1]


def test_missing_value_policies(tmp_path: Path) -> None:
    frame = table(30)
    frame.loc[[1, 4], "length"] = np.nan
    frame.loc[7, "colour"] = None
    path = write(frame, tmp_path / "holes.csv")
    with pytest.raises(DataError, match=r"'length' \(2 rows\), 'colour' \(1 rows\).*missing=drop"):
        load_table(path, target="species")
    dropped = load_table(path, target="species", missing="drop")
    assert len(dropped.y) == 27 and np.isfinite(dropped.X).all()
    filled = load_table(path, target="species", missing="mean")
    assert len(filled.y) == 30
    assert filled.X[1, 0] == pytest.approx(np.nanmean(frame["length"]), abs=1e-5)
    assert "colour=<missing>" in filled.feature_names
    with pytest.raises(DataError, match="missing-value policy"):
        load_table(path, target="species", missing="zero")


def test_empty_target_cells(tmp_path: Path) -> None:
    frame = table(30)
    frame.loc[3, "species"] = None
    path = write(frame, tmp_path / "t.csv")
    with pytest.raises(DataError, match="'species'.*empty in 1 rows"):
        load_table(path, target="species", missing="mean")
    assert len(load_table(path, target="species", missing="drop").y) == 29


@pytest.mark.parametrize(
    ("change", "kwargs", "pattern"),
    [
        (lambda f: f.assign(species="a"), {}, r"'species'.*single value \('a'\)"),
        (
            lambda f: f.assign(species=np.linspace(0, 1, len(f))),
            {"task": "classification"},
            r"'species'.*real numbers.*120 distinct.*use task=regression",
        ),
        (lambda f: f, {"target": "kind"}, r"data\.loader\.target='kind'.*columns are: length, width"),
        (lambda f: f, {"features": ["length", "size"]}, r"'size'.*not in"),
        (lambda f: f, {"features": ["length", "species"]}, r"both data\.loader\.target"),
        (lambda f: f.assign(colour=[f"id{i}" for i in range(len(f))]), {}, r"'colour'.*120 distinct.*20"),
        (lambda f: f.assign(width=np.inf), {}, r"'width'.*120 infinite"),
        (lambda f: f.assign(when=pd.Timestamp("2024-01-01")), {}, "date"),
        (lambda f: f[["species"]], {}, "no feature columns"),
    ],
    ids=[
        "constant-target",
        "continuous-target",
        "unknown-target",
        "unknown-feature",
        "target-as-feature",
        "too-many-categories",
        "infinite",
        "datetime",
        "no-features",
    ],
)
def test_table_column_errors(
    tmp_path: Path, change: Callable[[pd.DataFrame], pd.DataFrame], kwargs: dict[str, Any], pattern: str
) -> None:
    # Parquet keeps dtypes (datetimes, inf) exactly as written.
    path = write(change(table()), tmp_path / "t.parquet")
    with pytest.raises(DataError, match=pattern):
        load_table(path, **{"target": "species", **kwargs})


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (None, "does not exist"),
        (b"", r"is empty \(0 bytes\)"),
        (b"\n\n", "is empty"),
        (b"a,b,species\n", "header but no data rows"),
        (b"a,species\n1,x\n2,y,3,4\n", "not a readable CSV file.*Expected 2 fields"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\xfa" * 10, "is a binary file"),
        (b"a,species\n\xff\xfe,x\n", "not a UTF-8 text CSV"),
    ],
    ids=["missing", "empty", "blank-lines", "header-only", "ragged", "binary", "latin-1"],
)
def test_table_file_errors(tmp_path: Path, content: bytes | None, pattern: str) -> None:
    path = tmp_path / "t.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=pattern):
        load_table(str(path), target="species")


def test_table_directory_and_bad_parquet(tmp_path: Path) -> None:
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(DataError, match="is a directory"):
        load_table(str(tmp_path / "d.csv"), target="y")
    (tmp_path / "t.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="'.*t.parquet' is not a readable Parquet file"):
        load_table(str(tmp_path / "t.parquet"), target="y")


# --------------------------------------------------------------------------- prepare's checks


def test_loader_options_are_checked_naming_the_key() -> None:
    from omegaconf import OmegaConf

    def loader(**kw: Any) -> Any:
        return OmegaConf.create({"_target_": "pipeline.data.table.load_table", **kw})

    with pytest.raises(
        ConfigError,
        match=r"'data\.loader\.colour' is not an argument of pipeline\.data\.table\.load_table: "
        r"it takes: path, target",
    ):
        prepare.load_dataset(loader(path="x", target="y", colour="red"))
    with pytest.raises(ConfigError, match=r"'data\.loader\.targt' .*did you mean 'data\.loader\.target'"):
        prepare.load_dataset(loader(path="x", targt="y"))
    with pytest.raises(ConfigError, match=r"'data\.loader\.target' is required"):
        prepare.load_dataset(loader(path="x"))
    with pytest.raises(ConfigError, match=r"'data\.loader\.path' has no value"):
        prepare.load_dataset(loader(path="???", target="y"))
    with pytest.raises(ConfigError, match=r"'data\.loader\.task' is set by the prepare stage.*set task="):
        prepare.load_dataset(loader(path="x", target="y", task="regression"))
    with pytest.raises(ConfigError, match=r"'data\.loader\._partial_' is not an option of a loader"):
        prepare.load_dataset(loader(path="x", target="y", _partial_=True))
    with pytest.raises(ConfigError, match=r"'data\.loader\._target_' = 'pipeline\.nope'"):
        prepare.load_dataset(OmegaConf.create({"_target_": "pipeline.nope"}))
    with pytest.raises(ConfigError, match=r"'data\.loader\._target_' is missing"):
        prepare.load_dataset({"path": "x"})


def test_non_finite_features_are_named() -> None:
    X = np.ones((60, 3), np.float32)
    X[5, 1] = np.nan
    ds = Dataset("toy", X, np.arange(60) % 2, ["a", "b", "c"], ["0", "1"])
    with pytest.raises(DataError, match=r"1 NaN or infinite.*'b'.*row 5"):
        split.prepare(ds, StandardScaler(), 0.2, 0.1, 0)


@pytest.mark.parametrize(
    ("y", "pattern"),
    [
        (np.arange(12) % 4, r"test split would get 2 rows for 4 classes.*raise data\.test_size"),
        (np.r_[np.zeros(40, int), 1, 1], r"'1' \(2 rows\).*fewer than 3 rows"),
        (np.r_[np.zeros(400, int), np.arange(1, 31)], r"'5' \(1 row\) and 25 more of the 31 classes"),
    ],
)
def test_too_small_to_split_names_the_keys(y: np.ndarray, pattern: str) -> None:
    ds = Dataset("toy", np.ones((len(y), 2), np.float32), y, ["a", "b"], [str(c) for c in range(y.max() + 1)])
    with pytest.raises(DataError, match=pattern):
        split.prepare(ds, StandardScaler(), 0.2, 0.1, 0)


def test_official_test_split_is_kept(tmp_path: Path) -> None:
    ds = idx.load_mnist(str(write_mnist(tmp_path, 300, 100)))
    arrays, summary = split.prepare(ds, StandardScaler(), 0.2, 0.1, 0)
    assert summary.sizes == {"train": 260, "val": 40, "test": 100}
    assert summary.test_split == "official" and summary.image_shape == [28, 28]
    assert np.array_equal(arrays["X_test_raw"], ds.X[300:])  # the t10k rows, in order


def test_batch_size_above_train_split() -> None:
    with pytest.raises(ConfigError, match=r"train split has 30 rows.*train\.batch_size=64"):
        check_batch_size(30, 64)
    check_batch_size(64, 64)


# ------------------------------------------------------------------ each dataset, end to end


def run_pipeline(cfg: Config, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run every stage; record the feature names the explain stage draws its bars with."""
    from pipeline import plots
    from pipeline.stages import evaluate, explain, report, train, visualize

    drawn: dict[str, Any] = {}
    original = plots.render

    def spy(item: plots.Job, folder: str | Path, dpi: int) -> Path:
        if item.figure_id == "feature_importance":
            drawn["feature_names"] = list(item.kwargs["feature_names"])
        return original(item, folder, dpi)

    monkeypatch.setattr(plots, "render", spy)
    summary = prepare.run(cfg)
    train.run(cfg)
    metrics = evaluate.run(cfg)
    explain.run(cfg)
    visualize.run(cfg)
    report.run(cfg)
    return {
        "summary": summary,
        "evaluate": metrics,
        "drawn": drawn,
        "html": Path(cfg.paths.report).read_text(),
    }


@pytest.mark.slow
def test_breast_cancer_end_to_end(make_cfg: Callable[..., Config], monkeypatch: pytest.MonkeyPatch) -> None:
    out = run_pipeline(make_cfg("data=breast_cancer", "trainer.max_epochs=5"), monkeypatch)
    names = bundled.load_breast_cancer().feature_names
    assert out["summary"].feature_names == names
    assert out["summary"].class_names == ["malignant", "benign"]
    assert out["drawn"]["feature_names"] == names  # the importance bars are labelled by name
    assert out["evaluate"]["metrics"]["accuracy"] > 0.85
    assert "breast_cancer" in out["html"]


@pytest.mark.slow
def test_csv_end_to_end(
    make_cfg: Callable[..., Config], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    frame = table(300)
    frame.loc[5, "width"] = np.nan
    path = write(frame, tmp_path / "flowers.csv")
    cfg = make_cfg(
        "data=csv", f"data.loader.path={path}", "data.loader.target=species", "data.loader.missing=mean"
    )
    out = run_pipeline(cfg, monkeypatch)
    names = ["length", "width", "colour=green", "colour=red", "flag"]
    assert out["summary"].feature_names == names
    assert out["summary"].class_names == ["setosa", "versicolor", "virginica"]
    assert out["summary"].n_samples == 300
    assert out["drawn"]["feature_names"] == names
    assert "flowers" in out["html"]


@pytest.mark.slow
@pytest.mark.parametrize("data", ["breast_cancer", "csv150"])
def test_small_tables_run_with_every_default(
    data: str,
    make_cfg: Callable[..., Config],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The sample sizes of explain and visualize are upper bounds: 200 explained rows by default,
    yet breast_cancer's test split has 114 rows and a 150-row table's 30."""
    if data == "csv150":
        path = write(table(150), tmp_path / "small.csv")
        overrides = ["data=csv", f"data.loader.path={path}", "data.loader.target=species"]
    else:
        overrides = ["data=breast_cancer"]
    cfg = make_cfg(*overrides, fast=False)
    assert cfg.explain.n_samples == 200  # the shipped default, not a test setting
    with caplog.at_level("INFO"):
        out = run_pipeline(cfg, monkeypatch)
    n_test = out["summary"].sizes["test"]
    assert n_test < cfg.explain.n_samples
    said = caplog.text
    assert f"explain.n_samples = 200 is more than the {n_test} rows of the test split" in said
    assert f"visualize.tsne_max_samples = 1000 is more than the {n_test} rows of the test split" in said
    explained = json.loads(Path(cfg.paths.explain_metrics).read_text())
    assert explained["n_samples"] == n_test and explained["n_samples_requested"] == 200
    assert f"asked for 200; the test split has {n_test} rows" in " ".join(out["html"].split())
    # The run's MLflow datasets name where the rows came from: the user's file, or the loader.
    sources = {json.dumps(json.loads(d.source), sort_keys=True) for d in logged_datasets(cfg)}
    expected = (
        {"uri": str(path)}
        if data == "csv150"
        else {"tags": {"loader": "pipeline.data.bundled.load_breast_cancer"}}
    )
    assert sources == {json.dumps(expected, sort_keys=True)}


def logged_datasets(cfg: Config) -> list[Any]:
    """The MLflow datasets of the run the train stage made."""
    from mlflow import MlflowClient

    run = json.loads(layout.run_file(cfg).read_text())
    found = MlflowClient(run["tracking_uri"]).get_run(run["run_id"]).inputs.dataset_inputs
    return [entry.dataset for entry in found]


@pytest.mark.slow
def test_mnist_end_to_end(
    make_cfg: Callable[..., Config], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = write_mnist(tmp_path / "idx", 500, 120)
    cfg = make_cfg(
        "data=mnist", f"data.loader.folder={folder}", "explain.n_samples=12", "explain.n_background=10"
    )
    out = run_pipeline(cfg, monkeypatch)
    assert out["summary"].image_shape == [28, 28]
    assert out["summary"].sizes["test"] == 120
    assert out["evaluate"]["metrics"]["accuracy"] > 0.5  # the class bands are easy to see
    assert {json.loads(d.source)["uri"] for d in logged_datasets(cfg)} == {str(folder.resolve())}


# ------------------------------------------------------------------ classes the splits must share


def test_split_classes_by_count() -> None:
    names = ["a", "b", "c"]
    assert (
        split.check_split_classes({"train": [5, 5, 5], "val": [1, 1, 1], "test": [2, 2, 2]}, names, "x") == []
    )
    with pytest.raises(
        DataError, match=r"Class 'c' occurs in the test split \(4 rows\) but never in the train"
    ):
        split.check_split_classes({"train": [5, 5, 0], "val": [1, 1, 0], "test": [2, 2, 4]}, names, "x")
    with pytest.raises(DataError, match=r"Class 'b', 'c' occurs in the val split"):
        split.check_split_classes({"train": [5, 0, 0], "val": [1, 1, 1], "test": [2, 0, 0]}, names, "x")
    warned = split.check_split_classes({"train": [5, 5, 5], "val": [1, 1, 1], "test": [2, 2, 0]}, names, "f")
    assert warned == [
        "Class 'c' of the train split never occurs in the test split (from f): "
        "the test metrics say nothing about it."
    ]


def write_sorted_mnist(folder: Path, train_classes: int, test_classes: int) -> Path:
    """MNIST IDX files as if cut from a class-sorted source: the train files hold only classes
    below ``train_classes``, the test files only those below ``test_classes``."""
    write_mnist(folder, 400, 100, gz=False)
    for name, keep in (("train", train_classes), ("test", test_classes)):
        labels_path = folder / MNIST_FILES[f"{name}_labels"]
        labels = np.frombuffer(labels_path.read_bytes()[8:], dtype=np.uint8) % keep
        labels_path.write_bytes(idx_bytes(labels, LABELS_MAGIC))
    return folder


def test_a_test_class_missing_from_training_stops_prepare_naming_it_and_the_files(
    make_cfg: Callable[..., Config], tmp_path: Path
) -> None:
    folder = write_sorted_mnist(tmp_path / "idx", train_classes=5, test_classes=10)
    cfg = make_cfg("data=mnist", f"data.loader.folder={folder}")
    with pytest.raises(DataError) as err:
        prepare.run(cfg)
    text = str(err.value)
    assert "Class '5', '6', '7', '8', '9' occurs in the test split" in text
    assert MNIST_FILES["train_labels"] in text and MNIST_FILES["test_labels"] in text
    assert not Path(cfg.paths.prepare).exists()  # nothing half-written


def test_a_training_class_missing_from_the_test_split_is_a_warning_in_summary_and_report(
    make_cfg: Callable[..., Config], tmp_path: Path
) -> None:
    folder = write_sorted_mnist(tmp_path / "idx", train_classes=10, test_classes=8)
    summary = prepare.run(make_cfg("data=mnist", f"data.loader.folder={folder}"))
    assert summary.class_balance["test"][8:] == [0, 0]
    assert summary.class_balance["train"][8] > 0
    assert (
        len(summary.warnings) == 1 and "Class '8', '9' of the train split never occurs" in summary.warnings[0]
    )


def test_a_null_scaler_leaves_the_features_as_loaded(make_cfg: Callable[..., Config]) -> None:
    cfg = make_cfg("data.scaler=null")
    summary = prepare.run(cfg)
    from pipeline import io, layout

    arrays = io.read_arrays(layout.data_file(cfg), "prepare")
    assert summary.scaler == "FunctionTransformer"
    assert np.array_equal(arrays["X_test"], arrays["X_test_raw"])  # digits' pixel values 0..16
    assert arrays["X_train"].max() == 16.0


def test_a_table_with_its_own_split_keeps_it_and_checks_its_classes(tmp_path: Path) -> None:
    frame = split_table().assign(part=lambda f: f["part"].str.upper().str.pad(7))  # " TEST" works too
    path = write(frame, tmp_path / "flowers.csv")
    ds = load_table(path, target="species", split="part")
    assert "part" not in ds.feature_names
    assert ds.test_rows is not None and ds.test_rows.tolist() == list(range(0, 120, 4))
    arrays, summary = split.prepare(ds, StandardScaler(), 0.2, 0.1, 0)
    assert summary.test_split == "official" and summary.sizes["test"] == 30

    # A class only in the test rows stops prepare, naming it and the file.
    path = write(split_table(test_only="virginica"), tmp_path / "sorted.csv")
    ds = load_table(path, target="species", split="part")
    with pytest.raises(
        DataError, match=r"Class 'virginica' occurs in the test split \(40 rows\).*sorted\.csv"
    ):
        split.prepare(ds, StandardScaler(), 0.2, 0.1, 0)

    # A class only in the train rows is a warning, in the summary.
    path = write(split_table(train_only="setosa"), tmp_path / "no_setosa_test.csv")
    ds = load_table(path, target="species", split="part")
    _, summary = split.prepare(ds, StandardScaler(), 0.2, 0.1, 0)
    assert summary.class_balance["test"][ds.class_names.index("setosa")] == 0
    assert summary.warnings == [
        f"Class 'setosa' of the train split never occurs in the test split (from '{path}' (split by "
        "column 'part')): the test metrics say nothing about it."
    ]


@pytest.mark.parametrize(
    ("frame", "column", "message"),
    [
        (split_table(), "fold", r"data\.loader\.split='fold' is not in .*its columns are: length"),
        (split_table(), "species", r"'species' is both data\.loader\.target and data\.loader\.split"),
        (split_table().assign(part="train"), "part", r"marks no row 'test'"),
        (
            split_table().assign(part=lambda f: f["part"].where(f.index != 3, None)),
            "part",
            r"1 rows say otherwise",
        ),
    ],
)
def test_a_bad_split_column_is_named(frame: pd.DataFrame, column: str, message: str, tmp_path: Path) -> None:
    path = write(frame, tmp_path / "t.csv")
    with pytest.raises(DataError, match=message):
        load_table(path, target="species", split=column, missing="mean")


def test_pixel_scale_divides_every_feature_by_one_value(make_cfg: Callable[..., Config]) -> None:
    from hydra.utils import instantiate

    X = np.array([[0, 51, 255], [255, 0, 102]], dtype=np.float32)
    scaler = PixelScale(255)
    assert scaler.fit(X) is scaler
    assert np.allclose(scaler.transform(X), [[0, 0.2, 1], [1, 0, 0.4]])
    # The MNIST preset divides by 255 (benchmarks/scaling.py: it trains better than standardising).
    preset = instantiate(make_cfg("data=mnist").data.scaler)
    assert isinstance(preset, PixelScale) and preset.max_value == 255
    with pytest.raises(ConfigError, match=r"'data\.scaler\.max_value' = -1 must be positive"):
        PixelScale(-1)


def test_task_is_inferred_from_the_target(tmp_path: Path) -> None:
    frame = table()
    classes = load_table(write(frame, tmp_path / "c.csv"), target="species")
    assert classes.task == "classification" and classes.target_name == ""
    # Integers with few distinct values are classes; reals (or many integers) a quantity.
    few = frame.assign(species=np.arange(len(frame)) % 3)
    assert load_table(write(few, tmp_path / "few.csv"), target="species").task == "classification"
    many = frame.assign(species=np.arange(len(frame)) * 7)
    assert infer_task(many["species"]) == "regression"
    reals = frame.assign(species=np.linspace(10.0, 20.0, len(frame)))
    ds = load_table(write(reals, tmp_path / "r.csv"), target="species")
    assert ds.task == "regression" and ds.target_name == "species" and ds.class_names == []
    assert ds.y.dtype == np.float32
    np.testing.assert_allclose(ds.y, reals["species"], rtol=1e-6)
    # Set explicitly, the task wins over the inference: integer codes 0..2 as a quantity.
    forced = load_table(write(few, tmp_path / "few2.csv"), target="species", task="regression")
    assert forced.task == "regression" and set(forced.y.tolist()) == {0.0, 1.0, 2.0}


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda f: f.assign(species=3.5), r"'species'.*single value \(3\.5\) in all 120 rows"),
        (
            lambda f: f.assign(species=np.r_[np.linspace(0, 1, len(f) - 1), np.inf]),
            r"'species'.*1 non-finite value.*data row 120",
        ),
        (
            lambda f: f,
            r"'species'.*holds text \(e\.g\. '\w+'\), but task=regression needs numbers.*task=classification",
        ),
    ],
    ids=["single-value", "non-finite", "text"],
)
def test_regression_target_errors(
    tmp_path: Path, change: Callable[[pd.DataFrame], pd.DataFrame], pattern: str
) -> None:
    path = write(change(table()), tmp_path / "t.parquet")
    with pytest.raises(DataError, match=pattern):
        load_table(path, target="species", task="regression")


def test_diabetes_is_a_regression() -> None:
    ds = bundled.load_diabetes()
    assert ds.task == "regression" and ds.target_name == "progression"
    assert ds.X.shape == (442, 10) and ds.feature_names[2] == "bmi"
    assert ds.y.min() >= 25 and ds.y.max() <= 346
    assert ds.X[:, 0].max() > 50  # ages in years: the raw units, not scikit-learn's scaled copy
