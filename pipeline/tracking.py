"""Everything that talks to MLflow. Stages call these at their edges; no core
function imports mlflow.

One MLflow run per trained model: the train stage creates it (through a helper process, see
``TrackingWorker``) and writes its identity to ``run.json``; the publish stage logs the later
stages' metrics, figures and the report to that run by id.

    python -m pipeline.tracking     # the helper process itself (started by the train stage)
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

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


def log_model(
    tracking_uri: str, run_id: str, net: torch.nn.Module, example: Any, serialization_format: str = "pickle"
) -> str:
    """Log ``net`` as an MLflow PyTorch model with signature and input example; return its URI.

    ``serialization_format`` "pickle" logs the module itself (its code travels with it); "pt2"
    a torch.export graph, which needs torch._dynamo: 1.8 s to import in the MLflow helper process.
    """
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
            serialization_format=serialization_format,
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


# --- MLflow in a helper process, for the train stage ---------------------------------------
# Importing MLflow and opening its store cost the train stage ~2.3 s, and logging an epoch's
# metrics ~8 ms of the training loop. A child process does all of it instead: it starts before
# the train stage imports torch and Lightning (~4 s on one core) and runs beside them on the
# other core, and it logs each epoch while training goes on. The train stage sends it JSON lines
# and waits only where it needs an answer: the run id before training, the model URI at the end.


class TrackingWorkerError(GlassnetError):
    """The MLflow helper process failed or stopped."""


def launch_rank() -> int:
    """This process's global rank as Lightning will see it, known before Lightning is imported.

    Lightning's launchers (DDP subprocesses, SLURM, jsrun) set one of these variables in every
    process but the first; the first has none until Lightning sets them. Only rank 0 tracks.
    """
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(key)
        if value is not None:
            return int(value)
    return 0


class TrackingWorker:
    """The train stage's end of the helper process that owns its MLflow run.

    Starting it sends the run's identity (experiment, name, tags, params, or a run to resume);
    ``run_id`` waits for the answer. ``log_metrics`` does not wait; an error in the helper is
    raised at the next call that does (``run_id``, ``finish``). ``end`` marks a failed or killed
    run; if this process dies without a word, the helper marks the run KILLED when its input closes.
    """

    def __init__(
        self,
        uri: str,
        experiment: str,
        run_name: str | None,
        tags: dict[str, str],
        params: dict[str, Any],
        resume_run_id: str | None = None,
    ) -> None:
        self.uri = uri
        root = str(Path(__file__).resolve().parent.parent)
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root if not path else f"{root}{os.pathsep}{path}"}
        # Its imports run beside the stage's: profiled, they would interleave with the stage's
        # own `-X importtime` lines in one stream (benchmarks.startup reads that stream).
        env.pop("PYTHONPROFILEIMPORTTIME", None)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.tracking"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._started: dict[str, Any] | None = None
        self._closed = False
        self._send(
            {
                "op": "start",
                "uri": uri,
                "experiment": experiment,
                "run_name": run_name,
                "tags": {**tags, "mlflow.source.name": sys.argv[0], "mlflow.source.type": "LOCAL"},
                "params": {key: str(value) for key, value in params.items()},
                "resume": resume_run_id,
            }
        )

    def _send(self, message: dict[str, Any]) -> None:
        from pipeline import io

        assert self._proc.stdin is not None
        try:
            with io.uninterrupted():  # a stop signal never cuts a message in half
                self._proc.stdin.write(json.dumps(message) + "\n")
                self._proc.stdin.flush()
        except (BrokenPipeError, ValueError) as err:
            raise TrackingWorkerError(self._gone()) from err

    def _receive(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise TrackingWorkerError(self._gone())
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise TrackingWorkerError(f"MLflow tracking failed: {reply.get('error')}")
        return reply

    def _gone(self) -> str:
        code = self._proc.poll()
        return (
            f"The MLflow helper process stopped (exit code {code}); its error is printed above. "
            "Check tracking.uri / MLFLOW_TRACKING_URI and the store, then rerun."
        )

    def _start_reply(self) -> dict[str, Any]:
        if self._started is None:
            self._started = self._receive()
            if self._started.get("warning"):
                log.warning("%s", self._started["warning"])
        return self._started

    @property
    def run_id(self) -> str:
        return str(self._start_reply()["run_id"])

    @property
    def experiment_id(self) -> str:
        return str(self._start_reply()["experiment_id"])

    @property
    def resumed(self) -> bool:
        return bool(self._start_reply()["resumed"])

    def ready(self) -> None:
        """Wait until the helper has the run and has imported all it needs: benchmarks time the
        training loop alone, without the helper's start-up on the other core."""
        self._start_reply()
        self._send({"op": "ping"})
        self._receive()

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        values = {key: float(value) for key, value in metrics.items()}
        self._send({"op": "metrics", "metrics": values, "step": step, "timestamp": int(time.time() * 1000)})

    def finish(
        self,
        model_file: Path,
        example: Any,
        metrics: dict[str, float],
        texts: dict[str, str],
        model_format: str = "pickle",
    ) -> str:
        """Log the saved model, the final metrics and text files; mark the run FINISHED; the model URI."""
        self._start_reply()
        self._send(
            {
                "op": "finish",
                "model_format": model_format,
                "model": str(Path(model_file).resolve()),
                "example": [[float(v) for v in row] for row in example],
                "metrics": {key: float(value) for key, value in metrics.items()},
                "texts": texts,
            }
        )
        model_uri = str(self._receive()["model_uri"])
        self.close()
        return model_uri

    def end(self, status: str) -> None:
        """Mark the run ``status`` (FAILED, KILLED) and stop the helper; best effort, never raises."""
        if self._closed:
            return
        try:
            self._send({"op": "end", "status": status})
        except TrackingWorkerError as err:
            log.warning("Could not mark the MLflow run as %s: %s", status, err)
        self.close()

    def close(self, timeout: float = 60.0) -> None:
        """Close the helper's input (it finishes what it was sent, then exits) and wait for it."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("The MLflow helper process did not stop in %.0f s; killing it", timeout)
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


class _Worker:
    """The helper process's side: one MLflow run, driven by the messages on stdin."""

    def __init__(self) -> None:
        self.uri = ""
        self.run_id: str | None = None
        self.done = False
        self.error: str | None = None  # from a message that wanted no answer; told at the next that does

    def start(self, msg: dict[str, Any]) -> dict[str, Any]:
        from mlflow.entities import Param

        self.uri = msg["uri"]
        experiment_id = ensure_experiment(self.uri, msg["experiment"])
        warning = None
        resume = msg.get("resume")
        if resume and run_exists(self.uri, resume):
            self.run_id = resume
            client(self.uri).update_run(resume, status="RUNNING")
        else:
            if resume:
                warning = (
                    f"The interrupted run's MLflow run {resume} is not in {self.uri}: logging to a new run"
                )
            run = client(self.uri).create_run(experiment_id, run_name=msg["run_name"], tags=msg["tags"])
            self.run_id = run.info.run_id
            # MLflow takes at most 100 params a request and 6000 characters a value.
            params = [Param(key, value[:6000]) for key, value in msg["params"].items()]
            for start in range(0, len(params), 100):
                client(self.uri).log_batch(self.run_id, params=params[start : start + 100])
        return {
            "run_id": self.run_id,
            "experiment_id": experiment_id,
            "resumed": self.run_id == resume,
            "warning": warning,
        }

    def metrics(self, msg: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        assert self.run_id is not None
        batch = [Metric(k, float(v), msg["timestamp"], msg["step"]) for k, v in msg["metrics"].items()]
        client(self.uri).log_batch(self.run_id, metrics=batch)

    def finish(self, msg: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from pipeline import model

        assert self.run_id is not None
        net = model.load(msg["model"])
        net.eval()
        example = np.asarray(msg["example"], dtype=np.float32)
        model_uri = log_model(self.uri, self.run_id, net, example, msg["model_format"])
        info = RunInfo(self.uri, "", "", self.run_id, model_uri)
        log_metrics(info, msg["metrics"])
        for name, text in msg["texts"].items():
            log_text(info, text, name)
        client(self.uri).set_terminated(self.run_id, "FINISHED")
        self.done = True
        return {"model_uri": model_uri}

    def ping(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {}

    def end(self, msg: dict[str, Any]) -> None:
        if self.run_id is not None and not self.done:
            client(self.uri).set_terminated(self.run_id, msg["status"])
        self.done = True

    def warm_up(self) -> None:
        """Import what ``finish`` needs while the train stage imports Lightning and trains."""
        import mlflow.pytorch  # noqa: F401
        import torch  # noqa: F401
        from mlflow.models import infer_signature  # noqa: F401

        from pipeline import model  # noqa: F401


def serve(requests: IO[str], replies: IO[str]) -> None:
    """Answer the train stage's messages until its end of the pipe closes."""
    worker = _Worker()
    answer = {"start", "finish", "ping"}
    for line in requests:
        msg = json.loads(line)
        op = msg["op"]
        try:
            if worker.error is not None and op in answer:
                raise TrackingWorkerError(worker.error)
            result = getattr(worker, op)(msg)
        except Exception as err:  # noqa: BLE001 -- reported to the train stage, which raises it
            text = f"{type(err).__name__}: {err}"
            log.error("MLflow helper: %s failed: %s", op, text)
            if op not in answer:
                worker.error = worker.error or text
                continue
            replies.write(json.dumps({"ok": False, "error": text}) + "\n")
            replies.flush()
            if op == "start":
                return
            continue
        if op in answer:
            replies.write(json.dumps({"ok": True, **(result or {})}) + "\n")
            replies.flush()
        if op == "start":
            # After answering: the train stage is still importing Lightning and needs the run id
            # first. (Importing these before making the run delayed that answer by ~0.8 s.)
            worker.warm_up()
    if worker.run_id is not None and not worker.done:
        # The train stage went away without finishing or ending the run: it was killed.
        with contextlib.suppress(Exception):
            client(worker.uri).set_terminated(worker.run_id, "KILLED")


def _worker_main() -> None:
    import signal

    # Ctrl-C reaches the whole process group: the train stage decides how the run ends and
    # tells this process, which must live until then. Without a word it ends at end of input.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # mlflow.pytorch imports Lightning (2 s of this process's CPU, while the train stage trains)
    # only to offer an autologging callback this process never uses; when that import fails it
    # leaves the callback out (a try/except ImportError in mlflow/pytorch/__init__.py).
    for name in ("pytorch_lightning", "lightning"):
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # mlflow.pytorch warns on every pickle-format model that unpickling can run code: the format
    # is chosen in the config (tracking.model_format, documented with its trade-off), not by accident.
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    # Replies go on the real stdout; anything else that writes to stdout (MLflow prints) goes to
    # stderr, so it cannot be mistaken for a reply.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if hasattr(os, "nice"):
        # Training has first call on the cores: with both of torch's threads busy, a helper at
        # equal priority slowed the digits fit from 2.5 s to 4.4 s; its own work can wait.
        os.nice(10)
    serve(sys.stdin, replies)
    replies.close()
    logging.shutdown()
    # Everything is logged (MLflow calls here are synchronous); skip the interpreter's teardown
    # of torch, SQLAlchemy and MLflow, which took ~2 s that the train stage would wait for.
    os._exit(0)


if __name__ == "__main__":
    _worker_main()
