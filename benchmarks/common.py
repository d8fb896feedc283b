"""Helpers shared by the benchmark scripts: logging to stdout, repeated timing, summaries."""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("benchmarks")

ROOT = Path(__file__).resolve().parents[1]


def setup_logging() -> None:
    """Benchmark output is the product: plain lines on stdout, no logger prefixes."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repetition (smoke test)")
    p.add_argument("--repeats", type=int, default=5, help="repetitions per measurement")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one per core)")
    return p


def loadavg() -> str:
    """The 1-minute load average: these machines are shared, so every figure carries it."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return f"{os.getloadavg()[0]:.2f}"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Stat:
    """Median and spread (min..max) of repeated measurements."""

    def __init__(self, values: Sequence[float]) -> None:
        self.values = list(values)
        self.median = statistics.median(self.values)
        self.lo, self.hi = min(self.values), max(self.values)

    def fmt(self, digits: int = 3, unit: str = "s") -> str:
        return f"{self.median:.{digits}f} {unit} [{self.lo:.{digits}f}..{self.hi:.{digits}f}]"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table (pasteable into the README)."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    line = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"  # noqa: E731
    log.info(line(cells[0]))
    log.info("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        log.info(line(row))
