"""`make run`'s whole market in a temporary directory: meters over MQTT, buyers,
jobs and API together; then everything it started stops."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chalicelib.domain.receipts import receipt_from_json, verify_chain
from energy_client.rpc_client import MarketplaceClient
from infra.local_stack import DemoOptions, LocalStack, free_port

pytestmark = pytest.mark.e2e


def _wait_for(what: str, check: Callable[[], Any], timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}\n{log.read_text()[-4000:]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_whole_market_runs_and_stops_cleanly(tmp_path: Path) -> None:
    log = tmp_path / "stack.log"
    demo = DemoOptions(
        meters=4, buyers=2, interval_seconds=2, buyer_pause_seconds=2, faulty_every_seconds=5
    )
    with (
        log.open("wb") as output,
        LocalStack(
            moto_port=0,
            api_port=free_port(),
            mqtt_port=0,
            state_dir=tmp_path / "state",
            chalice_output=output,
            stack_name="energy-marketplace-e2e-whole",
            jobs_interval=2,
            demo=demo,
            # Settle as soon as the job sees a purchase; credits live the minimum.
            settings={"DISPUTE_WINDOW_MS": "0", "CREDIT_LIFETIME_MS": "3600000"},
        ) as stack,
    ):
        started = [
            stack.chalice_pid,
            stack.bridge_pid,
            stack.broker_pid,
            stack.scheduler_pid,
            stack.demo_pid,
            stack.stream_poller_pid,
            stack.ws_gateway_pid,
        ]
        assert None not in started
        api = MarketplaceClient.over_http(stack.rpc_url)
        status = _wait_for(
            "the fleet's readings to be acknowledged",
            lambda: (
                (stack.demo_status().get("meters") or {}).get("acknowledged", 0) >= 8
                and stack.demo_status()
            ),
            90,
            log,
        )
        meters = status["meters"]["addresses"]
        assert len(meters) == 4

        def minted() -> int:
            return sum(
                len(
                    api.call(
                        "energy.getCredits",
                        {
                            "provider_id": api.call("energy.getMeter", {"meter_address": m})[
                                "provider_id"
                            ]
                        },
                    )["credits"]
                )
                for m in meters
            )

        _wait_for("credits minted from MQTT readings", minted, 60, log)

        def a_settlement() -> dict[str, Any] | None:
            for number in (1, 2):
                found = api.call("energy.getReceipts", {"buyer": f"buyer{number:02d}.demo"})
                if found["receipts"]:
                    receipt: dict[str, Any] = found["receipts"][0]
                    return receipt
            return None

        receipt = _wait_for("a settlement receipt", a_settlement, 120, log)
        key = api.call("energy.getMarketInfo", {})["receipt_public_key"]
        chain = api.call("energy.getReceipts", {"provider_id": receipt["chain"], "limit": 100})
        report = verify_chain([receipt_from_json(r) for r in chain["receipts"]], key)
        assert report.intact, report.problem

        # The faulty meter's forged readings are refused and recorded.
        def refused() -> set[str]:
            rejections = api.call("energy.getRejections", {"meter_address": meters[0]})
            return {r["reason"] for r in rejections["rejections"]}

        reasons = _wait_for("the faulty meter's refusals", lambda: refused() or None, 60, log)
        assert reasons <= {"bad_signature", "implausible_increase"}
        jobs = stack.jobs_status()
        assert all(job["failures"] == 0 for job in jobs.values()), jobs
        # The ledger's stream reached the market events function, batch by batch.
        streams = _wait_for(
            "the stream poller to hand over the purchases",
            lambda: (
                (stack.streams_status().get("publish_market_events") or {}).get("records")
                and stack.streams_status()
            ),
            30,
            log,
        )
        assert streams["publish_market_events"]["failures"] == 0, streams
        assert b"purchase_settled" in log.read_bytes()

        # The analytics folded both streams: the overview has its numbers.
        def overview() -> dict[str, Any] | None:
            stats: dict[str, Any] = api.call("energy.getMarketStats", {})
            settled = stats["energy_traded"]["settled_wh_all_time"]
            return stats if settled and stats["top_providers"] else None

        stats = _wait_for("the market's figures", overview, 60, log)
        assert stats["providers"]["registered"] >= len(meters)  # and the demo's cheaters
        assert stats["active_buyers"] >= 1 and stats["active_providers"] >= 1
        assert stats["energy_mix"]["generated_wh_24h"]
        assert stats["average_price"]["vwap_24h_micro_block_per_kwh"] > 0
        assert api.call("energy.getPriceHistory", {})["buckets"]
        assert streams["watch_meters"]["failures"] == 0, streams

    for pid in started:
        assert pid is not None and not _alive(pid), log.read_text()[-4000:]


def test_a_second_start_in_the_same_directory_runs_a_new_market(tmp_path: Path) -> None:
    """Keys and meter credentials are reused; moto starts empty; the fleet publishes again."""
    demo = DemoOptions(meters=2, buyers=1, interval_seconds=2, faulty_every_seconds=0)
    log = tmp_path / "stack.log"
    counts = []
    for _ in range(2):
        with (
            log.open("ab") as output,
            LocalStack(
                moto_port=0,
                api_port=free_port(),
                mqtt_port=0,
                state_dir=tmp_path / "state",
                chalice_output=output,
                stack_name="energy-marketplace-e2e-again",
                demo=demo,
            ) as stack,
        ):
            status = _wait_for(
                "the fleet's readings",
                lambda: (
                    (stack.demo_status().get("meters") or {}).get("acknowledged", 0) >= 4
                    and stack.demo_status()
                ),
                90,
                log,
            )
            api = MarketplaceClient.over_http(stack.rpc_url)
            meter = api.call("energy.getMeter", {"meter_address": status["meters"]["addresses"][0]})
            counts.append(meter["accepted_readings"])
    assert all(count >= 1 for count in counts), counts
