"""The dashboard's pages in Debian's Chromium against a local market: a new user registers a
provider through the wizard, a buyer finds its offer, buys and settles it, and the portfolio
shows the credits, their carbon and a certificate; the portfolio follows the account's private
feed; a reading is flagged and judged by a validator in the browser; the analytics."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from nacl.signing import SigningKey
from playwright.sync_api import Browser, Page, expect

from chalicelib.domain.readings import signed_payload
from energy_client.rpc_client import MarketplaceClient, Signer
from infra.local_stack import LocalStack
from tests.browser.support import VIEWPORT, screenshot

pytestmark = pytest.mark.browser

BLOCK = 1_000_000
KEYRING = "energy-marketplace.keys.v1"


def _unique(prefix: str) -> str:
    return f"{prefix}{time.time_ns() % 10**11}"


def _fund(api: MarketplaceClient, operator: Signer, account: str, block: int) -> None:
    api.deposit(operator, account, block * BLOCK, f"web-test-{account}-{time.time_ns()}")


def _account(api: MarketplaceClient, operator: Signer, prefix: str, block: int) -> Signer:
    """An account opened and funded through the API (where the browser's part is not tested)."""
    signer = Signer.generate(_unique(prefix) + ".test")
    api.create_account(signer)
    if block:
        _fund(api, operator, signer.account, block)
    return signer


def _open_account_in_browser(page: Page, name: str) -> str:
    """Generate a key on the Keys page, open its account; the seed the browser keeps."""
    page.goto("/#/keys")
    page.get_by_label("Account name").fill(name)
    page.get_by_role("button", name="Generate a new key").click()
    card = page.locator(f'[data-testid="key-card"][data-account="{name}"]')
    expect(card.get_by_test_id("account-state")).to_have_text("no account of this name yet")
    card.get_by_role("button", name="Open this account on the marketplace").click()
    expect(card.get_by_test_id("account-state")).to_contain_text("account open")
    ring = json.loads(page.evaluate(f"() => localStorage.getItem('{KEYRING}')"))
    seed: str = next(key["seed_hex"] for key in ring["keys"] if key["account"] == name)
    return seed


def _give_key_to_browser(page: Page, signer: Signer) -> None:
    """Put an account's key in the browser's key store, as importing its .key file does."""
    page.goto("/#/keys")
    ring = {
        "active": signer.account,
        "keys": [
            {
                "account": signer.account,
                "seed_hex": signer.seed_hex,
                "public_key": signer.public_key,
                "created_at_ms": int(time.time() * 1000),
            }
        ],
    }
    page.evaluate("([name, ring]) => localStorage.setItem(name, ring)", [KEYRING, json.dumps(ring)])


def _mint(
    api: MarketplaceClient, meter: SigningKey, provider_id: str, address: str, wh: int
) -> None:
    """Two signed readings over HTTP (energy.submitReading, the meter's HTTP twin): a baseline
    a quarter of an hour ago, then ``wh`` more now, which mints one credit of ``wh``."""
    now_ms = int(time.time() * 1000)
    for counter, at_ms in ((1_000_000, now_ms - 900_000), (1_000_000 + wh, now_ms)):
        answer = api.call(
            "energy.submitReading", signed_payload(meter, provider_id, address, counter, at_ms)
        )
        assert answer["status"] == "accepted", answer


@pytest.fixture
def second_page(browser: Browser, stack: LocalStack) -> Iterator[Page]:
    """Another person's browser: its own storage, hence its own keys."""
    context = browser.new_context(viewport=VIEWPORT, base_url=stack.dashboard_url)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(f"{error.name}: {error.message}"))
    yield opened
    context.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def wind_provider(api: MarketplaceClient, operator: Signer) -> dict[str, Any]:
    """A provider registered through the API, with 120 kWh on sale: the offer other tests use.

    Wind, far from the demo's providers: the fraud detectors' solar and peer checks stay quiet.
    """
    owner = _account(api, operator, "windowner", 1_200)
    meter = SigningKey.generate()
    address = _unique("wind_meter_")
    provider: dict[str, Any] = api.register_provider(
        owner,
        display_name="Windy Ridge (test)",
        energy_type="wind",
        jurisdiction="NZ",
        latitude="-41.2865",
        longitude="174.7762",
        capacity_kwh=1000,
        price_per_kwh="0.05",
        stake=1_000 * BLOCK,
        meter_address=address,
        meter_public_key=bytes(meter.verify_key).hex(),
    )
    _mint(api, meter, provider["provider_id"], address, 120_000)
    return provider


# --- the story: register, buy, settle, portfolio ------------------------------------------------


def test_a_new_provider_registers_and_a_buyer_buys_settles_and_sees_it_in_the_portfolio(
    page: Page, second_page: Page, api: MarketplaceClient, operator: Signer
) -> None:
    # A new user: a key made in the browser, an account opened with it, BLOCK deposited.
    owner = _unique("solarcarol") + ".web"
    _open_account_in_browser(page, owner)
    _fund(api, operator, owner, 1_500)
    meter = SigningKey.generate()
    meter_address = _unique("carol_meter_")

    page.goto("/#/register")
    expect(page.get_by_test_id("owner-balance")).to_contain_text("1,500 BLOCK")
    expect(page.get_by_test_id("wizard-step")).to_contain_text("Step 1 of 3: Source")
    page.get_by_label("Name of the installation").fill("Carol's Hill")
    page.get_by_label("Wind", exact=False).check()
    # The API's rule, mirrored: half a Wh is refused before anything is signed.
    page.get_by_label("Peak capacity (kW, i.e. kWh per hour)").fill("1000.0005")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_test_id("problem-capacity_kwh")).to_contain_text("at most 3 decimals")
    expect(page.get_by_label("Peak capacity (kW, i.e. kWh per hour)")).to_be_focused()
    page.get_by_label("Peak capacity (kW, i.e. kWh per hour)").fill("1000")
    page.get_by_role("button", name="Next").click()

    expect(page.get_by_test_id("wizard-step")).to_contain_text("Step 2 of 3: Location and meter")
    page.get_by_label("Jurisdiction").fill("nz_wgn")  # written in capitals as it is typed
    expect(page.get_by_label("Jurisdiction")).to_have_value("NZ_WGN")
    page.get_by_label("Latitude (degrees)").fill("-41.2")
    page.get_by_label("Longitude (degrees)").fill("190")
    page.get_by_label("Meter address").fill(meter_address)
    page.get_by_label("Meter public key").fill(bytes(meter.verify_key).hex())
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_test_id("problem-longitude")).to_contain_text("at most 180")
    page.get_by_label("Longitude (degrees)").fill("174.9")
    page.get_by_role("button", name="Next").click()

    expect(page.get_by_test_id("wizard-step")).to_contain_text("Step 3 of 3: Price and stake")
    page.get_by_label("Price (BLOCK per kWh)").fill("0.123")
    page.get_by_label("Stake (BLOCK)").fill("999")
    page.get_by_role("button", name="Sign and register").click()
    expect(page.get_by_test_id("problem-stake_block")).to_contain_text("at least 1000")
    page.get_by_label("Stake (BLOCK)").fill("1000")
    expect(page.get_by_test_id("registration-summary")).to_contain_text(meter_address)
    screenshot(page, "register-wizard")
    page.get_by_role("button", name="Sign and register").click()

    registered = page.get_by_test_id("registered")
    expect(registered).to_be_visible()
    provider_id = page.get_by_test_id("registered-provider-id").inner_text()
    provider = api.call("energy.getProvider", {"provider_id": provider_id})
    assert provider["owner"] == owner
    assert provider["price_micro_block_per_kwh"] == 123_000
    assert provider["stake"] == 1_000 * BLOCK
    assert provider["jurisdiction"] == "NZ_WGN"
    expect(page.get_by_test_id("meter-topic")).to_have_text(
        f"energy/meters/{meter_address}/readings"
    )
    expect(page.get_by_test_id("provision-command")).to_contain_text(
        f"--meter-address {meter_address}"
    )
    screenshot(page, "register-done")

    # The meter reports: 120 kWh go on sale.
    _mint(api, meter, provider_id, meter_address, 120_000)

    # A buyer, in another browser, finds the offer.
    buyer = _unique("buyerdan") + ".web"
    _open_account_in_browser(second_page, buyer)
    _fund(api, operator, buyer, 100)
    second_page.goto("/#/trading")
    offer = second_page.locator(f'[data-testid="offer"][data-provider-id="{provider_id}"]')
    expect(offer).to_be_visible(timeout=30_000)  # read again on every new_reading event
    offer.get_by_role("button", name="Buy from Carol's Hill").click()
    buy = second_page.get_by_test_id("buy-form")
    buy.get_by_label("Energy (kWh)").fill("2")
    expect(buy.get_by_test_id("buy-estimate")).to_contain_text("0.246 BLOCK")

    # A maximum below the provider's price: refused by the API, in words, nothing bought.
    buy.get_by_label("Maximum price (BLOCK/kWh)").fill("0.1")
    buy.get_by_role("button", name="Sign and buy").click()
    refusal = buy.get_by_test_id("error")
    expect(refusal).to_contain_text("The purchase was refused")
    expect(refusal.get_by_test_id("error-code")).to_contain_text("Error 4004")
    expect(refusal.get_by_test_id("error-code")).to_contain_text("price_above_limit")
    expect(refusal).to_contain_text("above your maximum")

    buy.get_by_label("Maximum price (BLOCK/kWh)").fill("0.123")
    buy.get_by_role("button", name="Sign and buy").click()
    expect(buy.get_by_test_id("purchase-result")).to_contain_text("Bought 2 kWh for 0.246 BLOCK")
    open_row = second_page.get_by_test_id("open-purchase")
    expect(open_row).to_have_count(1)
    transaction_id = open_row.get_attribute("data-transaction-id") or ""
    assert api.call("energy.getPurchase", {"transaction_id": transaction_id})["status"] == "open"
    screenshot(second_page, "trading")

    open_row.get_by_role("button", name=f"Settle {transaction_id}").click()
    settled = second_page.get_by_test_id("settlement-result")
    expect(settled).to_contain_text("Settled: 2 kWh")
    expect(settled).to_contain_text("Receipt #")
    expect(second_page.get_by_test_id("open-purchase")).to_have_count(0)
    assert api.call("energy.getPurchase", {"transaction_id": transaction_id})["status"] == "settled"

    # The portfolio shows the purchase, the credits and what they avoided.
    second_page.get_by_role("navigation", name="Pages").get_by_role(
        "link", name="Portfolio"
    ).click()
    expect(second_page.get_by_test_id("portfolio-balance-value")).to_have_text("99.754 BLOCK")
    history = second_page.locator(
        f'[data-testid="history-row"][data-transaction-id="{transaction_id}"]'
    )
    expect(history).to_contain_text("2 kWh")
    holding = second_page.get_by_test_id("holding")
    expect(holding).to_have_count(1)
    expect(holding).to_contain_text(meter_address)
    portfolio = api.call("energy.getPortfolio", {"account": buyer})
    expect(second_page.get_by_test_id("carbon")).to_be_visible()
    carbon = api.call("energy.getCarbonOffset", {"account": buyer})
    assert portfolio["carbon_offset"]["total_g_co2"] == carbon["total_g_co2"] > 0
    expect(second_page.get_by_test_id("carbon-total")).to_contain_text("kg of CO₂")
    screenshot(second_page, "portfolio")

    # Retire the credit for a beneficiary and open its certificate.
    holding.get_by_role("checkbox").check()
    retire = second_page.get_by_test_id("retire-form")
    expect(retire.get_by_test_id("retire-selection")).to_contain_text("1 credit chosen: 2 kWh")
    retire.get_by_label("Beneficiary").fill("Dan's Bakery Ltd")
    retire.get_by_role("button", name="Sign and retire").click()
    retired = retire.get_by_test_id("retired")
    expect(retired).to_contain_text("Dan's Bakery Ltd")
    retired.get_by_role("link").first.click()
    certificate = second_page.get_by_test_id("certificate")
    expect(certificate).to_contain_text("Dan's Bakery Ltd")
    expect(certificate).to_contain_text("retired")
    expect(certificate).to_contain_text(meter_address)
    expect(second_page.get_by_role("heading", level=1, name="Certificate")).to_be_focused()
    screenshot(second_page, "certificate")


# --- live ------------------------------------------------------------------------------------


def test_the_portfolio_follows_the_accounts_private_feed_without_a_reload(
    page: Page, api: MarketplaceClient, operator: Signer, wind_provider: dict[str, Any]
) -> None:
    buyer = _account(api, operator, "livebuyer", 50)
    sent: list[str] = []
    page.on(
        "websocket", lambda socket: socket.on("framesent", lambda frame: sent.append(str(frame)))
    )
    _give_key_to_browser(page, buyer)
    page.goto("/#/portfolio")
    # Live once the gateway accepted the token this browser signed for the private topic.
    expect(page.get_by_test_id("portfolio-feed")).to_have_attribute(
        "data-live", "yes", timeout=20_000
    )
    expect(page.get_by_test_id("portfolio-escrow-value")).to_have_text("0 BLOCK")
    page.evaluate("window.sameDocument = true")

    # The account buys elsewhere (its CLI, say): the page hears of it on account:<name>.
    api.call(
        "energy.purchaseEnergy",
        {
            "provider_id": wind_provider["provider_id"],
            "kwh_amount": "1",
            "max_price_per_kwh": "0.05",
        },
        buyer,
    )
    expect(page.get_by_test_id("portfolio-escrow-value")).to_have_text("0.05 BLOCK", timeout=20_000)
    assert page.evaluate("window.sameDocument") is True, "the page was reloaded"

    tokens = [frame for frame in sent if '"token"' in frame]
    assert tokens and all(f'"token":"{buyer.account}.' in frame for frame in tokens), sent
    assert not any(buyer.seed_hex in frame for frame in sent), "the seed was sent"


def test_without_the_websocket_the_portfolio_polls_the_api(
    page: Page, api: MarketplaceClient, operator: Signer, wind_provider: dict[str, Any]
) -> None:
    buyer = _account(api, operator, "pollbuyer", 50)
    page.route_web_socket(re.compile(r"/ws$"), lambda route: route.close(code=1011))
    _give_key_to_browser(page, buyer)
    page.goto("/#/portfolio")
    feed = page.get_by_test_id("portfolio-feed")
    expect(feed).to_have_attribute("data-live", "no")
    expect(feed).to_contain_text("refreshing every 10 s")
    expect(page.get_by_test_id("portfolio-escrow-value")).to_have_text("0 BLOCK")

    api.call(
        "energy.purchaseEnergy",
        {
            "provider_id": wind_provider["provider_id"],
            "kwh_amount": "1",
            "max_price_per_kwh": "0.05",
        },
        buyer,
    )
    # No event can come: the next poll (at most 10 s away) brings the purchase.
    expect(page.get_by_test_id("portfolio-escrow-value")).to_have_text("0.05 BLOCK", timeout=15_000)
    expect(feed).to_have_attribute("data-live", "no")


# --- disputes ------------------------------------------------------------------------------------


def test_a_reading_is_flagged_and_a_validator_votes_in_the_browser(
    page: Page,
    second_page: Page,
    api: MarketplaceClient,
    operator: Signer,
    wind_provider: dict[str, Any],
) -> None:
    # Three staked validators: the smallest panel that can reach the quorum of three.
    validators = []
    for _ in range(3):
        validator = _account(api, operator, "judge", 1_100)
        api.call("energy.grantRole", {"account": validator.account, "role": "validator"}, operator)
        api.call("energy.stakeAsValidator", {"amount_micro_block": 1_000 * BLOCK}, validator)
        validators.append(validator)
    credit = next(
        c
        for c in api.call("energy.getCredits", {"provider_id": wind_provider["provider_id"]})[
            "credits"
        ]
        if c["state"] == "available"
    )

    flagger = _account(api, operator, "watcher", 50)
    _give_key_to_browser(page, flagger)
    page.goto("/#/disputes")
    form = page.get_by_test_id("flag-form")
    form.get_by_label("Credit id").fill("abc")
    form.get_by_label("Reason").fill("120 kWh in 15 minutes on a calm night at the ridge")
    form.get_by_role("button", name="Sign and flag").click()
    expect(page.get_by_test_id("problem-flag_hash")).to_have_text("64 hex digits")
    # Well formed but unknown: the API refuses it, in words, and no bond moves.
    form.get_by_label("Credit id").fill("0" * 64)
    form.get_by_role("button", name="Sign and flag").click()
    refusal = form.get_by_test_id("error")
    expect(refusal.get_by_test_id("error-code")).to_contain_text("Error 2001")
    expect(refusal.get_by_test_id("error-code")).to_contain_text("not_found")
    assert api.call("energy.getAccount", {"name": flagger.account})["balance"] == 50 * BLOCK
    form.get_by_label("Credit id").fill(credit["credit_id"])
    form.get_by_label("Evidence (optional)").fill(
        "https://example.org/met-service/wellington\nThe anemometer read 2 m/s"
    )
    form.get_by_role("button", name="Sign and flag").click()
    result = form.get_by_test_id("flag-result")
    expect(result).to_contain_text("is open")
    result.get_by_role("link").click()
    details = page.get_by_test_id("dispute-details")
    expect(details).to_have_attribute("data-status", "open")
    dispute_id = re.sub(r".*#/disputes/", "", page.url)
    dispute = api.call("energy.getDispute", {"dispute_id": dispute_id})
    assert sorted(dispute["panel"]) == sorted(v.account for v in validators)
    expect(details.get_by_test_id("flag")).to_contain_text(flagger.account)
    expect(
        details.get_by_role("link", name="https://example.org/met-service/wellington")
    ).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(details).to_contain_text("The anemometer read 2 m/s")
    expect(page.get_by_test_id("not-on-panel")).to_contain_text(flagger.account)
    expect(page.get_by_test_id("vote-form")).to_have_count(0)
    screenshot(page, "dispute")

    # The first validator judges it in its own browser; the others through the API.
    _give_key_to_browser(second_page, validators[0])
    second_page.goto(f"/#/disputes/{dispute_id}")
    vote = second_page.get_by_test_id("vote-form")
    vote.get_by_label("Cleared: the reading is honest").check()
    vote.get_by_role("button", name="Sign and vote").click()
    expect(second_page.get_by_test_id("your-vote")).to_contain_text("You voted cleared")
    second_page.evaluate("window.sameDocument = true")
    for validator in validators[1:]:
        api.call(
            "energy.voteOnDispute", {"dispute_id": dispute_id, "verdict": "cleared"}, validator
        )

    # The quorum resolves it; the open page hears dispute_resolved and shows the verdict.
    expect(second_page.get_by_test_id("dispute-details")).to_have_attribute(
        "data-status", "cleared", timeout=20_000
    )
    assert second_page.evaluate("window.sameDocument") is True
    screenshot(second_page, "dispute-cleared")

    page.goto("/#/disputes")
    page.get_by_label("Show").select_option("cleared")
    expect(
        page.locator(f'[data-testid="dispute-row"][data-dispute-id="{dispute_id}"]')
    ).to_be_visible()
    screenshot(page, "disputes")


# --- analytics -------------------------------------------------------------------------------------


def test_the_analytics_page_shows_volume_revenue_and_environmental_impact(
    page: Page, api: MarketplaceClient, traded_market: dict[str, Any]
) -> None:
    page.goto("/#/analytics")
    page.get_by_label("Window").select_option("1")

    volume = page.get_by_test_id("chart-volume")
    expect(volume).to_be_visible()
    assert int(volume.get_attribute("data-points") or 0) >= 1
    expect(page.get_by_test_id("chart-revenue")).to_be_visible()
    expect(page.get_by_test_id("total-revenue")).not_to_have_text("0 BLOCK")
    expect(page.get_by_test_id("leaders").locator("tbody tr").first).to_be_visible()
    carbon = api.call("energy.getCarbonOffset", {})
    assert carbon["scope"] == "market"
    expect(page.get_by_test_id("market-carbon")).to_contain_text("CO₂ avoided")

    traded_type = next(iter(traded_market["energy_mix"]["traded_wh_24h"]), "solar")
    page.get_by_label("Energy type").select_option(traded_type)
    expect(page.get_by_test_id("price-scope")).to_have_text(f"{traded_type.capitalize()} only")
    screenshot(page, "analytics")
