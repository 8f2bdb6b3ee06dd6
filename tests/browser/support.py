"""What the browser tests and bench/web.py share: Debian's Chromium and how to launch it,
where the build and the screenshots are, and waiting through Playwright."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, ViewportSize

PROJECT_DIR = Path(__file__).resolve().parents[2]
WEB_DIST = PROJECT_DIR / "web" / "dist"
# Debian's package (apt-get install chromium; `make chromium` installs it).
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# Headless as root on a machine whose network is closed: no sandbox (root), and no
# background connections to Google's hosts, which this machine refuses by the dozen.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Where the screenshots go (docs/images/ holds copies of a few).
SCREENSHOTS = Path(os.environ.get("DASHBOARD_SCREENSHOTS", PROJECT_DIR / "build" / "screenshots"))
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless, with the flags this machine needs."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Debian's Chromium is not installed at {CHROMIUM}: the browser tests need it. "
            "Install it with `make chromium` (apt-get install chromium), or point CHROMIUM "
            "at another build. Playwright's own browser download does not work here.",
            pytrace=False,
        )
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = 120.0, page: Page | None = None
) -> Any:
    """Poll ``check`` once a second until it returns something true; fail after ``timeout``.

    With a ``page``, wait through Playwright: its sync API handles the page's events (and
    routes) only while one of its calls runs, never during a ``time.sleep``.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        if page is None:
            time.sleep(1.0)
        else:
            page.wait_for_timeout(1000)


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as ``<name>.png`` under the screenshots directory."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
