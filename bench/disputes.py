"""Dispute benchmark: the DynamoDB requests and capacity of a flag, a vote and a resolution.

Run from the repository root: ``.venv/bin/python -m bench.disputes``. It
prints figures; it asserts only that what it measures did its work.

Every step goes through the real code (the JSON-RPC dispatcher on the
DynamoDB adapter, moto in-process, tables from infra/template.yaml), and
every DynamoDB request the app makes is recorded and costed by AWS's
on-demand rules from item sizes (``bench/_capacity.py``), as in the other
benchmarks:

1. A provider with 60 credits of 500 Wh minted from signed readings; buyers
   have bought and settled some of them and hold a reservation on others; 5
   staked validators.
2. A flag on one reading, a joining flag, a non-deciding vote, and the
   deciding vote, which resolves the dispute (guilty: slash, revocation of the
   reading's credits with refunds, close with the slash receipt).
3. The same for a meter window holding 40 credits: the flag walks them once
   (for the buyers who may not judge), and the resolution revokes them 16 a
   page.
4. A cleared dispute resolved by the scheduled job at its deadline, and the
   job's run when nothing is due.
5. The fraud watch on a day of one meter's readings (96, delivered as the
   registry stream would, in batches of 100 records across meters): requests
   and units per reading.

Costs do not depend on the machine; a resolution's grow with the credits it
revokes (a page per 16), never with the market's history.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import boto3
from moto import mock_aws

from bench._capacity import CapacityMeter, RequestTotals
from bench._fake_aws import REGION, use_fake_aws_environment
from bench._printing import print_table, say
from chalicelib.domain.disputes import DEFAULT_VOTING_PERIOD_MS
from chalicelib.domain.fraud import MintedReading
from chalicelib.services import resolution
from chalicelib.services.fraud_watch import MeterEvent, watch_meters
from chalicelib.services.ingest import Status, record_payload
from energy_client.rpc_client import Signer
from infra.emulation import create_tables
from tests.support import (
    MarketHarness,
    SimulatedMeter,
    buy,
    dynamodb_market,
    metered_provider,
    selling_provider,
    tables_from_environment,
    validators,
)

STACK: Final = "energy-marketplace-bench-disputes"
VALIDATORS: Final = tuple(f"judge-{n}.theblock" for n in range(1, 6))
CREDITS: Final = 60
CREDIT_WH: Final = 500
WINDOW_CREDITS: Final = 40
DAY_READINGS: Final = 96
QUARTER_MS: Final = 15 * 60_000


@dataclass(frozen=True)
class Cost(RequestTotals):
    label: str = ""
    note: str = ""

    def by_operation(self) -> str:
        return ", ".join(f"{n} {op}" for op, n in sorted(self.operations.items()))


class Bench:
    def __init__(self, market: MarketHarness, meter: CapacityMeter) -> None:
        self.market, self.meter = market, meter
        self.costs: list[Cost] = []

    @contextmanager
    def measure(self, label: str, note: str = "") -> Iterator[None]:
        with self.meter.measuring() as requests:
            yield
        assert not any(r.error for r in requests), [r.error for r in requests if r.error]
        self.costs.append(Cost(list(requests), label, note))

    def call(self, method: str, params: dict[str, Any], signer: Signer | None = None) -> Any:
        return self.market.client.call(method, params, signer)


def set_up(market: MarketHarness) -> tuple[SimulatedMeter, dict[str, Signer], list[Signer]]:
    meter = selling_provider(market, [CREDIT_WH] * CREDITS)
    judges = {s.account: s for s in validators(market, *VALIDATORS)}
    buyers = [market.funded_account(f"buyer-{n}.theblock", block=100) for n in range(4)]
    # Buyers take the oldest credits: two settle, two keep reservations open.
    for n, buyer in enumerate(buyers):
        bought = buy(market, buyer, meter.provider_id, "0.75")  # a credit and a half
        if n < 2:
            market.client.call("energy.settle", {"transaction_id": bought["transaction_id"]}, buyer)
    return meter, judges, buyers


def dispute_round(
    bench: Bench,
    judges: dict[str, Signer],
    what: str,
    subject: dict[str, Any],
    flaggers: list[Signer],
) -> dict[str, Any]:
    with bench.measure(f"flag ({what}), opening the dispute"):
        dispute = bench.call(
            "energy.flagDispute", {**subject, "reason": "bench", "evidence": ["x"]}, flaggers[0]
        )
    with bench.measure(f"flag ({what}), joining it"):
        bench.call("energy.flagDispute", {**subject, "reason": "bench, too"}, flaggers[1])
    panel = dispute["panel"]
    ref = {"dispute_id": dispute["dispute_id"]}
    with bench.measure("vote, not deciding"):
        bench.call(
            "energy.voteOnDispute",
            {**ref, "verdict": "guilty", "severity": "major"},
            judges[panel[0]],
        )
    bench.call(
        "energy.voteOnDispute", {**ref, "verdict": "guilty", "severity": "major"}, judges[panel[1]]
    )
    with bench.measure(f"deciding vote + guilty resolution ({what})"):
        decided = bench.call(
            "energy.voteOnDispute",
            {**ref, "verdict": "guilty", "severity": "minor"},
            judges[panel[2]],
        )
    assert decided["status"] == "guilty", decided["status"]
    return dict(decided)


def run(market: MarketHarness, bench: Bench) -> dict[str, Any]:
    meter, judges, _ = set_up(market)
    flaggers = [market.funded_account(f"flagger-{n}.theblock", block=100) for n in range(2)]
    credits = bench.call("energy.getCredits", {"provider_id": meter.provider_id, "limit": 100})[
        "credits"
    ]
    # The reading bought first: its credit is split among two buyers.
    oldest = min(credits, key=lambda c: c["interval_end_ms"])
    reading = dispute_round(
        bench, judges, "one reading", {"credit_id": oldest["credit_id"]}, flaggers
    )
    ends = sorted({c["interval_end_ms"] for c in credits})
    window = {
        "meter_address": meter.meter_address,
        "window_start_ms": ends[-WINDOW_CREDITS],
        "window_end_ms": ends[-1] + 1,
    }
    windowed = dispute_round(
        bench, judges, f"meter window, {WINDOW_CREDITS} credits", window, flaggers
    )

    # A cleared dispute: one vote, then the deadline; the job resolves it.
    other = metered_provider(market, "other.theblock", capacity_kwh=10_000)
    start_ms = market.clock.now * 1000 - 10 * 60_000
    for n in range(3):
        record_payload(
            market.deps,
            other.payload(1_000 + n * 100, start_ms + n * 60_000),
            topic_meter_address=other.meter_address,
            received_at_ms=market.clock.now * 1000,
        )
    other_credit = bench.call("energy.getCredits", {"provider_id": other.provider_id})["credits"][0]
    cleared = bench.call(
        "energy.flagDispute",
        {"credit_id": other_credit["credit_id"], "reason": "bench"},
        flaggers[0],
    )
    bench.call(
        "energy.voteOnDispute",
        {"dispute_id": cleared["dispute_id"], "verdict": "cleared"},
        judges[cleared["panel"][0]],
    )
    market.clock.now += DEFAULT_VOTING_PERIOD_MS // 1000
    with bench.measure("job run: one dispute past its deadline, cleared"):
        job = resolution.run_disputes(market.deps)
    assert job.done == 1, job
    market.clock.now += 3600
    with bench.measure("job run: nothing due"):
        resolution.run_disputes(market.deps)

    # The fraud watch over a day of one meter's readings.
    watched = metered_provider(market, "watched.theblock", capacity_kwh=10)
    day_ms = (market.clock.now * 1000 // 86_400_000 + 1) * 86_400_000
    events, previous = [], None
    for n in range(DAY_READINGS + 1):
        at_ms = day_ms + n * QUARTER_MS
        market.clock.now = at_ms // 1000
        outcome = record_payload(
            market.deps,
            watched.payload(1_000 + n * 10, at_ms),
            topic_meter_address=watched.meter_address,
            received_at_ms=at_ms,
        )
        assert outcome.status == Status.ACCEPTED, outcome
        start = previous if previous is not None else at_ms
        events.append(
            MeterEvent(
                watched.meter_address,
                at_ms,
                MintedReading(start, at_ms, 10 if previous else 0),
                watched.provider_id,  # as the stream's image of the meter names it
            )
        )
        previous = at_ms
    with bench.measure(
        f"fraud watch, {DAY_READINGS + 1} readings, one per batch", note="per reading"
    ):
        for event in events:
            watch_meters(market.deps, [event])
    return {"reading": reading, "window": windowed}


def print_costs(bench: Bench) -> None:
    rows = []
    for cost in bench.costs:
        per = DAY_READINGS + 1 if cost.note == "per reading" else 1
        rows.append(
            [
                cost.label + (" (per reading)" if per > 1 else ""),
                f"{len(cost.requests) / per:.2f}" if per > 1 else str(len(cost.requests)),
                f"{cost.items_read / per:.2f}" if per > 1 else str(cost.items_read),
                f"{cost.rcu / per:.2f}",
                f"{cost.wcu_table / per:.2f} + {cost.wcu_index / per:.2f}",
            ]
        )
    print_table(["", "requests", "items read", "RCU", "WCU table + GSI"], rows, right={1, 2, 3, 4})
    print()
    for cost in bench.costs:
        say(f"{cost.label}: {cost.by_operation()}", indent="  ")


def main() -> int:
    use_fake_aws_environment()
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        inspector = boto3.client("dynamodb", region_name=REGION)
        tables = tables_from_environment(create_tables(client, STACK))
        market = dynamodb_market(client, tables)
        bench = Bench(market, CapacityMeter(client, inspector))
        outcome = run(market, bench)
    print("Disputes: DynamoDB requests and capacity units per step (AWS on-demand rules)")
    print("=" * 78)
    say(
        f"A provider with {CREDITS} credits of {CREDIT_WH} Wh, 4 buyers (2 settled, 2 "
        "reserved), 5 staked validators, 2 flaggers; the deciding vote resolves the dispute "
        "in the same call (verdict, revocation pages, close with the slash receipt)."
    )
    for name, dispute in outcome.items():
        revocation = dispute["revocation"]
        say(
            f"{name}: revoked {revocation['revoked_credits']} credits "
            f"({revocation['revoked_wh']} Wh), slash {revocation['slash_micro_block']:,} "
            f"micro-BLOCK, refunded {revocation['refunded_micro_block']:,} + escrow "
            f"{revocation['escrow_refunded_micro_block']:,}",
            indent="  ",
        )
    print()
    print_costs(bench)
    return 0


if __name__ == "__main__":
    sys.exit(main())
