"""Drive Debian's Chromium with Playwright (the system binary: nothing is downloaded)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

SCREENSHOTS = ROOT / "test-artifacts"
# Without the background-networking flags Chromium tries to reach Google at start-up,
# which this offline machine refuses, many times over.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("Chromium is not installed: run `make browser` (Debian's chromium package).")
    return path


@dataclass
class PageCheck:
    """What a page did while it loaded."""

    console_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)


@contextmanager
def open_page(path: Path, width: int = 1280, height: int = 900) -> Iterator[tuple[Any, PageCheck]]:
    from playwright.sync_api import sync_playwright

    check = PageCheck()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: check.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: check.console_errors.append(str(e)))
            page.on(
                "request",
                lambda r: (
                    None if r.url.startswith(("data:", "file:")) else check.external_requests.append(r.url)
                ),
            )
            page.goto(path.resolve().as_uri(), wait_until="load")
            yield page, check
        finally:
            browser.close()


def images_state(page: Any) -> list[dict[str, Any]]:
    return page.evaluate(
        """() => Array.from(document.images).map(i => ({
            alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}))"""
    )


def toc_lands_on_sections(page: Any) -> list[str]:
    """Click every table-of-contents link; return the ids whose section is not at the top of the view."""
    failures = []
    ids = page.evaluate("() => Array.from(document.querySelectorAll('nav.toc a')).map(a => a.hash.slice(1))")
    for sid in ids:
        page.click(f"nav.toc a[href='#{sid}']")
        page.wait_for_timeout(50)
        top = page.evaluate(f"() => document.getElementById('{sid}').getBoundingClientRect().top")
        at_bottom = page.evaluate(
            "() => Math.ceil(window.scrollY + window.innerHeight) >= document.documentElement.scrollHeight"
        )
        # A section near the page's end cannot scroll to the very top; it must then be in view.
        if not (abs(top) <= 2 or (at_bottom and 0 <= top < page.viewport_size["height"])):
            failures.append(f"{sid} (top at {top:.0f}px)")
        page.evaluate("() => window.scrollTo(0, 0)")
    return failures if ids else ["no table-of-contents links"]


def horizontal_overflow(page: Any) -> int:
    return int(page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth"))
