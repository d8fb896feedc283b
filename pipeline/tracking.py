"""Everything that talks to MLflow. Stages call these at their edges; no core
function imports mlflow.

One MLflow run per trained model: the train stage creates it (through
Lightning's MLFlowLogger) and writes its identity to ``run.json``; evaluate,
explain and report attach to that run by id.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import GlassnetError

if TYPE_CHECKING:
    import torch
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


def project_root() -> Path:
    """The repository the user works in.

    ``dvc exp run --queue`` runs stages in a temporary copy of the repository and
    sets DVC_ROOT to the real one, so that is where the tracking store lives.
    """
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def resolve_uri(configured: str | None) -> str:
    """Config wins, then $MLFLOW_TRACKING_URI, then an SQLite file at the project root.

    A relative SQLite path is made absolute against the project root, so the same
    URI works from DVC's temporary experiment copies.
    """
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        uri = f"{prefix}{project_root() / uri[len(prefix) :]}"
    return uri


class TrackingUnavailableError(GlassnetError):
    """The configured MLflow tracking server does not answer."""


def prepare_uri(uri: str, fallback_to_local: bool) -> str:
    """Fail fast (seconds, not minutes of retries) when a tracking server is down.

    MLflow retries an unreachable server for minutes by default; here the
    retries and timeouts are short, and the server is asked for /health once.
    With ``fallback_to_local`` the run goes to the local SQLite store instead.
    """
    if not uri.startswith(("http://", "https://")):
        return uri
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as response:
            if response.status == 200:
                return uri
            problem = f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as err:
        problem = str(getattr(err, "reason", err))
    local = f"sqlite:///{project_root() / 'mlflow.db'}"
    if fallback_to_local:
        log.warning(
            "MLflow server %s is unreachable (%s); logging to %s instead (tracking.fallback_to_local)",
            uri,
            problem,
            local,
        )
        return local
    raise TrackingUnavailableError(
        f"MLflow tracking server {uri} is unreachable ({problem}). Start it, fix MLFLOW_TRACKING_URI / "
        "tracking.uri, or set tracking.fallback_to_local=true to log to the local SQLite store."
    )


def ui_command(uri: str) -> str:
    """How a person opens the runs of ``uri`` in a browser."""
    if uri.startswith(("http://", "https://")):
        return uri
    return f"mlflow ui --backend-store-uri {uri}"


def _artifact_location(uri: str, experiment: str) -> str | None:
    """For a local SQLite store, keep artifacts beside the database (never in a temporary copy)."""
    if not uri.startswith("sqlite:///"):
        return None  # a server or database decides where its artifacts go
    db = Path(uri[len("sqlite:///") :])
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", experiment).strip("-") or "default"
    return (db.parent / "mlruns" / slug).as_uri()


@functools.cache
def client(uri: str) -> MlflowClient:
    """One client per tracking URI and process: constructing one resolves the store (for SQLite,
    an engine and a schema check) and a stage asks for it several times."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise first contact with a local SQLite store across processes.

    Two stages starting at once on a new database (e.g. `dvc queue start -j 2`) would
    both run MLflow's table migrations and one fails; a file lock makes the second wait.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    folder = Path(uri[len("sqlite:///") :]).parent / "mlruns"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".glassnet.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_experiment(uri: str, name: str) -> str:
    """Return the id of experiment ``name``, creating it (artifacts beside the DB) if needed."""
    with _store_lock(uri):
        return _ensure_experiment(uri, name)


def _ensure_experiment(uri: str, name: str) -> str:
    from mlflow.exceptions import MlflowException

    mlf = client(uri)
    found = mlf.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(mlf.create_experiment(name, artifact_location=_artifact_location(uri, name)))
    except MlflowException:
        # Another process created it between our lookup and create.
        again = mlf.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


def git_info(root: Path) -> dict[str, str]:
    """Commit and dirtiness of the repository at ``root`` ('unknown' outside git)."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        return out.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = "true" if git("status", "--porcelain", "--untracked-files=no") else "false"
    except (OSError, RuntimeError, subprocess.TimeoutExpired):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": dirty}


def versions() -> dict[str, str]:
    """Versions of the libraries a run depends on, as tags."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in (
        "torch",
        "pytorch-lightning",
        "mlflow",
        "shap",
        "scikit-learn",
        "numpy",
        "hydra-core",
        "dvc",
        "glassnet",
    ):
        try:
            found[f"version.{name}"] = version(name)
        except PackageNotFoundError:
            continue
    import platform

    found["version.python"] = platform.python_version()
    return found


def file_md5(path: Path) -> str:
    """The MD5 DVC would record for a file (so a run can be matched to dvc.lock)."""
    import hashlib

    digest = hashlib.md5()  # noqa: S324 -- a content fingerprint, as DVC uses, not security
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_exists(uri: str, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client(uri).get_run(run_id)
    except MlflowException:
        return False
    return True


def end_run(uri: str, run_id: str, status: str) -> None:
    """Mark a run FAILED or KILLED (best effort: the store may be what failed)."""
    try:
        client(uri).set_terminated(run_id, status)
    except Exception as err:  # noqa: BLE001 -- already failing; keep the original error
        log.warning("Could not mark MLflow run %s as %s: %s", run_id, status, err)


def log_text(run: RunInfo, text: str, artifact_file: str) -> None:
    client(run.tracking_uri).log_text(run.run_id, text, artifact_file)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values (MLflow params are strings)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


@dataclass(frozen=True)
class RunInfo:
    """Identity of the run a model belongs to; written to run.json by train."""

    tracking_uri: str
    experiment_name: str
    experiment_id: str
    run_id: str
    model_uri: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInfo:
        return cls(**{key: str(data[key]) for key in cls.__dataclass_fields__})


def load_run(path: str | Path) -> RunInfo:
    """The MLflow run of the trained model, as the train stage recorded it."""
    from pipeline import io

    return RunInfo.from_dict(io.read_json(path, "train"))


def log_metrics(run: RunInfo, metrics: dict[str, float], step: int = 0) -> None:
    """Log many metrics in one request."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
    client(run.tracking_uri).log_batch(run.run_id, metrics=batch)


def set_tags(run: RunInfo, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    client(run.tracking_uri).log_batch(run.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_artifacts(run: RunInfo, paths: list[Path], artifact_path: str) -> None:
    mlf = client(run.tracking_uri)
    for path in paths:
        mlf.log_artifact(run.run_id, str(path), artifact_path)


# Importing MLflow and opening its SQLite store costs ~2 s per process, which four stages paid
# just to log a few numbers and figures. Instead evaluate, explain and visualize write down what
# they have for MLflow (a small JSON "record" beside their outputs, without importing MLflow)
# and the publish stage logs it all, and the report, in one process.


def record(
    path: Path, run: RunInfo, metrics: dict[str, float], artifacts: list[Path], artifact_path: str
) -> None:
    """Write what a stage gives to MLflow: prefixed metrics (finite ones) and artifact files."""
    from pipeline import io

    io.write_json(
        path,
        {
            "run_id": run.run_id,
            "artifact_path": artifact_path,
            "metrics": {key: float(value) for key, value in metrics.items() if math.isfinite(value)},
            "artifacts": [str(artifact) for artifact in artifacts],
        },
    )


def publish(run: RunInfo, metrics: dict[str, float], artifacts: list[tuple[Path, str]]) -> None:
    """Log ``metrics`` in one request and each (file, artifact folder) to the run."""
    if metrics:
        log_metrics(run, metrics)
    mlf = client(run.tracking_uri)
    for path, artifact_path in artifacts:
        mlf.log_artifact(run.run_id, str(path), artifact_path)


def log_model(tracking_uri: str, run_id: str, net: torch.nn.Module, example: Any) -> str:
    """Log ``net`` as an MLflow PyTorch model with signature and input example; return its URI."""
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    with torch.inference_mode():
        output = net(torch.as_tensor(example)).numpy()
    mlflow.set_tracking_uri(tracking_uri)
    # Requirements are stated, not inferred: inference re-imports the model in a
    # subprocess and took 13 s of a 27 s train stage. The package's source travels
    # with the model so `mlflow.pytorch.load_model` works where glassnet is not installed.
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            net,
            name="model",
            signature=infer_signature(example, output),
            input_example=example,
            pip_requirements=requirements,
            code_paths=[str(Path(__file__).resolve().parent)],
        )
    return str(info.model_uri)


@dataclass(frozen=True)
class RunRecord:
    """What the comparison page needs of one run."""

    run_id: str
    name: str
    start_time: int  # ms since the epoch
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


COMPARISON_TAG = "glassnet.kind"


def search_runs(
    uri: str, experiment: str, run_name_prefix: str | None, extra_filter: str | None, max_runs: int
) -> list[RunRecord]:
    """Runs of ``experiment`` matching the filters, newest first; comparison runs excluded."""
    mlf = client(uri)
    found = mlf.get_experiment_by_name(experiment)
    if found is None:
        return []
    clauses = []
    if run_name_prefix:
        clauses.append(f"attributes.run_name LIKE '{run_name_prefix.replace(chr(39), '')}%'")
    if extra_filter:
        clauses.append(f"({extra_filter})" if " or " in extra_filter.lower() else extra_filter)
    runs = mlf.search_runs(
        [found.experiment_id],
        filter_string=" AND ".join(clauses),
        max_results=max_runs,
        order_by=["attributes.start_time DESC"],
    )
    return [
        RunRecord(
            run_id=r.info.run_id,
            name=r.info.run_name or r.info.run_id[:8],
            start_time=int(r.info.start_time or 0),
            status=r.info.status,
            params=dict(r.data.params),
            metrics=dict(r.data.metrics),
            tags=dict(r.data.tags),
        )
        for r in runs
        if r.data.tags.get(COMPARISON_TAG) != "comparison"
    ]


def metric_history(uri: str, run_id: str, key: str) -> list[float]:
    """Values of ``key`` in the order they were logged (one per epoch for epoch metrics)."""
    history = client(uri).get_metric_history(run_id, key)
    return [m.value for m in sorted(history, key=lambda m: (m.step, m.timestamp))]


def download_artifact(uri: str, run_id: str, path: str, folder: Path) -> Path | None:
    """Fetch one artifact of a run into ``folder``; None when the run does not have it."""
    from mlflow.exceptions import MlflowException

    # MLflow draws a progress bar per download; one file each is not worth the noise.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlf = client(uri)
    parent = str(Path(path).parent)
    try:
        names = {a.path for a in mlf.list_artifacts(run_id, "" if parent == "." else parent)}
        if path not in names:
            return None
        return Path(mlf.download_artifacts(run_id, path, str(folder)))
    except (MlflowException, OSError):
        return None


def log_comparison(uri: str, experiment: str, page: Path, compared: list[str]) -> str:
    """A small run that holds the comparison page; returns its id."""
    mlf = client(uri)
    experiment_id = ensure_experiment(uri, experiment)
    run = mlf.create_run(
        experiment_id,
        run_name="comparison",
        tags={COMPARISON_TAG: "comparison", "compared_runs": ",".join(compared)[:5000]},
    )
    mlf.log_artifact(run.info.run_id, str(page), "compare")
    mlf.set_terminated(run.info.run_id, "FINISHED")
    return str(run.info.run_id)
