"""Settlement: escrow to the provider, credits to the buyer, one signed receipt.

Early (the buyer's ``energy.settle``) and scheduled (the job, once the dispute
window has passed); never twice, whoever races for it.
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.adapters.due_work import HOUR_MS, WATERMARK_MARGIN_MS
from chalicelib.domain.receipts import ChainHead, receipt_from_json, verify_chain
from chalicelib.services.settlement import run_settlement
from energy_client.rpc_client import RpcError, Signer
from tests.support import (
    BLOCK,
    MarketHarness,
    assert_conserved,
    buy,
    selling_provider,
    with_settings,
)

DAY = 86_400


def _bought(market: MarketHarness, kwh: Any = "3") -> tuple[Signer, Any, dict[str, Any]]:
    meter = selling_provider(market, [2_500, 2_500, 2_500])
    bob = market.funded_account("bob.theblock", block=100)
    return bob, meter, buy(market, bob, meter.provider_id, kwh)


def _balance(market: MarketHarness, name: str) -> int:
    balance: int = market.client.call("energy.getAccount", {"name": name})["balance"]
    return balance


def _receipt_key(market: MarketHarness) -> str:
    key: str = market.client.call("energy.getMarketInfo", {})["receipt_public_key"]
    return key


def test_the_buyer_settles_early_and_gets_a_signed_receipt(market: MarketHarness) -> None:
    bob, meter, purchase = _bought(market)
    seller = meter.owner
    assert seller is not None
    seller_before = _balance(market, seller.account)

    result = market.client.call(
        "energy.settle", {"transaction_id": purchase["transaction_id"]}, bob
    )

    assert (result["status"], result["already_settled"]) == ("settled", False)
    receipt = result["receipt"]
    assert receipt["sequence"] == 1 and receipt["previous_hash"] == "0" * 64
    assert (receipt["buyer"], receipt["provider_id"]) == ("bob.theblock", meter.provider_id)
    assert receipt["total_cost_micro_block"] == 240_000
    assert receipt["provider_amount_micro_block"] == 240_000  # the default fee is 0
    assert receipt["credit_ids"] == purchase["credit_ids"]
    assert receipt["settled_by"] == "buyer"
    report = verify_chain([receipt_from_json(receipt)], _receipt_key(market))
    assert report.intact, report.problem
    # The money moved from escrow to the seller; the buyer paid at purchase time.
    assert _balance(market, seller.account) == seller_before + 240_000
    assert _balance(market, "bob.theblock") == 100 * BLOCK - 240_000
    # The credits are the buyer's now, with their provenance.
    for credit_id in purchase["credit_ids"]:
        credits = market.client.call("energy.getCredits", {"provider_id": meter.provider_id})
        credit = next(c for c in credits["credits"] if c["credit_id"] == credit_id)
        assert (credit["state"], credit["holder"]) == ("held", "bob.theblock")
    settled = market.client.call(
        "energy.getPurchase", {"transaction_id": purchase["transaction_id"]}
    )
    assert settled["status"] == "settled"
    assert settled["receipt"]["receipt_hash"] == receipt["receipt_hash"]
    provider = market.client.call("energy.getProvider", {"provider_id": meter.provider_id})
    assert provider["open_obligations"] == 0
    assert provider["rating"] == 5.0  # one settled purchase, no dispute
    assert_conserved(market)


def test_settling_twice_settles_once(market: MarketHarness) -> None:
    bob, _, purchase = _bought(market)
    params = {"transaction_id": purchase["transaction_id"]}
    first = market.client.call("energy.settle", params, bob)
    totals = market.audit()
    again = market.client.call("energy.settle", params, bob)
    assert again["already_settled"] is True
    assert again["receipt"] == first["receipt"]
    assert run_settlement(market.deps).done == 0
    assert market.audit() == totals
    assert_conserved(market)


def test_only_the_buyer_may_settle_early(market: MarketHarness) -> None:
    _, _, purchase = _bought(market)
    carol = market.funded_account("carol.theblock")
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        market.client.call("energy.settle", {"transaction_id": purchase["transaction_id"]}, carol)
    assert refused.value.reason == "not_authorised"
    assert market.snapshot() == before


def test_an_unknown_purchase_is_not_found_and_changes_nothing(market: MarketHarness) -> None:
    bob = market.funded_account("bob.theblock")
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        market.client.call("energy.settle", {"transaction_id": "pur-" + "0" * 32}, bob)
    assert refused.value.code == 2001
    assert market.snapshot() == before


def test_the_job_settles_only_after_the_dispute_window(market: MarketHarness) -> None:
    _, meter, purchase = _bought(market)
    run = run_settlement(market.deps)
    assert (run.done, run.items_read) == (0, 0)  # not due: not even read
    assert purchase["settles_at_ms"] > market.clock.now * 1000

    market.clock.now = purchase["settles_at_ms"] // 1000 + 1
    run = run_settlement(market.deps)
    assert (run.done, run.failed) == (1, 0)
    found = market.client.call("energy.getPurchase", {"transaction_id": purchase["transaction_id"]})
    assert found["status"] == "settled"
    receipts = market.client.call("energy.getReceipts", {"provider_id": meter.provider_id})
    assert receipts["receipts"][0]["settled_by"] == "schedule"
    assert receipts["head"]["sequence"] == 1
    # A second run, at once or later, has nothing to do.
    assert run_settlement(market.deps).done == 0
    market.clock.now += DAY
    assert run_settlement(market.deps).done == 0
    assert_conserved(market)


def test_receipts_chain_per_provider_and_list_per_buyer(market: MarketHarness) -> None:
    meter = selling_provider(market, [1_000] * 6)
    bob = market.funded_account("bob.theblock", block=100)
    carol = market.funded_account("carol.theblock", block=100)
    for n, buyer in enumerate([bob, carol, bob]):
        purchase = buy(market, buyer, meter.provider_id, "1", idempotency_key=f"buy-{n:05d}")
        market.client.call("energy.settle", {"transaction_id": purchase["transaction_id"]}, buyer)

    chain: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = market.client.call(
            "energy.getReceipts",
            {"provider_id": meter.provider_id, "limit": 2} | ({"cursor": cursor} if cursor else {}),
        )
        chain.extend(page["receipts"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [r["sequence"] for r in chain] == [1, 2, 3]
    assert [r["buyer"] for r in chain] == ["bob.theblock", "carol.theblock", "bob.theblock"]
    head = page["head"]
    report = verify_chain(
        [receipt_from_json(r) for r in chain],
        _receipt_key(market),
        expected_head=ChainHead(head["chain"], head["sequence"], head["receipt_hash"]),
    )
    assert report.intact, report.problem

    mine = market.client.call("energy.getReceipts", {"buyer": "bob.theblock"})
    assert [r["sequence"] for r in mine["receipts"]] == [3, 1]  # newest first
    with pytest.raises(RpcError) as refused:
        market.client.call(
            "energy.getReceipts", {"buyer": "bob.theblock", "provider_id": meter.provider_id}
        )
    assert refused.value.code == -32602


def test_a_market_fee_goes_to_the_treasury(market: MarketHarness) -> None:
    market = with_settings(market, market_fee_bps=250)  # 2.5 %
    bob, meter, purchase = _bought(market)
    seller = meter.owner
    assert seller is not None
    seller_before = _balance(market, seller.account)
    receipt = market.client.call(
        "energy.settle", {"transaction_id": purchase["transaction_id"]}, bob
    )["receipt"]
    assert (receipt["fee_micro_block"], receipt["provider_amount_micro_block"]) == (
        6_000,
        234_000,
    )
    assert _balance(market, seller.account) == seller_before + 234_000
    assert market.audit().treasury == 6_000
    assert_conserved(market)


def test_settlement_frees_the_stake(market: MarketHarness) -> None:
    bob, meter, purchase = _bought(market)
    seller = meter.owner
    assert seller is not None
    params = {"provider_id": meter.provider_id, "amount_micro_block": BLOCK}
    with pytest.raises(RpcError) as refused:
        market.client.call("energy.withdrawStake", params, seller)
    assert refused.value.reason == "open_obligations"
    market.client.call("energy.settle", {"transaction_id": purchase["transaction_id"]}, bob)
    market.client.call("energy.withdrawStake", params, seller)
    assert_conserved(market)


def test_the_job_reads_only_the_hours_due(market: MarketHarness) -> None:
    _, _, purchase = _bought(market, "1")
    market.clock.now = purchase["settles_at_ms"] // 1000 + 1
    first = run_settlement(market.deps)
    assert first.done == 1
    assert first.hours_read == 49  # the first run looks back 48 hours
    # Every hour read was emptied: the watermark stops at the hour that holds
    # "now minus the margin" (an hour that just ended may still get an item).
    assert first.watermark == _hour_start(market.clock.now * 1000 - WATERMARK_MARGIN_MS)
    market.clock.now += 3 * 3_600
    later = run_settlement(market.deps)
    # From the watermark's hour to the current one, both included.
    assert later.hours_read == (market.clock.now * 1000 - first.watermark) // HOUR_MS + 1
    assert later.watermark == _hour_start(market.clock.now * 1000 - WATERMARK_MARGIN_MS)


def _hour_start(at_ms: int) -> int:
    return at_ms // HOUR_MS * HOUR_MS
