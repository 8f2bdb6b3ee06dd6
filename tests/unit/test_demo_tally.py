"""The demo's dispute tally: counted from the marketplace's records, each change logged once."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from energy_client.rpc_client import Signer
from iot.demo.tally import DisputeTally


def dispute(
    number: int,
    meter: str,
    status: str,
    *,
    detector: str = "solar_at_night",
    votes: Sequence[str] = (),
    slash: int = 0,
    receipt: bool = False,
) -> dict[str, Any]:
    revocation = None
    if slash:
        revocation = {
            "slash_micro_block": slash,
            "stake_after_micro_block": 1_500_000_000 - slash,
            "slash_receipt": {"chain": "energy-0x01/slashes", "sequence": 1, "receipt_hash": "ab"}
            if receipt
            else None,
        }
    return {
        "dispute_id": f"dsp-{number:032d}",
        "status": status,
        "subject": {"kind": "meter_window", "meter_address": meter},
        "provider_id": "energy-0x01",
        "provider_owner": "prosumer13.demo",
        "flags": [{"flagged_by": f"detector:{detector}", "evidence": []}],
        "opened_at_ms": 1_796_104_732_000 + number,
        "votes": [{"validator": f"v{n}", "verdict": v} for n, v in enumerate(votes)],
        "severity": "major" if slash else None,
        "revocation": revocation,
    }


class Records:
    def __init__(self) -> None:
        self.by_status: dict[str, list[dict[str, Any]]] = {}

    def call(
        self,
        method: str,
        params: Mapping[str, Any] | Sequence[Any] | None = None,
        signer: Signer | None = None,
    ) -> Any:
        assert method == "energy.getDisputes" and isinstance(params, Mapping)
        return {"disputes": self.by_status.get(params["status"], []), "next_cursor": None}


def test_the_tally_counts_verdicts_slashes_and_flags_on_honest_meters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = Records()
    tally = DisputeTally(records, {"demo_solar_013": "solar_at_night"})
    records.by_status = {"open": [dispute(1, "demo_solar_013", "open")]}
    caplog.set_level(logging.INFO, logger="iot.demo")

    tally.refresh()
    records.by_status = {
        "guilty": [
            dispute(
                1,
                "demo_solar_013",
                "guilty",
                votes=["guilty"] * 3,
                slash=375_000_000,
                receipt=True,
            )
        ],
        "cleared": [
            dispute(2, "demo_wind_002", "cleared", detector="flat_line", votes=["cleared"] * 3)
        ],
    }
    tally.refresh()
    tally.refresh()

    status = tally.status()
    assert status["opened"] == 2 and status["guilty"] == 1 and status["cleared"] == 1
    assert status["against_cheaters"] == 1 and status["against_honest"] == 1
    assert status["votes"] == {"guilty": 3, "cleared": 3}
    assert status["slashed_micro_block"] == 375_000_000 and status["slash_receipts"] == 1
    assert status["by_detector"] == {"solar_at_night": 1, "flat_line": 1}
    lines = [r.getMessage() for r in caplog.records]
    assert sum("opened" in line for line in lines) == 2
    assert sum("slashed 375 BLOCK, stake now 1,125 BLOCK" in line for line in lines) == 1
    assert sum("slash receipt energy-0x01/slashes#1 written" in line for line in lines) == 1
    honest = [r for r in caplog.records if "an HONEST meter" in r.getMessage()]
    assert [r.levelno for r in honest] == [logging.WARNING]
