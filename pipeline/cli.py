"""The Hydra entry point shared by every stage.

Stages run two ways: directly (``python -m pipeline train trainer.max_epochs=1``,
composing ``conf/``) and under DVC (``--config-dir . --config-name params``,
reading the ``params.yaml`` that ``dvc exp run`` composed). Either way Hydra is
told to write nothing into the project (no ``outputs/``, ``.hydra/`` or log file),
and errors a user can fix are printed as one message with a non-zero exit.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from pipeline import io
from pipeline.config import Config, to_config
from pipeline.errors import GlassnetError

log = logging.getLogger("pipeline")

# Hydra settings that keep runs litter-free; a user's own setting of the same key wins.
_QUIET_HYDRA = {
    "hydra.run.dir": "hydra.run.dir=.",
    "hydra.sweep.dir": "hydra.sweep.dir=artifacts/multirun/${now:%Y-%m-%d_%H-%M-%S}",
    "hydra.output_subdir": "hydra.output_subdir=null",
    "hydra/job_logging": "hydra/job_logging=stdout",
    "hydra/hydra_logging": "hydra/hydra_logging=disabled",
}

EXIT_USER_ERROR = 2
# An absolute path: Hydra reads a relative one as a Python module when the app is imported.
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def _quiet_argv(argv: list[str]) -> list[str]:
    given = {arg.split("=", 1)[0].lstrip("+~") for arg in argv if "=" in arg}
    return argv + [setting for key, setting in _QUIET_HYDRA.items() if key not in given]


SWEEP_ENV = "GLASSNET_SWEEP"


def _announce_sweep() -> None:
    """In a Hydra multirun, name the sweep so every job's MLflow run carries it as a tag."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        os.environ[SWEEP_ENV] = Path(hydra_cfg.sweep.dir).name
        os.environ[SWEEP_ENV + "_JOB"] = str(hydra_cfg.job.num)
    else:
        os.environ.pop(SWEEP_ENV, None)


def stage_main(run: Callable[[Config], Any]) -> None:
    """Run ``run`` as a Hydra app, turning user errors into a clean message and exit code 2."""
    sys.argv = [sys.argv[0], *_quiet_argv(sys.argv[1:])]
    # SIGTERM (kill, a scheduler, `dvc queue kill`) behaves like Ctrl-C: the stage unwinds, marks
    # its MLflow run, and never leaves a half-replaced set of outputs (see io.uninterrupted).
    signal.signal(signal.SIGTERM, io.on_stop_signal)
    signal.signal(signal.SIGINT, io.on_stop_signal)

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
    def _main(cfg: DictConfig) -> Any:
        _announce_sweep()
        try:
            result = run(to_config(cfg))
            # A sweeper (Optuna) optimises what the task function returns.
            return result.get("objective") if isinstance(result, dict) else None
        except (GlassnetError, OmegaConfBaseException) as err:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            log.error("%s: %s", type(err).__name__, err)
            sys.exit(EXIT_USER_ERROR)
        except OSError as err:  # disk full, permission denied, ...: say which file
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            where = f" '{err.filename}'" if err.filename else ""
            log.error(
                "Cannot read or write%s: %s. Earlier outputs were left as they were.",
                where,
                err.strerror or err,
            )
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt as err:
            log.error("Stopped (%s); earlier outputs were left as they were.", err or "interrupted")
            sys.exit(130)

    _main()
