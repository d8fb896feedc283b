"""Recompose ``params.yaml`` from ``conf/`` exactly as ``dvc exp run`` does.

    python -m pipeline.tools.params            # writes params.yaml
    python -m pipeline.tools.params model=...  # with overrides

``dvc repro`` reads params.yaml as it stands, so after editing conf/ run this
(or ``dvc exp run``) to make ``dvc repro`` see the change.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pipeline.cli import CONF_DIR

log = logging.getLogger(__name__)


def compose_params(path: str | Path, overrides: list[str]) -> None:
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(str(path), CONF_DIR, None, "config", "", overrides)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    compose_params("params.yaml", sys.argv[1:])
    log.info("params.yaml recomposed from %s", CONF_DIR)
