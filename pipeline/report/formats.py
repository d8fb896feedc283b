"""How the pages write numbers: the templates' filters, and the sentences built in Python
(pipeline.report.glance, the tasks' report wording) use the same functions.

    fmt_pct(0.98333) == "98.3%"; fmt_num(0.123456) == "0.1235"; fmt_int(101770) == "101,770"
"""

from __future__ import annotations

import math


def fmt_pct(value: float) -> str:
    return f"{100 * float(value):.1f}%"


def fmt_num(value: float) -> str:
    return f"{float(value):.4f}" if abs(float(value)) < 1000 else f"{float(value):,.0f}"


def fmt_sci(value: float) -> str:
    return f"{float(value):.2e}"


def fmt_int(value: float) -> str:
    return f"{int(value):,}"


def fmt_metric(value: float) -> str:
    """A leaderboard cell: a dash where a run has no value."""
    return "—" if not math.isfinite(value) else f"{value:.4g}"


def truncate_id(value: str, length: int = 10) -> str:
    return str(value)[:length]


FILTERS = {
    "fmt_pct": fmt_pct,
    "fmt_num": fmt_num,
    "fmt_sci": fmt_sci,
    "fmt_int": fmt_int,
    "fmt_metric": fmt_metric,
    "truncate_id": truncate_id,
}
