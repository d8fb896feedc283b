"""Progress bars for work that can take minutes (model-agnostic SHAP, Integrated Gradients, the
faithfulness curves, t-SNE): tqdm, the library of Lightning's own bar, with its look (counts,
elapsed, time left, rate), on stderr.

Whether a bar shows is a matter of display, not of results, so it is not a config key (a key
would make DVC rerun a stage when it changed): ``GLASSNET_PROGRESS`` says it.

- unset or ``auto``: a bar when stderr is a terminal, and only for work still running after
  ``DELAY`` seconds (quick work stays quiet);
- ``always`` (or ``1``): a bar from the start, terminal or not (e.g. for a log file);
- ``never`` (or ``0``): no bar.

tqdm's own ``TQDM_*`` variables (e.g. ``TQDM_NCOLS``) apply as well.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from tqdm import tqdm

VARIABLE = "GLASSNET_PROGRESS"
DELAY = 2.0  # seconds: work that ends sooner shows no bar (auto)
MODES = {"auto": "auto", "": "auto", "always": "always", "1": "always", "never": "never", "0": "never"}


def mode() -> str:
    """auto, always or never, from ``GLASSNET_PROGRESS``."""
    value = os.environ.get(VARIABLE, "auto").strip().lower()
    if value not in MODES:
        raise ConfigError(
            f"Environment variable {VARIABLE}={value!r} is not one of auto, always (1), never (0): "
            f"set one of those, or unset it for bars only on a terminal."
        )
    return MODES[value]


def shown(stream: TextIO) -> bool:
    """Whether a bar drawn on ``stream`` shows: ``always``, or ``auto`` when it is a terminal."""
    chosen = mode()
    return chosen == "always" or (chosen == "auto" and stream.isatty())


def bar(total: int, desc: str, unit: str) -> tqdm:
    """A bar of ``total`` ``unit``s; update it with ``.update(k)``, close it with ``.close()`` or
    as a context manager. Disabled (a no-op) unless ``mode`` asks for it."""
    from tqdm import tqdm

    chosen = mode()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not shown(sys.stderr),
        delay=0 if chosen == "always" else DELAY,
        dynamic_ncols=True,
        smoothing=0,  # time left from the average rate so far, as Lightning's bar
        leave=True,
    )


def chunks(n: int, parts: int) -> Iterator[slice]:
    """Consecutive slices cutting ``range(n)`` into at most ``parts`` near-equal pieces."""
    parts = max(1, min(n, parts))
    edges = [round(i * n / parts) for i in range(parts + 1)]
    for start, stop in zip(edges[:-1], edges[1:], strict=True):
        if stop > start:
            yield slice(start, stop)
