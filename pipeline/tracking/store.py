"""The MLflow store behind a tracking URI: one client per process, the experiment, and a lock
that serialises first contact with a new SQLite file. MLflow is imported inside the functions:
evaluate, explain and visualize import this module (through ``records`` and ``runs``) for
``RunInfo`` alone and never talk to MLflow."""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

SQLITE = "sqlite:///"


@functools.cache
def client(uri: str) -> MlflowClient:
    """One client per tracking URI and process: constructing one resolves the store (for SQLite,
    an engine and a schema check) and a stage asks for it several times."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def artifact_location(uri: str, experiment: str) -> str | None:
    """For a local SQLite store, keep artifacts beside the database (never in a temporary copy)."""
    if not uri.startswith(SQLITE):
        return None  # a server or database decides where its artifacts go
    db = Path(uri[len(SQLITE) :])
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", experiment).strip("-") or "default"
    return (db.parent / "mlruns" / slug).as_uri()


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise first contact with a local SQLite store across processes.

    Two stages starting at once on a new database (e.g. `dvc queue start -j 2`) would
    both run MLflow's table migrations and one fails; a file lock makes the second wait.
    """
    if not uri.startswith(SQLITE):
        yield
        return
    import fcntl

    folder = Path(uri[len(SQLITE) :]).parent / "mlruns"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".glassnet.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_experiment(uri: str, name: str) -> str:
    """Return the id of experiment ``name``, creating it (artifacts beside the DB) if needed."""
    from mlflow.exceptions import MlflowException

    with store_lock(uri):
        mlf = client(uri)  # opens (and, for a new SQLite file, creates) the store: under the lock
        found = mlf.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(mlf.create_experiment(name, artifact_location=artifact_location(uri, name)))
        except MlflowException:
            # Another process (a server's other client) created it between our lookup and create.
            again = mlf.get_experiment_by_name(name)
            if again is None:
                raise
            return str(again.experiment_id)
