"""The dashboard in Debian's Chromium against a local market: the Overview's real numbers,
live updates and the polling fallback, the Providers page, keys made in the browser, request
signing byte for byte as docs/api.md specifies, and API errors shown in words."""

from __future__ import annotations

import itertools
import json
import re
import time
from typing import Any

import pytest
from playwright.sync_api import Page, Request, Route, WebSocketRoute, expect

from energy_client.rpc_client import MarketplaceClient
from tests.browser.support import PROJECT_DIR, screenshot, wait_for

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
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-status", "live")
    screenshot(page, "overview")


def _as_of(page: Page) -> int:
    return int(page.get_by_test_id("as-of").get_attribute("data-as-of-ms") or 0)


def test_the_overview_updates_live_without_a_reload(
    page: Page, traded_market: dict[str, Any]
) -> None:
    page.goto("/")
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-status", "live")
    first = _as_of(page)
    page.evaluate("window.sameDocument = true")

    # The jobs push market_stats every 2 s here (once a minute in AWS) while anyone listens.
    def pushed_newer() -> bool:
        source = page.get_by_test_id("as-of").get_attribute("data-source")
        return source == "live" and _as_of(page) > first

    wait_for("newer figures pushed over the WebSocket", pushed_newer, timeout=30, page=page)
    assert page.evaluate("window.sameDocument") is True, "the page was reloaded"


def test_without_the_websocket_the_overview_polls_and_then_reconnects(
    page: Page, traded_market: dict[str, Any]
) -> None:
    gateway_down = True
    attempts: list[float] = []
    stats_reads: list[float] = []

    def websocket(route: WebSocketRoute) -> None:
        attempts.append(time.monotonic())
        if gateway_down:
            route.close(code=1011, reason="gateway down")
        else:
            route.connect_to_server()

    def read(request: Request) -> None:
        if request.method == "POST" and "energy.getMarketStats" in (request.post_data or ""):
            stats_reads.append(time.monotonic())

    page.route_web_socket(re.compile(r"/ws$"), websocket)
    page.on("request", read)
    page.goto("/")
    expect(page.get_by_test_id("live-status")).not_to_have_attribute("data-status", "live")
    expect(page.get_by_test_id("metric-capacity-value")).to_have_text(_mwh(traded_market))

    # Polling every 10 s while the WebSocket is down, and retrying it with growing delays.
    wait_for("two polls 10 s apart", lambda: len(stats_reads) >= 3, timeout=30, page=page)
    gaps = [b - a for a, b in itertools.pairwise(stats_reads[1:])]
    assert all(gap >= 9 for gap in gaps), gaps
    expect(page.get_by_test_id("live-status")).to_contain_text("refreshing every 10 s")
    assert len(attempts) >= 2
    retry_gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert retry_gaps[-1] > retry_gaps[0], retry_gaps

    gateway_down = False
    expect(page.get_by_test_id("live-status")).to_have_attribute(
        "data-status", "live", timeout=40_000
    )
    expect(page.get_by_test_id("as-of")).to_have_attribute("data-source", "live", timeout=30_000)


# --- Providers -----------------------------------------------------------------------------


def test_the_providers_page_lists_filters_and_details_the_providers(
    page: Page, api: MarketplaceClient, listed_providers: list[dict[str, Any]]
) -> None:
    everyone = api.call("energy.listProviders", {})["providers"]
    page.goto("/#/providers")

    cards = page.get_by_test_id("provider-card")
    expect(cards).to_have_count(len(everyone))
    assert [card.get_attribute("data-provider-id") for card in cards.all()] == [
        provider["provider_id"] for provider in everyone
    ]  # cheapest first, as the API lists them
    screenshot(page, "providers")

    energy_type = everyone[-1]["energy_type"]
    same_type = api.call("energy.listProviders", {"energy_type": energy_type})["providers"]
    page.get_by_label("Energy type").select_option(energy_type)
    expect(cards).to_have_count(len(same_type))
    for card in cards.all():
        expect(card).to_contain_text(energy_type.capitalize())

    cheapest = everyone[0]
    page.get_by_label("Energy type").select_option("")
    page.get_by_label("Maximum price (BLOCK/kWh)").fill(str(cheapest["price_per_kwh"]))
    page.get_by_role("button", name="Apply filters").click()
    at_most = api.call("energy.listProviders", {"max_price": str(cheapest["price_per_kwh"])})
    expect(cards).to_have_count(len(at_most["providers"]))

    page.get_by_role("link", name=cheapest["display_name"]).click()
    details = page.get_by_test_id("provider-details")
    expect(details).to_be_visible()
    expect(page).to_have_url(re.compile(f"#/providers/{cheapest['provider_id']}$"))
    for fact in ("Capacity", "Available now", "Price", "Rating", "Uptime"):
        expect(details.get_by_text(fact, exact=True)).to_be_visible()
    expect(details).to_contain_text(cheapest["meter_address"])
    expect(page.get_by_role("heading", level=1)).to_be_focused()
    screenshot(page, "provider-details")


# --- errors in words -------------------------------------------------------------------------


def test_an_api_error_is_shown_in_words(page: Page, listed_providers: list[dict[str, Any]]) -> None:
    page.goto("/#/providers")
    expect(page.get_by_test_id("provider-card").first).to_be_visible()

    # Seven decimals: the API refuses a price it would have to round (docs/api.md "Units").
    page.get_by_label("Maximum price (BLOCK/kWh)").fill("0.0000001")
    page.get_by_role("button", name="Apply filters").click()

    error = page.get_by_test_id("error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Invalid params")
    expect(page.get_by_test_id("error-code")).to_contain_text("Error -32602")
    expect(page.get_by_test_id("error-code")).to_contain_text("invalid_params")
    expect(error.locator("li")).to_contain_text("max_price")
    expect(page.get_by_role("alert")).to_have_count(1)
    # The cards of the previous filters are gone: they do not answer these.
    expect(page.get_by_test_id("provider-card")).to_have_count(0)
    expect(error.get_by_role("button", name="Try again")).to_have_count(0)  # it would fail again
    assert "Traceback" not in page.content()
    screenshot(page, "providers-error")


def test_an_api_that_does_not_answer_is_said_in_words_and_retried(page: Page) -> None:
    def gateway_error(route: Route) -> None:
        route.fulfill(status=502, content_type="text/html", body="<h1>502 Bad Gateway</h1>")

    page.route("**/rpc", gateway_error)
    # No WebSocket either: its pushes would bring the figures without the API.
    page.route_web_socket(re.compile(r"/ws$"), lambda route: route.close())
    page.goto("/")

    error = page.get_by_test_id("error").first
    expect(error).to_contain_text("The market's figures could not be read")
    expect(error).to_contain_text("HTTP 502")
    page.unroute("**/rpc")
    error.get_by_role("button", name="Try again").click()
    expect(page.get_by_test_id("metric-capacity-value")).to_be_visible()


# --- keys in the browser -----------------------------------------------------------------------


def test_a_key_made_in_the_browser_opens_an_account_and_never_leaves_it(
    page: Page, api: MarketplaceClient
) -> None:
    bodies: list[str] = []
    page.on("request", lambda request: bodies.append(request.post_data or request.url))
    page.goto("/#/keys")
    name = f"web{int(time.time() * 1000) % 10**9}.theblock"

    page.get_by_label("Account name").fill(name)
    page.get_by_role("button", name="Generate a new key").click()
    card = page.locator(f'[data-testid="key-card"][data-account="{name}"]')
    expect(card.get_by_test_id("account-state")).to_have_text("no account of this name yet")
    public_key = card.get_by_test_id("public-key").inner_text()
    card.get_by_role("button", name="Open this account on the marketplace").click()

    expect(card.get_by_test_id("account-state")).to_contain_text("account open")
    account = api.call("energy.getAccount", {"name": name})
    assert account["public_key"] == public_key
    stored = json.loads(
        page.evaluate("() => localStorage.getItem('energy-marketplace.keys.v1')") or "{}"
    )
    seeds = [key["seed_hex"] for key in stored["keys"] if key["account"] == name]
    assert len(seeds) == 1 and len(seeds[0]) == 64
    assert bodies and not any(seeds[0] in body for body in bodies), "the seed was sent"
    screenshot(page, "keys")

    # A second browser key for the same name: the API refuses it, and says why.
    other = page.context.new_page()
    other.goto("/#/keys")
    other.evaluate("() => localStorage.clear()")
    other.get_by_label("Account name").fill(name)
    other.get_by_role("button", name="Generate a new key").click()
    expect(other.get_by_test_id("account-state")).to_have_text("this name belongs to another key")
    other.close()


# --- the shell -----------------------------------------------------------------------------


def test_the_pages_are_reached_by_keyboard(page: Page) -> None:
    page.goto("/")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the content")).to_be_focused()

    navigation = page.get_by_role("navigation", name="Pages")
    navigation.get_by_role("link", name="Overview").focus()
    for _ in range(3):  # Overview -> Providers -> Register -> Trading
        page.keyboard.press("Tab")
    expect(navigation.get_by_role("link", name="Trading")).to_be_focused()
    page.keyboard.press("Enter")

    expect(page).to_have_url(re.compile("#/trading$"))
    expect(page.get_by_role("heading", level=1, name="Trading")).to_be_focused()
    expect(navigation.get_by_role("link", name="Trading")).to_have_attribute("aria-current", "page")
    # Without a key in this browser the page says where to make one, and still lists offers.
    expect(page.get_by_test_id("no-key")).to_contain_text("Your keys")
    expect(page.get_by_role("heading", level=2, name="Offers on sale now")).to_be_visible()
    navigation.get_by_role("link", name="Trading").focus()
    page.keyboard.press("Tab")  # Trading -> Portfolio
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Portfolio")).to_be_focused()
