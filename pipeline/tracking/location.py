"""Where the runs live: the tracking URI, whether its server answers, how a person opens it.

No MLflow here: the report stage only needs ``ui_command``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pipeline.errors import GlassnetError

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
    # Set before MLflow is imported, here or in a process started after this (inherited).
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
