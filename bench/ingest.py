"""Ingest benchmark: what one meter reading costs, in CPU and in DynamoDB.

Printed, in one run:

1. Raw Ed25519 verifications per second (pynacl), the floor of any ingest.
2. Readings per second through the ingest use case (parse, duplicate check,
   rules, signature, minting) with storage stubbed by the in-memory adapter,
   and the ratio of the two: the overhead of our own code per reading.
3. Against moto: DynamoDB requests, items read and capacity units per
   accepted reading, per duplicate (latest and older) and per rejection,
   computed by AWS's on-demand rules (bench/_capacity.py explains why moto's
   own figures are not used).

Run: ``.venv/bin/python bench/ingest.py`` (or ``make bench``).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as `python bench/ingest.py`: sys.path[0] is bench/

import boto3
from moto import mock_aws
from nacl.signing import SigningKey

from bench._capacity import CapacityMeter, DynamoRequest, fmt_units
from bench._fake_aws import REGION, use_fake_aws_environment
from chalicelib.adapters.dynamodb import Tables
from chalicelib.services.ingest import Status, record_payload
from energy_client.rpc_client import Signer
from infra.emulation import create_tables
from tests.support import (
    NOW,
    MarketHarness,
    SimulatedMeter,
    dynamodb_market,
    memory_market,
    metered_provider,
    tables_from_environment,
)

VERIFY_SAMPLES: Final = 3_000
INGEST_SAMPLES: Final = 3_000
ROUNDS: Final = 5  # best-of and median over this many rounds
STEP_MS: Final = 5_000  # readings 5 s apart keep thousands inside the age window


def raw_verify_rate() -> list[float]:
    key = SigningKey.generate()
    verify_key = key.verify_key
    signed = [key.sign(f"reading {n}".encode()) for n in range(VERIFY_SAMPLES)]
    rates = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for message in signed:
            verify_key.verify(message)
        rates.append(VERIFY_SAMPLES / (time.perf_counter() - started))
    return rates


def readings_for(meter: SimulatedMeter, count: int, first_ms: int) -> list[bytes]:
    return [meter.payload(1_000 + 10 * n, first_ms + n * STEP_MS) for n in range(count)]


def ingest_rate() -> tuple[list[float], list[float]]:
    """Accepted and duplicate readings per second through the use case, storage in memory."""
    accepted_rates, duplicate_rates = [], []
    for _ in range(ROUNDS):
        harness = memory_market()
        harness.clock.now = NOW + INGEST_SAMPLES * STEP_MS // 1000
        meter = metered_provider(harness, capacity_kwh=10_000)
        payloads = readings_for(meter, INGEST_SAMPLES, NOW * 1000)
        received = harness.clock.now * 1000
        started = time.perf_counter()
        for payload in payloads:
            outcome = record_payload(
                harness.deps,
                payload,
                topic_meter_address=meter.meter_address,
                received_at_ms=received,
            )
            assert outcome.status == Status.ACCEPTED, outcome
        accepted_rates.append(INGEST_SAMPLES / (time.perf_counter() - started))
        started = time.perf_counter()
        for payload in payloads:
            record_payload(
                harness.deps,
                payload,
                topic_meter_address=meter.meter_address,
                received_at_ms=received,
            )
        duplicate_rates.append(INGEST_SAMPLES / (time.perf_counter() - started))
    return accepted_rates, duplicate_rates


def dynamodb_costs() -> list[tuple[str, list[DynamoRequest]]]:
    use_fake_aws_environment()
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        inspector = boto3.client("dynamodb", region_name=REGION)
        tables: Tables = tables_from_environment(create_tables(client, "bench-ingest"))
        harness: MarketHarness = dynamodb_market(client, tables)
        harness.clock.now = NOW + 3_600
        meter = metered_provider(harness, capacity_kwh=10_000)
        capacity = CapacityMeter(client, inspector)
        start_ms = NOW * 1000
        received = harness.clock.now * 1000
        payloads = readings_for(meter, 4, start_ms)
        forged = SimulatedMeter(
            meter.meter_address, meter.provider_id, Signer.generate("forger")
        ).payload(2_000, start_ms + 10 * STEP_MS)

        def ingest(payload: bytes) -> Callable[[], Any]:
            return lambda: record_payload(
                harness.deps,
                payload,
                topic_meter_address=meter.meter_address,
                received_at_ms=received,
            )

        steps = [
            ("first reading (baseline)", ingest(payloads[0]), Status.ACCEPTED),
            ("accepted reading", ingest(payloads[1]), Status.ACCEPTED),
            ("accepted reading (again)", ingest(payloads[2]), Status.ACCEPTED),
            ("duplicate of the latest", ingest(payloads[2]), Status.DUPLICATE),
            ("duplicate of an older one", ingest(payloads[1]), Status.DUPLICATE),
            ("rejected: bad signature", ingest(forged), Status.REJECTED),
            ("rejected: malformed JSON", ingest(b"{oops"), Status.REJECTED),
        ]
        results = []
        for label, step, expected in steps:
            with capacity.measuring() as requests:
                outcome = step()
            assert outcome.status == expected, (label, outcome)
            results.append((label, list(requests)))
        return results


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def main() -> None:
    print("1-2. CPU per reading (one core; median and best of", ROUNDS, "rounds)")
    verify = raw_verify_rate()
    accepted, duplicate = ingest_rate()
    rows = [
        [
            "raw Ed25519 verify (pynacl)",
            f"{statistics.median(verify):,.0f}",
            f"{max(verify):,.0f}",
            "1.00",
        ],
        [
            "ingest, accepted (storage in memory)",
            f"{statistics.median(accepted):,.0f}",
            f"{max(accepted):,.0f}",
            f"{statistics.median(verify) / statistics.median(accepted):.2f}",
        ],
        [
            "ingest, duplicate (storage in memory)",
            f"{statistics.median(duplicate):,.0f}",
            f"{max(duplicate):,.0f}",
            f"{statistics.median(verify) / statistics.median(duplicate):.2f}",
        ],
    ]
    print_table(["path", "per second (median)", "best", "cost vs verify"], rows)
    print()
    print("3. DynamoDB per reading (moto; capacity computed by AWS on-demand rules)")
    rows = []
    for label, requests in dynamodb_costs():
        operations = Counter(r.operation for r in requests)
        rows.append(
            [
                label,
                ", ".join(f"{n} {op}" for op, n in sorted(operations.items())),
                str(sum(r.read for r in requests)),
                fmt_units(sum(r.read_units for r in requests)),
                str(sum(r.writes for r in requests)),
                fmt_units(sum(r.table_write_units for r in requests)),
                fmt_units(sum(r.index_write_units for r in requests)),
            ]
        )
    print_table(
        ["reading", "requests", "items read", "RCU", "items written", "WCU table", "WCU GSI"], rows
    )


if __name__ == "__main__":
    main()
