"""Run a stage: ``python -m pipeline <stage> [Hydra overrides]``, e.g. ``python -m pipeline train``.

The same as ``python -m pipeline.<stage>``, except that a process-pool worker the stage starts
(pipeline.parallel) does not re-import the stage module: Python's ``spawn`` re-imports the
parent's ``__main__`` unless it is a package's ``__main__``, like this one.
"""

from __future__ import annotations

import os
import sys

STAGES = ("prepare", "train", "evaluate", "explain", "visualize", "report", "publish", "compare")


# Lightning's DDP launcher starts the other ranks as `python -m pipeline.__main__` plus this
# process's sys.argv[1:], which by then holds only Hydra overrides: the stage rides along here.
STAGE_ENV = "GLASSNET_STAGE"


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] in STAGES:
        stage = sys.argv.pop(1)
        os.environ[STAGE_ENV] = stage
    elif os.environ.get(STAGE_ENV) in STAGES and "LOCAL_RANK" in os.environ:
        stage = os.environ[STAGE_ENV]  # a DDP rank Lightning launched
    else:
        sys.stderr.write(f"usage: python -m pipeline {{{','.join(STAGES)}}} [key=value ...]\n")
        sys.exit(2)
    from pipeline.cli import stage_main

    if os.environ.get("LOCAL_RANK", "0") == "0":  # a DDP rank > 0 does no tracking, draws nothing
        from pipeline import parallel

        parallel.start_early(stage)
    # __import__ rather than importlib.import_module: only the import statement's machinery
    # reports to `-X importtime`, which the dvc.yaml dependency test reads.
    module = __import__(f"pipeline.{stage}", fromlist=["run"])
    stage_main(module.run)


if __name__ == "__main__":
    main()
