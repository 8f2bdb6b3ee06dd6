"""Dashboard benchmark: the JavaScript a first visit downloads, and how long the Overview
takes to show the market's numbers in headless Chromium on the local stack.

Run from the repository root after ``make web``: ``.venv/bin/python bench/web.py`` (``make
bench`` runs it with the others). It needs Debian's Chromium (``make chromium``).

1. **What a first load ships.** The files ``web/dist/index.html`` loads (its scripts,
   module preloads and style sheets), each raw and gzip-compressed (level 9, what the
   local web server sends and about what CloudFront sends), and what Chromium actually
   transferred for them on a first, uncached load: the budget of issue 13 is 250 KB of
   gzip JavaScript. Then the chunks of the pages a first visit does not open (Register,
   Trading, Portfolio, Disputes, Analytics and what they share), fetched when a page is
   first opened.
2. **Time until the Overview shows its numbers.** A local stack (moto, the API, the
   WebSocket gateway, the dashboard's web server) with a small demo market (4 meters
   reading every 2 s, 2 buyers) runs until a purchase has settled. Then the Overview is
   loaded ``--loads`` times in a fresh browser context each (nothing cached: a first
   visit), and as many times again by reloading one context (the assets cached: a return
   visit). The time is the page's own ``performance.mark`` when the figures are first on
   screen (``energy-marketplace:overview-numbers``), from the start of the navigation.
   The median, fastest and slowest are printed. The aim of issue 13 is 1.5 s.

The times depend on the machine (2 cores here, shared with the demo fleet and moto); the
sizes do not.
"""

from __future__ import annotations

import argparse
import gzip
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as `python bench/web.py`: sys.path[0] is bench/

from bench._printing import print_table, say
from energy_client.rpc_client import MarketplaceClient
from infra.local_stack import DemoOptions, LocalStack, free_port
from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, WEB_DIST

NUMBERS_SHOWN_MARK = "energy-marketplace:overview-numbers"
BUDGET_GZIP_BYTES = 250 * 1024
AIM_SECONDS = 1.5


def first_load_files(dist: Path) -> list[Path]:
    """The files index.html makes the browser fetch: scripts, preloads, style sheets."""
    index = (dist / "index.html").read_text(encoding="utf-8")
    references = re.findall(r'<(?:script|link)[^>]+(?:src|href)="\./([^"]+)"', index)
    return [dist / "index.html", *(dist / reference for reference in references)]


def print_sizes(dist: Path) -> int:
    """The first load's files raw and gzipped; returns the gzip bytes of JavaScript."""
    rows = []
    javascript_gzip = 0
    for path in first_load_files(dist):
        raw = path.read_bytes()
        packed = len(gzip.compress(raw, compresslevel=9, mtime=0))
        if path.suffix == ".js":
            javascript_gzip += packed
        rows.append([str(path.relative_to(dist)), f"{len(raw):,}", f"{packed:,}"])
    print_table(["file (first load)", "bytes", "gzip bytes"], rows, right={1, 2})
    print()
    say(
        f"JavaScript on first load: {javascript_gzip:,} bytes gzip "
        f"({javascript_gzip / 1024:.1f} KB; budget {BUDGET_GZIP_BYTES // 1024} KB)."
    )
    return javascript_gzip


def print_later_chunks(dist: Path) -> None:
    """The JavaScript chunks not on the first load: each page's, fetched when it opens."""
    first = set(first_load_files(dist))
    rows = []
    total = 0
    for path in sorted((dist / "assets").glob("*.js")):
        if path in first:
            continue
        raw = path.read_bytes()
        packed = len(gzip.compress(raw, compresslevel=9, mtime=0))
        total += packed
        rows.append([str(path.relative_to(dist)), f"{len(raw):,}", f"{packed:,}"])
    if not rows:
        return
    print()
    print_table(["chunk (loaded when its page opens)", "bytes", "gzip bytes"], rows, right={1, 2})
    print()
    say(f"Every page's chunks together: {total:,} bytes gzip ({total / 1024:.1f} KB).")


def wait_until_traded(api: MarketplaceClient, timeout: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats: dict[str, Any] = api.call("energy.getMarketStats")
        if stats["top_providers"] and stats["energy_traded"]["trades_24h"]:
            return stats
        time.sleep(1.0)
    raise SystemExit("the demo market made no settled purchase in time")


def numbers_shown_ms(page: Page) -> float:
    """The page's own mark of the figures first on screen, in ms from navigation start."""
    # Polled by evaluate: wait_for_function evaluates a string, which the page's CSP forbids.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        value: float | None = page.evaluate(
            "(name) => performance.getEntriesByName(name)[0]?.startTime ?? null",
            NUMBERS_SHOWN_MARK,
        )
        if value is not None:
            return value
        page.wait_for_timeout(50)
    raise SystemExit("the Overview did not show its numbers within 30 s")


def transferred(page: Page, url: str) -> dict[str, int]:
    """Bytes Chromium received for the first load's resources, by type (gzip as sent)."""
    totals: dict[str, int] = {}
    entries: list[dict[str, Any]] = page.evaluate(
        "performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))"
        ".map(e => ({name: e.name, type: e.initiatorType, size: e.encodedBodySize}))"
    )
    for entry in entries:
        if not entry["name"].startswith(url):
            continue
        kind = {"script": "JavaScript", "link": "CSS", "navigation": "HTML"}.get(entry["type"])
        if kind is not None:
            totals[kind] = totals.get(kind, 0) + int(entry["size"])
    return totals


def time_loads(browser: Browser, url: str, loads: int) -> tuple[list[float], list[float]]:
    cold: list[float] = []
    for _ in range(loads):
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.goto(url)
        cold.append(numbers_shown_ms(page))
        context.close()
    warm: list[float] = []
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(url)
    numbers_shown_ms(page)
    for _ in range(loads):
        page.reload()
        warm.append(numbers_shown_ms(page))
    context.close()
    return cold, warm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=7, help="loads of each kind (default 7)")
    args = parser.parse_args()
    if not (WEB_DIST / "index.html").is_file():
        raise SystemExit(f"{WEB_DIST} is not built: run `make web`")
    if not CHROMIUM.is_file():
        raise SystemExit(f"Debian's Chromium is missing at {CHROMIUM}: run `make chromium`")

    print("== JavaScript shipped on the first load")
    javascript_gzip = print_sizes(WEB_DIST)
    print_later_chunks(WEB_DIST)

    print()
    print("== Time until the Overview shows the market's numbers (headless Chromium)")
    demo = DemoOptions(
        meters=4,
        buyers=2,
        interval_seconds=2,
        buyer_pause_seconds=2,
        faulty_every_seconds=0,
        validators=0,
        cheaters=0,
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-web-") as state,
        (Path(state) / "stack.log").open("wb") as output,
        LocalStack(
            moto_port=0,
            api_port=free_port(),
            mqtt_port=0,
            state_dir=Path(state) / "state",
            chalice_output=output,
            stack_name="energy-marketplace-bench-web",
            jobs_interval=2,
            demo=demo,
            settings={"DISPUTE_WINDOW_MS": "0", "ANALYTICS_BUCKET_MS": "60000"},
        ) as stack,
    ):
        stats = wait_until_traded(MarketplaceClient.over_http(stack.rpc_url))
        say(
            f"Local stack at {stack.dashboard_url}, demo market running: "
            f"{stats['providers']['listed']} providers, "
            f"purchases in its 24 buckets: {stats['energy_traded']['trades_24h']}."
        )
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            context = browser.new_context(viewport=VIEWPORT)
            page = context.new_page()
            page.goto(stack.dashboard_url)
            numbers_shown_ms(page)
            sent = transferred(page, stack.dashboard_url)
            context.close()
            cold, warm = time_loads(browser, stack.dashboard_url, args.loads)
            browser.close()

    print()
    print_table(
        ["transferred by Chromium (first load)", "bytes"],
        [[kind, f"{size:,}"] for kind, size in sorted(sent.items())],
        right={1},
    )
    print()
    rows = [
        [
            name,
            str(len(times)),
            f"{statistics.median(times):.0f}",
            f"{min(times):.0f}",
            f"{max(times):.0f}",
        ]
        for name, times in (("first visit (nothing cached)", cold), ("reload (cached)", warm))
    ]
    print_table(["load", "n", "median ms", "fastest ms", "slowest ms"], rows, right={1, 2, 3, 4})
    print()
    median_s = statistics.median(cold) / 1000
    say(
        f"JavaScript {javascript_gzip / 1024:.1f} KB gzip "
        f"({'within' if javascript_gzip <= BUDGET_GZIP_BYTES else 'OVER'} the 250 KB budget); "
        f"numbers on screen after {median_s:.2f} s (median first visit; "
        f"{'within' if median_s <= AIM_SECONDS else 'over'} the 1.5 s aim)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
