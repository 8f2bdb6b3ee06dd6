"""Ingest benchmark: what one meter reading costs, in CPU and in DynamoDB.

Printed, in one run:

1. Raw Ed25519 verifications per second (pynacl), the floor of any ingest.
2. Readings per second through the ingest use case (parse, duplicate check,
   rules, signature, minting, the metric line) with storage stubbed by the
   in-memory adapter, and the ratio of the two: the overhead of our own code
   per reading.
3. The same accepted reading through the DynamoDB adapter and botocore (request
   building, SigV4 signing, response parsing) with a canned answer in place of
   the network: what a reading costs the Lambda's CPU in production, and the
   share of it that is botocore's.
4. Batched delivery against one invocation per reading: botocore's CPU for
   one GetItem of a reading's provider against one BatchGetItem of 50
   readings' providers, per reading.
5. Against moto: DynamoDB requests, items read and capacity units per
   accepted reading, per duplicate (latest and older) and per rejection,
   and the registry stream reader's check that accepted readings' credits
   were written, computed by AWS's on-demand rules (bench/_capacity.py
   explains why moto's own figures are not used).

6. The floor: the same accepted reading as one function with no unit of
   work, repository or domain value (``bench/_floor.py``), checked to send
   the very requests the use case sends, timed the same way: what our own
   CPU would be if nothing but the unavoidable work were left.

``python -m bench.cost`` turns these figures into US dollars per million readings.

Run: ``.venv/bin/python bench/ingest.py`` (or ``make bench``).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as `python bench/ingest.py`: sys.path[0] is bench/

import boto3
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from moto import mock_aws
from nacl.signing import SigningKey

from bench import _floor
from bench._capacity import CapacityMeter, DynamoRequest, fmt_units
from bench._fake_aws import REGION, use_fake_aws_environment
from chalicelib import observability
from chalicelib.adapters.dynamodb import Tables
from chalicelib.adapters.dynamodb.layout import provider_key
from chalicelib.adapters.dynamodb.meters import INGEST_PROJECTION
from chalicelib.adapters.dynamodb.unit_of_work import DynamoUnitOfWork
from chalicelib.services.ingest import Status, record_payload, restore_credits
from energy_client.rpc_client import Signer
from infra.emulation import create_tables
from tests.support import (
    NOW,
    MarketHarness,
    SimulatedMeter,
    dynamodb_market,
    memory_market,
    metered_provider,
    provider_item_as_ingest_reads,
    tables_from_environment,
)

VERIFY_SAMPLES: Final = 3_000
INGEST_SAMPLES: Final = 3_000
BOTOCORE_SAMPLES: Final = 600
BATCH_READINGS: Final = 50  # readings an invocation would take from a queue
ROUNDS: Final = 5  # best-of and median over this many rounds
# Timed in CPU time (time.process_time): the machine the benchmarks run on is
# shared, and wall time would count other processes' turns as ours.
STEP_MS: Final = 5_000  # readings 5 s apart keep thousands inside the age window
STREAM_CHECK: Final = "stream: restore check, 3 readings"


@contextlib.contextmanager
def as_in_a_function() -> Iterator[None]:
    """Ingest as a function's process runs it: every outcome writes its metric
    line (``observability.configure``, which importing app.py calls), here to
    /dev/null; the line is part of a reading's CPU."""
    observability.configure()
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        yield


def raw_verify_rate() -> list[float]:
    key = SigningKey.generate()
    verify_key = key.verify_key
    signed = [key.sign(f"reading {n}".encode()) for n in range(VERIFY_SAMPLES)]
    rates = []
    for _ in range(ROUNDS):
        started = time.process_time()
        for message in signed:
            verify_key.verify(message)
        rates.append(VERIFY_SAMPLES / (time.process_time() - started))
    return rates


def readings_for(
    meter: SimulatedMeter, count: int, first_ms: int, step_ms: int = STEP_MS
) -> list[bytes]:
    return [meter.payload(1_000 + 10 * n, first_ms + n * step_ms) for n in range(count)]


def ingest_rate() -> tuple[list[float], list[float]]:
    """Accepted and duplicate readings per second through the use case, storage in memory."""
    accepted_rates, duplicate_rates = [], []
    for _ in range(ROUNDS):
        harness = memory_market()
        harness.clock.now = NOW + INGEST_SAMPLES * STEP_MS // 1000
        meter = metered_provider(harness, capacity_kwh=10_000)
        payloads = readings_for(meter, INGEST_SAMPLES, NOW * 1000)
        received = harness.clock.now * 1000
        started = time.process_time()
        for payload in payloads:
            outcome = record_payload(
                harness.deps,
                payload,
                topic_meter_address=meter.meter_address,
                received_at_ms=received,
            )
            assert outcome.status == Status.ACCEPTED, outcome
        accepted_rates.append(INGEST_SAMPLES / (time.process_time() - started))
        started = time.process_time()
        for payload in payloads:
            record_payload(
                harness.deps,
                payload,
                topic_meter_address=meter.meter_address,
                received_at_ms=received,
            )
        duplicate_rates.append(INGEST_SAMPLES / (time.process_time() - started))
    return accepted_rates, duplicate_rates


class _Body:
    """A canned HTTP body, as botocore reads one."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._content

    def read(self, *_: Any) -> bytes:
        return self._content


def canned_client(answers: dict[str, bytes], *, validate: bool = True) -> Any:
    """A real botocore DynamoDB client whose requests are built, signed and parsed
    as in production, answered from ``answers`` (by operation) instead of the network."""
    client = boto3.client(
        "dynamodb", region_name=REGION, config=Config(parameter_validation=validate)
    )

    def answer(request: Any, **_: Any) -> AWSResponse:
        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else target).split(".")[-1]
        headers = {"content-type": "application/x-amz-json-1.0"}
        return AWSResponse(request.url, 200, headers, _Body(answers.get(operation, b"{}")))

    client.meta.events.register("before-send", answer)
    return client


class ParsedAnswers:
    """A DynamoDB client that answers with botocore's parsed result directly: the
    DynamoDB adapter's own work (keys, item mapping, conditions) without botocore's."""

    def __init__(self, provider_item: dict[str, Any]) -> None:
        self._provider_item = provider_item

    def get_item(self, **_: Any) -> dict[str, Any]:
        return {"Item": self._provider_item}

    def update_item(self, **_: Any) -> dict[str, Any]:
        return {}

    def put_item(self, **_: Any) -> dict[str, Any]:
        return {}


class RecordedWrites(ParsedAnswers):
    """The same answers, keeping the write requests made (section 6 compares them)."""

    def __init__(self, provider_item: dict[str, Any]) -> None:
        super().__init__(provider_item)
        self.writes: list[tuple[str, dict[str, Any]]] = []

    def update_item(self, **request: Any) -> dict[str, Any]:
        self.writes.append(("UpdateItem", request))
        return {}

    def put_item(self, **request: Any) -> dict[str, Any]:
        self.writes.append(("PutItem", request))
        return {}


@dataclass(frozen=True)
class BotocoreFigures:
    accepted_per_second: list[float]  # the whole accepted path, botocore included
    adapter_per_second: list[float]  # the same on the DynamoDB adapter, botocore left out
    full_window_per_second: list[float]  # the same, a day of readings in the uptime window
    floor_per_second: list[float]  # the same reading as one function (bench/_floor.py)
    validated_per_second: list[float]  # botocore with its client-side parameter checks (default)
    get_1_us: float  # one GetItem of a reading's provider
    batch_get_us: float  # one BatchGetItem of BATCH_READINGS readings' providers
    writes_us: float  # a reading's two writes: UpdateItem (provider), PutItem (credit)


@dataclass(frozen=True)
class CannedReading:
    """A meter's next reading, and its provider's item as ingest reads it then."""

    harness: MarketHarness
    tables: Tables
    provider_item: dict[str, Any]
    payload: bytes
    meter_address: str
    received_at_ms: int


def canned_reading(now_s: int = NOW + 3_600) -> CannedReading:
    """After a baseline reading on moto, the provider's item (projected as ingest
    reads it after a meter's first reading) and the meter's next reading: any
    number of deliveries of it against that item are each accepted. The two
    readings are 1 and 0.5 minutes before ``now_s``."""
    use_fake_aws_environment()
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        tables: Tables = tables_from_environment(create_tables(client, "bench-cpu"))
        harness: MarketHarness = dynamodb_market(client, tables)
        harness.clock.now = now_s
        meter = metered_provider(harness, capacity_kwh=10_000)
        received = now_s * 1000
        baseline, payload = readings_for(meter, 2, received - 60_000, step_ms=30_000)
        outcome = record_payload(
            harness.deps, baseline, topic_meter_address=meter.meter_address, received_at_ms=received
        )
        assert outcome.status == Status.ACCEPTED, outcome
        provider_item = provider_item_as_ingest_reads(client, tables, meter.provider_id)
    return CannedReading(harness, tables, provider_item, payload, meter.meter_address, received)


def botocore_figures() -> BotocoreFigures:
    """The accepted path on the DynamoDB adapter, botocore included, network excluded:
    the same next reading ingested again and again against a canned provider's
    item (``canned_reading``: each time accepted, the answer never moves on)."""
    reading = canned_reading()
    harness, tables, provider_item = reading.harness, reading.tables, reading.provider_item
    payload, received, registry = reading.payload, reading.received_at_ms, tables.registry
    meter_address = reading.meter_address
    provider_id = provider_item["provider_id"]["S"]
    expression, names = INGEST_PROJECTION
    answers = {"GetItem": json.dumps({"Item": provider_item}).encode()}
    # As chalicelib.adapters.aws.dynamodb_client configures it: no client-side checks.
    canned = canned_client(answers, validate=False)
    deps = replace(harness.deps, unit_of_work=lambda: DynamoUnitOfWork(canned, tables))

    def rates_of(ingest_deps: Any, samples: int) -> list[float]:
        rates = []
        for _ in range(ROUNDS):
            started = time.process_time()
            for _ in range(samples):
                outcome = record_payload(
                    ingest_deps,
                    payload,
                    topic_meter_address=meter_address,
                    received_at_ms=received,
                )
                assert outcome.status == Status.ACCEPTED, outcome
            rates.append(samples / (time.process_time() - started))
        return rates

    rates = rates_of(deps, BOTOCORE_SAMPLES)
    validated = canned_client(answers)
    validated_rates = rates_of(
        replace(harness.deps, unit_of_work=lambda: DynamoUnitOfWork(validated, tables)),
        BOTOCORE_SAMPLES,
    )
    parsed = ParsedAnswers(provider_item)
    adapter_rates = rates_of(
        replace(harness.deps, unit_of_work=lambda: DynamoUnitOfWork(parsed, tables)),
        INGEST_SAMPLES,
    )
    # A meter reading every 15 minutes has all 96 slots of its window set.
    full_window = ParsedAnswers(provider_item | {"reading_slot_bits": {"N": str((1 << 96) - 1)}})
    full_window_rates = rates_of(
        replace(harness.deps, unit_of_work=lambda: DynamoUnitOfWork(full_window, tables)),
        INGEST_SAMPLES,
    )

    floor_rates = floor_figures(harness, tables, provider_item, payload, meter_address)

    many = [provider_item] * BATCH_READINGS
    batch_client = canned_client(
        {"BatchGetItem": json.dumps({"Responses": {registry: many}}).encode()}, validate=False
    )
    batch_keys = [provider_key(f"energy-{n:016x}") for n in range(BATCH_READINGS)]

    def best_us(call: Callable[[], Any]) -> float:
        timings = []
        for _ in range(ROUNDS):
            started = time.process_time()
            for _ in range(BOTOCORE_SAMPLES):
                call()
            timings.append((time.process_time() - started) / BOTOCORE_SAMPLES * 1e6)
        return min(timings)

    def get_one() -> Any:
        return canned.get_item(
            TableName=registry,
            Key=provider_key(provider_id),
            ConsistentRead=True,
            ProjectionExpression=expression,
            ExpressionAttributeNames=names,
            ReturnConsumedCapacity="TOTAL",
        )

    def get_batch() -> Any:
        return batch_client.batch_get_item(
            RequestItems={
                registry: {
                    "Keys": batch_keys,
                    "ConsistentRead": True,
                    "ProjectionExpression": expression,
                    "ExpressionAttributeNames": names,
                }
            },
            ReturnConsumedCapacity="TOTAL",
        )

    put = {
        "TableName": tables.credits,
        "Item": provider_item,
        "ConditionExpression": "attribute_not_exists(pk)",
    }
    update = {
        "TableName": registry,
        "Key": provider_key(provider_id),
        "UpdateExpression": "SET last_reading_hash = :h ADD available_wh :wh",
        "ConditionExpression": "last_reading_hash = :p",
        "ExpressionAttributeValues": {
            ":h": {"S": "a" * 64},
            ":p": {"S": "b" * 64},
            ":wh": {"N": "1000"},
        },
    }
    return BotocoreFigures(
        accepted_per_second=rates,
        adapter_per_second=adapter_rates,
        full_window_per_second=full_window_rates,
        floor_per_second=floor_rates,
        validated_per_second=validated_rates,
        get_1_us=best_us(get_one),
        batch_get_us=best_us(get_batch),
        writes_us=best_us(lambda: canned.update_item(**update))
        + best_us(lambda: canned.put_item(**put)),
    )


def check_floor(
    harness: MarketHarness,
    tables: Tables,
    provider_item: dict[str, Any],
    payload: bytes,
    meter_address: str,
) -> Callable[[Any], str]:
    """bench/_floor.py bound to this reading, once it has minted the reading the
    use case mints with the very requests the use case sends (``provider_item``
    is the provider's item as ingest reads it)."""
    settings = harness.deps.settings
    now_ms = harness.deps.now_ms()

    def floor(client: Any) -> str:
        return _floor.record_accepted(
            client,
            tables,
            payload,
            topic_meter_address=meter_address,
            now_ms=now_ms,
            max_clock_skew_ms=settings.max_clock_skew_ms,
            max_age_ms=settings.max_reading_age_ms,
            credit_lifetime_ms=settings.credit_lifetime_ms,
        )

    use_case, floored = RecordedWrites(provider_item), RecordedWrites(provider_item)
    outcome = record_payload(
        replace(harness.deps, unit_of_work=lambda: DynamoUnitOfWork(use_case, tables)),
        payload,
        topic_meter_address=meter_address,
        received_at_ms=now_ms,
    )
    assert outcome.status == Status.ACCEPTED, outcome
    assert floor(floored) == outcome.reading_hash
    assert floored.writes == use_case.writes, (floored.writes, use_case.writes)
    return floor


def floor_figures(
    harness: MarketHarness,
    tables: Tables,
    provider_item: dict[str, Any],
    payload: bytes,
    meter_address: str,
) -> list[float]:
    """Readings per second through bench/_floor.py, once it is shown to send the
    very requests the use case sends for the same reading."""
    floor = check_floor(harness, tables, provider_item, payload, meter_address)
    parsed = ParsedAnswers(provider_item)
    rates = []
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(INGEST_SAMPLES):
            floor(parsed)
        rates.append(INGEST_SAMPLES / (time.process_time() - started))
    return rates


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
        minted = []
        for label, step, expected in steps:
            with capacity.measuring() as requests:
                outcome = step()
            assert outcome.status == expected, (label, outcome)
            results.append((label, list(requests)))
            if outcome.credit is not None:
                minted.append(outcome.credit)
        # The registry stream's reader checks that each accepted reading's
        # credit was written (restore_credits), 100 to a BatchGetItem; here
        # the three readings above, in one request.
        with capacity.measuring() as requests:
            assert restore_credits(harness.deps, minted[-3:]) == 0
        results.append((STREAM_CHECK, list(requests)))
        return results


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def main() -> None:
    print("1-2. CPU per reading (one core; median and best of", ROUNDS, "rounds)")
    verify = raw_verify_rate()
    with as_in_a_function():
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
    verify_us = 1e6 / statistics.median(verify)
    own_us = 1e6 / statistics.median(accepted) - verify_us
    print(
        f"our own CPU per accepted reading: {own_us:.1f} us"
        f" = {own_us / verify_us:.2f} of a verification ({verify_us:.1f} us)"
    )
    print()
    print("3. The accepted path in production: DynamoDB adapter + botocore, no network")
    with as_in_a_function():
        figures = botocore_figures()
    production_us = 1e6 / statistics.median(figures.accepted_per_second)
    adapter_us = 1e6 / statistics.median(figures.adapter_per_second)
    print_table(
        ["path", "per second (median)", "best", "us per reading", "cost vs verify"],
        [
            [
                "ingest, accepted (DynamoDB adapter + botocore as configured, canned answers)",
                f"{statistics.median(figures.accepted_per_second):,.0f}",
                f"{max(figures.accepted_per_second):,.0f}",
                f"{production_us:,.0f}",
                f"{production_us / verify_us:.2f}",
            ],
            [
                "the same with botocore's parameter validation on (its default)",
                f"{statistics.median(figures.validated_per_second):,.0f}",
                f"{max(figures.validated_per_second):,.0f}",
                f"{1e6 / statistics.median(figures.validated_per_second):,.0f}",
                f"{1e6 / statistics.median(figures.validated_per_second) / verify_us:.2f}",
            ],
            [
                "ingest, accepted (DynamoDB adapter, parsed answers, no botocore)",
                f"{statistics.median(figures.adapter_per_second):,.0f}",
                f"{max(figures.adapter_per_second):,.0f}",
                f"{adapter_us:,.0f}",
                f"{adapter_us / verify_us:.2f}",
            ],
            [
                "the same, a day of readings in the meter's uptime window (96 slots)",
                f"{statistics.median(figures.full_window_per_second):,.0f}",
                f"{max(figures.full_window_per_second):,.0f}",
                f"{1e6 / statistics.median(figures.full_window_per_second):,.0f}",
                f"{1e6 / statistics.median(figures.full_window_per_second) / verify_us:.2f}",
            ],
        ],
    )
    print(
        f"our own CPU on the production path: {adapter_us - verify_us:.1f} us"
        f" = {(adapter_us - verify_us) / verify_us:.2f} of a verification;"
        f" botocore's: {production_us - adapter_us:,.0f} us"
    )
    print()
    print("4. Batched delivery: botocore CPU per reading (best of", ROUNDS, "rounds)")
    per_reading = figures.get_1_us + figures.writes_us
    batched = figures.batch_get_us / BATCH_READINGS + figures.writes_us
    print_table(
        ["delivery", "reads per reading", "write per reading", "botocore us per reading"],
        [
            [
                "one invocation per reading",
                f"GetItem(provider) {figures.get_1_us:,.0f} us",
                f"UpdateItem + PutItem {figures.writes_us:,.0f} us",
                f"{per_reading:,.0f}",
            ],
            [
                f"batches of {BATCH_READINGS} readings",
                f"BatchGetItem({BATCH_READINGS} keys)/{BATCH_READINGS}"
                f" {figures.batch_get_us / BATCH_READINGS:,.0f} us",
                f"UpdateItem + PutItem {figures.writes_us:,.0f} us",
                f"{batched:,.0f}",
            ],
        ],
    )
    print()
    print("5. DynamoDB per reading (moto; capacity computed by AWS on-demand rules)")
    rows = []
    with as_in_a_function():
        costs = dynamodb_costs()
    for label, requests in costs:
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
    print()
    print("6. The floor: the same accepted reading as one function, no layers (bench/_floor.py)")
    floor_us = 1e6 / statistics.median(figures.floor_per_second)
    print_table(
        ["path", "per second (median)", "best", "us per reading", "cost vs verify"],
        [
            [
                "one function sending the same requests (checked), parsed answers",
                f"{statistics.median(figures.floor_per_second):,.0f}",
                f"{max(figures.floor_per_second):,.0f}",
                f"{floor_us:,.0f}",
                f"{floor_us / verify_us:.2f}",
            ]
        ],
    )
    print(
        f"the floor of our own CPU: {floor_us - verify_us:.1f} us"
        f" = {(floor_us - verify_us) / verify_us:.2f} of a verification,"
        f" against {adapter_us - verify_us:.1f} us through the use case"
    )


if __name__ == "__main__":
    main()
