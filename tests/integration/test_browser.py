"""The report and the comparison page in a real headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.browser import (
    SCREENSHOTS,
    horizontal_overflow,
    images_state,
    open_page,
    toc_lands_on_sections,
)

pytestmark = pytest.mark.slow


def check_page(path: Path, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    with open_page(path) as (page, check):
        images = images_state(page)
        assert all(i["complete"] and i["w"] > 0 and i["h"] > 0 for i in images), images
        assert all(i["alt"] for i in images)
        assert toc_lands_on_sections(page) == []
        page.screenshot(path=str(SCREENSHOTS / f"{name}-desktop.png"), full_page=True)
        assert check.console_errors == []
        assert check.external_requests == []
    with open_page(path, width=390, height=844) as (page, check):
        assert horizontal_overflow(page) <= 0, "the page scrolls sideways at 390 px"
        page.screenshot(path=str(SCREENSHOTS / f"{name}-phone.png"), full_page=True)
        assert check.console_errors == []
    assert (SCREENSHOTS / f"{name}-desktop.png").stat().st_size > 10_000


def test_report_in_chromium(small_run) -> None:  # type: ignore[no-untyped-def]
    cfg, _ = small_run
    path = Path(cfg.paths.report)
    assert path.stat().st_size < 5 * 1024 * 1024
    check_page(path, "report")


def test_compare_page_in_chromium(compared) -> None:  # type: ignore[no-untyped-def]
    cfg, page_path, _ = compared
    check_page(page_path, "compare")
    with open_page(page_path) as (page, _check):
        # Sorting by a column reorders the leaderboard.
        def first_run() -> str:
            return str(page.evaluate("() => document.querySelector('#leaderboard tbody tr').dataset.runId"))

        before = first_run()
        page.click("#leaderboard th:nth-child(1) button")  # rank, descending
        assert first_run() != before
        page.click("#leaderboard th:nth-child(1) button")  # ascending again
        assert first_run() == before
