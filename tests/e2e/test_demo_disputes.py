"""`make run`'s demo with its cheaters: the detectors flag them, the demo's validators re-check
and vote, the quorum slashes them; no honest meter is flagged."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from energy_client.rpc_client import MarketplaceClient
from infra.local_stack import DemoOptions, LocalStack, free_port
from iot.demo.fleet import PROVIDER_STAKE, VALIDATOR_STAKE

pytestmark = pytest.mark.e2e

STATUSES = ("open", "revoking", "guilty", "cleared")


def _wait_for(what: str, check: Callable[[], Any], timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}\n{log.read_text()[-6000:]}")


def _slashed(api: MarketplaceClient, provider_id: str) -> dict[str, Any] | None:
    """A dispute against the provider that is guilty, slashed and closed with its receipt."""
    for dispute in api.call("energy.getDisputes", {"provider_id": provider_id})["disputes"]:
        revocation = dispute.get("revocation") or {}
        if dispute["status"] == "guilty" and revocation.get("slash_receipt"):
            return dict(dispute)
    return None


def test_cheaters_are_flagged_judged_and_slashed_and_honest_meters_are_not(
    tmp_path: Path,
) -> None:
    log = tmp_path / "stack.log"
    demo = DemoOptions(
        # Solar at Greensboro and Sand Point (the first also the faulty meter),
        # wind, hydro and a battery; one cheater: solar on the night side.
        meters=5,
        buyers=1,
        # Long enough that a reading in the dark holds more than the detector's
        # 2 Wh of rounding slack.
        interval_seconds=5,
        buyer_pause_seconds=5,
        faulty_every_seconds=3,
        validators=5,
        validator_pause_seconds=1,
        cheaters=1,
    )
    with (
        log.open("wb") as output,
        LocalStack(
            moto_port=0,
            api_port=free_port(),
            mqtt_port=0,
            state_dir=tmp_path / "state",
            chalice_output=output,
            stack_name="energy-marketplace-e2e-disputes",
            jobs_interval=2,
            demo=demo,
        ) as stack,
    ):
        api = MarketplaceClient.over_http(stack.rpc_url)

        def started() -> dict[str, Any] | None:
            # The fleet reports its validators and its meters as each starts:
            # wait for both (the status file can be written between the two).
            found = stack.demo_status()
            validators = (found.get("validators") or {}).get("count")
            honest = (found.get("meters") or {}).get("honest") or []
            return found if validators == 5 and len(honest) == 4 else None

        status = _wait_for("the demo to start its meters and validators", started, 120, log)
        cheaters = status["cheaters"]["meters"]
        by_strategy = {c["strategy"]: c for c in cheaters.values()}
        assert set(by_strategy) == {"solar_at_night", "bad_signatures"}, cheaters
        honest = status["meters"]["honest"]
        assert len(honest) == 4 and not set(honest) & set(cheaters)

        # Every validator holds the role and a stake that puts it in the draw.
        for name in status["validators"]["accounts"]:
            account = api.call("energy.getAccount", {"name": name})
            assert "validator" in account["roles"]
            assert account["validator_stake"] >= VALIDATOR_STAKE

        # The night-side solar cheater: flagged by solar_at_night, found guilty, slashed.
        night = by_strategy["solar_at_night"]
        dispute = _wait_for(
            "the night-side solar cheater's slash",
            lambda: _slashed(api, night["provider_id"]),
            120,
            log,
        )
        assert {f["flagged_by"] for f in dispute["flags"]} == {"detector:solar_at_night"}
        guilty = [v for v in dispute["votes"] if v["verdict"] == "guilty"]
        assert len(guilty) >= dispute["quorum"] == 3
        assert {v["validator"] for v in dispute["votes"]} <= set(dispute["panel"])
        assert len({v["validator"] for v in dispute["votes"]}) == len(dispute["votes"])
        revocation = dispute["revocation"]
        provider = api.call("energy.getProvider", {"provider_id": night["provider_id"]})
        assert revocation["slash_micro_block"] > 0
        assert provider["stake"] == PROVIDER_STAKE - revocation["slash_micro_block"]
        assert provider["stake"] == revocation["stake_after_micro_block"]
        assert revocation["slash_receipt"]["chain"] == f"{night['provider_id']}/slashes"
        assert revocation["slash_receipt"]["sequence"] >= 1

        # The faulty meter: three bad signatures within 24 hours, found guilty too.
        faulty = by_strategy["bad_signatures"]
        dispute = _wait_for(
            "the faulty meter's slash",
            lambda: _slashed(api, faulty["provider_id"]),
            60,
            log,
        )
        assert {f["flagged_by"] for f in dispute["flags"]} == {"detector:bad_signatures"}

        # No honest meter was flagged: every dispute in the market is against a cheater.
        every = [
            d
            for status_name in STATUSES
            for d in api.call("energy.getDisputes", {"status": status_name, "limit": 100})[
                "disputes"
            ]
        ]
        flagged = {d["subject"]["meter_address"] for d in every}
        assert flagged <= set(cheaters), f"honest meters flagged: {flagged - set(cheaters)}"
        for meter in honest:
            provider_id = api.call("energy.getMeter", {"meter_address": meter})["provider_id"]
            assert api.call("energy.getDisputes", {"provider_id": provider_id})["disputes"] == []

        # The status file shows it all to an operator.
        shown = _wait_for(
            "the demo's status to count the slashes",
            lambda: (
                (stack.demo_status().get("disputes") or {}).get("slash_receipts", 0) >= 2
                and stack.demo_status()
            ),
            30,
            log,
        )
        disputes = shown["disputes"]
        assert disputes["against_honest"] == 0
        assert disputes["guilty"] >= 2 and disputes["slashed_micro_block"] > 0
        assert shown["validators"]["votes"].get("guilty", 0) >= 6
        assert b"voted guilty" in log.read_bytes()
        jobs = stack.jobs_status()
        assert all(job["failures"] == 0 for job in jobs.values()), jobs
        streams = stack.streams_status()
        assert (streams.get("watch_meters") or {}).get("failures") == 0, streams
