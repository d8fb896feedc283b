"""Run a stage: ``python -m pipeline <stage> [Hydra overrides]``, e.g. ``python -m pipeline train``
(the same as ``python -m pipeline.stages.<stage>``; ``compare`` is ``pipeline.tools.compare``);
dvc.yaml runs every stage this way."""

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

    # __import__ rather than importlib.import_module: only the import statement's machinery
    # reports to `-X importtime`, which the dvc.yaml dependency test reads.
    package = "tools" if stage == "compare" else "stages"
    module = __import__(f"pipeline.{package}.{stage}", fromlist=["run"])
    stage_main(module.run)


if __name__ == "__main__":
    main()
