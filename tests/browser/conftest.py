"""Fixtures of the browser tests: Debian's Chromium (never a browser Playwright downloads),
the built dashboard, a local stack with its demo market, and a page per test.

Nothing here skips: a missing Chromium or a missing build fails with what to run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from energy_client.rpc_client import MarketplaceClient, Signer
from infra.local_stack import DemoOptions, LocalStack, free_port
from tests.browser.support import VIEWPORT, WEB_DIST, launch_chromium, wait_for


@pytest.fixture(scope="session")
def web_dist() -> Path:
    if not (WEB_DIST / "index.html").is_file():
        pytest.fail(
            f"the dashboard is not built ({WEB_DIST}/index.html is missing): run `make web` "
            "(npm ci and npm run build in web/)",
            pytrace=False,
        )
    return WEB_DIST


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, web_dist: Path) -> Iterator[LocalStack]:
    """A local market with a small demo fleet: meters reading every 2 s, buyers buying and
    settling about a third of their purchases at once. No cheaters: the figures stay honest.

    The dispute window is an hour, so that a purchase made in a test stays open until the
    test settles it in the page (with a window of 0 the 2-second job would settle it first);
    the demo buyers' early settlements keep the Overview's sales figures moving."""
    state = tmp_path_factory.mktemp("dashboard")
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
        (state / "stack.log").open("wb") as output,
        LocalStack(
            moto_port=0,
            api_port=free_port(),
            mqtt_port=0,
            state_dir=state / "state",
            chalice_output=output,
            stack_name="energy-marketplace-e2e-web",
            jobs_interval=2,
            demo=demo,
            settings={"DISPUTE_WINDOW_MS": "3600000", "ANALYTICS_BUCKET_MS": "60000"},
            web_dist=web_dist,
        ) as running,
    ):
        yield running


@pytest.fixture(scope="session")
def api(stack: LocalStack) -> MarketplaceClient:
    return MarketplaceClient.over_http(stack.rpc_url)


@pytest.fixture(scope="session")
def listed_providers(api: MarketplaceClient, stack: LocalStack) -> list[dict[str, Any]]:
    """The demo's providers, once every meter's provider is on the market."""
    meters = stack.demo.meters if stack.demo is not None else 0

    def listed() -> list[dict[str, Any]] | None:
        providers: list[dict[str, Any]] = api.call("energy.listProviders", {})["providers"]
        return providers if len(providers) >= meters else None

    result: list[dict[str, Any]] = wait_for("the demo's providers", listed)
    return result


@pytest.fixture(scope="session")
def traded_market(api: MarketplaceClient) -> dict[str, Any]:
    """The market's figures once a purchase has settled and been folded into them."""

    def settled() -> dict[str, Any] | None:
        stats: dict[str, Any] = api.call("energy.getMarketStats")
        ready = stats["top_providers"] and stats["energy_traded"]["trades_24h"] > 0
        return stats if ready else None

    result: dict[str, Any] = wait_for("a settled purchase in the market's figures", settled)
    return result


@pytest.fixture(scope="session")
def operator(stack: LocalStack) -> Signer:
    """The local market's operator: it signs deposits and grants the validator role."""
    assert stack.operator_key is not None, "the local stack made no operator key"
    return Signer("operator", stack.operator_key)


@pytest.fixture
def page(browser: Browser, stack: LocalStack) -> Iterator[Page]:
    """A fresh browser context (empty storage) on the dashboard's origin.

    Uncaught errors in the page fail the test: a user must never meet a stack trace.
    """
    context = browser.new_context(viewport=VIEWPORT, base_url=stack.dashboard_url)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(f"{error.name}: {error.message}"))

    def console(message: ConsoleMessage) -> None:
        # A refused resource (CSP, a 404) shows up here; a failed fetch a test provokes does not.
        if message.type == "error" and "Content Security Policy" in message.text:
            errors.append(message.text)

    opened.on("console", console)
    yield opened
    context.close()
    assert not errors, errors
