"""Cost benchmark: US dollars per million accepted readings and per million purchases.

Every figure is counted, not guessed, except two stated assumptions: the
round trip of a DynamoDB request from Lambda in the same region (``--rtt-ms``,
which sets how long a Lambda waits and so its GB-seconds), and the API
handler's own CPU per call (5 ms; its DynamoDB requests are counted):

* DynamoDB requests and capacity units: counted on moto through the real code
  path and priced by AWS's on-demand rules (bench/_capacity.py), the same
  counting ``bench/ingest.py`` prints;
* Lambda CPU: measured here through the DynamoDB adapter and botocore with
  canned answers (``bench.ingest.botocore_figures``), at the memory size
  ``.chalice/config.json`` configures;
* IoT Core: one MQTT publish (well under 5 KB), one rule triggered and one
  action per reading, and the connection-minutes a meter holds between two
  readings (15 minutes).

Three designs of the accepted reading, side by side:

* "before": up to commit 734d793, a three-item transaction (meter, credit,
  provider), counted with ``bench/ingest.py`` at that commit: 1 BatchGetItem
  (2 RCU) and 1 TransactWriteItems (6 WCU on the tables, 3 on the credit's
  indexes) per accepted reading;
* "2-item transaction": up to commit 58c61fe, the meter's last reading on the
  provider's item, still one transaction (2 RCU; 4 WCU on the tables, 2 on
  the indexes), at the CPU ``bench/ingest.py`` measured at that commit;
* "after": counted live from the code as it is: one read (the provider's
  item), two plain conditional writes (the provider's item, then the credit),
  and the registry stream reader's eventually consistent check that the
  credit was written.

Batched delivery (IoT rule -> SQS -> Lambda in batches of 50) is priced
beside them from the same counts (docs/architecture.md says why it is not
built).

Then the ingest function at other memory sizes; whose time a reading's
Lambda bill pays for (the verification, our own code, botocore and the
round trips, each priced alone); and one purchase with its settlement.

Run: ``.venv/bin/python -m bench.cost [--rtt-ms 5]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import boto3
from moto import mock_aws

from bench._capacity import CapacityMeter, DynamoRequest
from bench._fake_aws import REGION, use_fake_aws_environment
from bench.ingest import (
    BATCH_READINGS,
    STREAM_CHECK,
    botocore_figures,
    canned_reading,
    dynamodb_costs,
    raw_verify_rate,
)
from tests.support import NOW, buy, dynamodb_market, selling_provider, tables_from_environment

# -- AWS list prices, us-east-1, USD ---------------------------------------------
# The list prices of the pages below as published since AWS's November 2024 cut
# of on-demand DynamoDB by 50 %. This machine cannot reach those pages, so they
# were not re-read on the date below: check them there before quoting a figure,
# and change them here when AWS does (every figure below is computed from them).
PRICES_CHECKED: Final = "as of November 2024 (written 2026-12-01, not re-fetched)"


@dataclass(frozen=True)
class Price:
    usd: float
    per: str
    source: str


PRICES: Final = {
    "iot_message": Price(
        1.00 / 1e6, "MQTT message (5 KB units)", "https://aws.amazon.com/iot-core/pricing/"
    ),
    "iot_connect_minute": Price(
        0.08 / 1e6, "connection-minute", "https://aws.amazon.com/iot-core/pricing/"
    ),
    "iot_rule": Price(0.15 / 1e6, "rule triggered", "https://aws.amazon.com/iot-core/pricing/"),
    "iot_action": Price(
        0.15 / 1e6, "rule action executed", "https://aws.amazon.com/iot-core/pricing/"
    ),
    "lambda_request": Price(0.20 / 1e6, "Lambda request", "https://aws.amazon.com/lambda/pricing/"),
    "lambda_gb_second": Price(
        0.0000166667, "GB-second (x86)", "https://aws.amazon.com/lambda/pricing/"
    ),
    "dynamodb_wru": Price(
        0.625 / 1e6, "write request unit", "https://aws.amazon.com/dynamodb/pricing/on-demand/"
    ),
    "dynamodb_rru": Price(
        0.125 / 1e6, "read request unit", "https://aws.amazon.com/dynamodb/pricing/on-demand/"
    ),
    # Lambda's own reads of a table's stream (an event source mapping) are free.
    "dynamodb_stream_read": Price(
        0.0, "stream read by a Lambda trigger", "https://aws.amazon.com/dynamodb/pricing/on-demand/"
    ),
    "sqs_request": Price(0.40 / 1e6, "SQS standard request", "https://aws.amazon.com/sqs/pricing/"),
    "api_request": Price(
        3.50 / 1e6, "REST API request", "https://aws.amazon.com/api-gateway/pricing/"
    ),
    "log_gb": Price(
        0.50, "GB of CloudWatch Logs ingested", "https://aws.amazon.com/cloudwatch/pricing/"
    ),
}

READING_INTERVAL_MINUTES: Final = 15  # a meter stays connected between readings
CHALICE_CONFIG: Final = ROOT / ".chalice" / "config.json"


def lambda_memory_mb(function: str) -> int:
    """A function's memory as .chalice/config.json sets it: its own, else the app's."""
    config = json.loads(CHALICE_CONFIG.read_text())
    own = config.get("lambda_functions", {}).get(function, {})
    return int(own.get("lambda_memory_size", config["lambda_memory_size"]))


INGEST_MEMORY_MB: Final = lambda_memory_mb("ingest_reading")
API_MEMORY_MB: Final = lambda_memory_mb("api_handler")
# A reading's log: the EMF metric line (~330 bytes) and Lambda's START/END/REPORT (~300).
LOG_BYTES_PER_INVOCATION: Final = 630
# CPU of one accepted reading (DynamoDB adapter and botocore, canned answers,
# measured as bench/ingest.py section 3 does) on commit 734d793: 1,120 us; on
# commit 58c61fe: 830 us.
BEFORE_CPU_MS: Final = 1.12
TRANSACTION_CPU_MS: Final = 0.83
SQS_BATCH: Final = 10  # a Lambda poller's ReceiveMessage / DeleteMessageBatch take 10


@dataclass(frozen=True)
class Usage:
    """What one unit of work (a reading, a purchase) uses of each priced thing."""

    label: str
    counts: dict[str, float]

    def usd_per_million(self) -> dict[str, float]:
        return {name: n * PRICES[name].usd * 1e6 for name, n in self.counts.items()}


# Lambda gives a function CPU in proportion to its memory, one vCPU at 1,769 MB
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html):
# below that, a millisecond of CPU (measured here on a whole core) takes
# longer in wall time, and wall time is what is billed.
FULL_VCPU_MEMORY_MB: Final = 1_769


def cpu_wall_ms(memory_mb: int, cpu_ms: float) -> float:
    """How long ``cpu_ms`` of CPU on a whole core takes at this memory size."""
    return cpu_ms * max(1.0, FULL_VCPU_MEMORY_MB / memory_mb)


def lambda_gb_seconds(memory_mb: int, cpu_ms: float, requests: float, rtt_ms: float) -> float:
    """GB-seconds of one invocation: billed per started millisecond of wall time,
    its CPU slowed to the memory size's share of a vCPU, plus its round trips."""
    return memory_mb / 1024 * math.ceil(cpu_wall_ms(memory_mb, cpu_ms) + requests * rtt_ms) / 1000


def dynamo_units(requests: list[DynamoRequest]) -> tuple[float, float]:
    reads = sum(r.read_units for r in requests)
    writes = sum(r.table_write_units + r.index_write_units for r in requests)
    return reads, writes


@dataclass(frozen=True)
class IngestCpu:
    cpu_ms: float  # one accepted reading on a whole core, botocore included
    requests: int  # its DynamoDB requests, each a round trip
    verify_ms: float  # of cpu_ms: the Ed25519 verification
    own_ms: float  # of cpu_ms: our own code (the use case, the DynamoDB adapter)


def reading_usages(rtt_ms: float) -> tuple[list[Usage], IngestCpu]:
    figures = botocore_figures()
    cpu_ms = 1_000 / max(figures.accepted_per_second)  # best round: the least disturbed
    verify_ms = 1_000 / max(raw_verify_rate())
    own_ms = 1_000 / max(figures.adapter_per_second) - verify_ms
    measured = dict(dynamodb_costs())
    after = measured["accepted reading"]
    after_rru, after_wru = dynamo_units(after)
    # The stream reader's check, per reading (it ran on 3); it shares the
    # invocation the reader makes anyway, so it adds no Lambda request.
    check_rru, _ = dynamo_units(measured[STREAM_CHECK])
    after_rru += check_rru / 3
    iot = {
        "iot_message": 1,
        "iot_connect_minute": READING_INTERVAL_MINUTES,
        "iot_rule": 1,
        "iot_action": 1,
    }
    log = LOG_BYTES_PER_INVOCATION / 1e9
    # Before: the three-item transaction, at the CPU measured on that commit.
    before = Usage(
        "before: 3-item transaction",
        iot
        | {
            "lambda_request": 1,
            "lambda_gb_second": lambda_gb_seconds(INGEST_MEMORY_MB, BEFORE_CPU_MS, 2, rtt_ms),
            "dynamodb_rru": 2,
            "dynamodb_wru": 9,
            "log_gb": log,
        },
    )
    transaction = Usage(
        "2-item transaction",
        iot
        | {
            "lambda_request": 1,
            "lambda_gb_second": lambda_gb_seconds(INGEST_MEMORY_MB, TRANSACTION_CPU_MS, 2, rtt_ms),
            "dynamodb_rru": 2,
            "dynamodb_wru": 6,
            "log_gb": log,
        },
    )
    now = Usage(
        "after: 2 plain writes",
        iot
        | {
            "lambda_request": 1,
            "lambda_gb_second": lambda_gb_seconds(INGEST_MEMORY_MB, cpu_ms, len(after), rtt_ms),
            "dynamodb_rru": after_rru,
            "dynamodb_wru": after_wru,
            "log_gb": log,
        },
    )
    # Batched: the rule sends to SQS; a Lambda takes 50 at a time, reads their
    # providers with one BatchGetItem, writes each reading alone
    # (a conditional write per reading: DynamoDB batches no conditions).
    saved_us = figures.get_1_us - figures.batch_get_us / BATCH_READINGS
    batch_cpu_ms = BATCH_READINGS * max(cpu_ms / 2, cpu_ms - saved_us / 1_000)
    writes_per_reading = len(after) - 1
    batched = Usage(
        f"after, batched by {BATCH_READINGS} via SQS",
        iot
        | {
            "sqs_request": 1 + 2 / SQS_BATCH,  # send; receive and delete per 10
            "lambda_request": 1 / BATCH_READINGS,
            "lambda_gb_second": lambda_gb_seconds(
                INGEST_MEMORY_MB,
                batch_cpu_ms,
                1 + BATCH_READINGS * writes_per_reading,
                rtt_ms,
            )
            / BATCH_READINGS,
            "dynamodb_rru": after_rru,  # a BatchGetItem bills each item as a GetItem
            "dynamodb_wru": after_wru,
            "log_gb": log / BATCH_READINGS + 330 / 1e9,
        },
    )
    return [before, transaction, now, batched], IngestCpu(cpu_ms, len(after), verify_ms, own_ms)


FOOTPRINT_READINGS: Final = 1_000

# The ingest function's process as Lambda runs it: app.py imported (so metric
# lines on), no awscrt (it is not in the Lambda zip), DynamoDB answered inside
# the process from the canned provider's item (no moto in it to weigh), the
# same accepted reading delivered FOOTPRINT_READINGS times. Its figures go to
# stderr: stdout carries the metric lines.
_FOOTPRINT_PROCESS: Final = """
import json, sys, time
sys.modules["awscrt"] = None
canned = json.load(sys.stdin)
started = time.process_time()
import app
import boto3
from botocore.awsrequest import AWSResponse

class Body:
    def __init__(self, content):
        self.content = content
    def stream(self, **_):
        yield self.content
    def read(self, *_):
        return self.content

found = json.dumps({"Item": canned["provider_item"]}).encode()

def answer(request, **_):
    operation = request.headers["X-Amz-Target"].decode().split(".")[-1]
    body = Body(found if operation == "GetItem" else b"{}")
    return AWSResponse(request.url, 200, {"content-type": "application/x-amz-json-1.0"}, body)

boto3.setup_default_session()
boto3.DEFAULT_SESSION.events.register("before-send.dynamodb", answer)
first = app.ingest_reading(canned["event"], None)
cold_start_ms = (time.process_time() - started) * 1000
for _ in range(canned["readings"] - 1):
    assert app.ingest_reading(canned["event"], None)["status"] == "accepted"
# VmHWM, not ru_maxrss: that one keeps the forking parent's peak across exec.
with open("/proc/self/status") as status:
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
peak_mb = peak_kb / 1024
print(json.dumps([first["status"], cold_start_ms, peak_mb]), file=sys.stderr)
"""


@dataclass(frozen=True)
class Footprint:
    peak_mb: float  # the process's peak resident memory
    cold_start_cpu_ms: float  # import app.py and handle the first reading, on a whole core


def ingest_footprint() -> Footprint:
    """The ingest function's process, measured in a subprocess of its own."""
    reading = canned_reading(int(time.time()))
    environment = use_fake_aws_environment(
        {
            "PYTHONPATH": str(ROOT),
            **{f"{name.upper()}_TABLE": table for name, table in asdict(reading.tables).items()},
        }
    )
    event = {
        "payload": base64.b64encode(reading.payload).decode(),
        "topic_meter_address": reading.meter_address,
        "received_at_ms": int(time.time() * 1000),
    }
    run = subprocess.run(
        [sys.executable, "-c", _FOOTPRINT_PROCESS],
        input=json.dumps(
            {"provider_item": reading.provider_item, "event": event, "readings": FOOTPRINT_READINGS}
        ),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        check=True,
    )
    status, cold_start_cpu_ms, peak_mb = json.loads(run.stderr.strip().splitlines()[-1])
    assert status == "accepted", run.stderr
    return Footprint(peak_mb, cold_start_cpu_ms)


def print_memory_sizes(ingest: IngestCpu, footprint: Footprint, rtt_ms: float) -> None:
    """The ingest function's Lambda bill per reading by memory size: less memory
    costs less per millisecond but gives less CPU, so the reading (and a cold
    start) takes longer; and the memory must hold the process."""
    print(
        f"{'memory MB':>10s}  {'x footprint':>11s}  {'CPU wall ms':>11s}  {'billed ms':>9s}"
        f"  {'cold start ms':>13s}  {'USD per million':>15s}"
    )
    for memory_mb in sorted({128, 256, 512, 1024, FULL_VCPU_MEMORY_MB, INGEST_MEMORY_MB}):
        gb_seconds = lambda_gb_seconds(memory_mb, ingest.cpu_ms, ingest.requests, rtt_ms)
        usd = gb_seconds * PRICES["lambda_gb_second"].usd * 1e6
        marker = "  (configured)" if memory_mb == INGEST_MEMORY_MB else ""
        print(
            f"{memory_mb:>10d}  {memory_mb / footprint.peak_mb:>11.1f}"
            f"  {cpu_wall_ms(memory_mb, ingest.cpu_ms):>11.2f}"
            f"  {gb_seconds / memory_mb * 1024 * 1000:>9.0f}"
            f"  {cpu_wall_ms(memory_mb, footprint.cold_start_cpu_ms):>13,.0f}"
            f"  {f'${usd:.3f}':>15s}{marker}"
        )


def print_time_shares(ingest: IngestCpu, rtt_ms: float) -> None:
    """Whose time an accepted reading's Lambda bill pays for, at the configured
    memory size: each share's wall time priced per GB-second as if billed
    alone (unrounded), so the shares show what cutting one would save."""
    stretch = cpu_wall_ms(INGEST_MEMORY_MB, 1.0)
    botocore_ms = ingest.cpu_ms - ingest.verify_ms - ingest.own_ms
    usd_per_ms = INGEST_MEMORY_MB / 1024 / 1000 * PRICES["lambda_gb_second"].usd * 1e6
    shares = [
        ("Ed25519 verification", ingest.verify_ms),
        ("our own code (use case, DynamoDB adapter)", ingest.own_ms),
        ("botocore (requests, signing, parsing)", botocore_ms),
    ]
    print(f"{'share':44s}  {'us on a core':>12s}  {'wall ms':>8s}  {'USD per million':>15s}")
    for label, cpu_ms in shares:
        wall_ms = cpu_ms * stretch
        print(
            f"{label:44s}  {cpu_ms * 1000:>12,.1f}  {wall_ms:>8.3f}"
            f"  {f'${wall_ms * usd_per_ms:.4f}':>15s}"
        )
    waits_ms = ingest.requests * rtt_ms
    label = f"waiting on DynamoDB ({ingest.requests} round trips)"
    print(f"{label:44s}  {'':>12s}  {waits_ms:>8.3f}  {f'${waits_ms * usd_per_ms:.4f}':>15s}")
    # Issue 15 aimed our own code at a quarter of a verification; what that would save.
    aimed_ms = min(ingest.own_ms, ingest.verify_ms / 4)
    saved = (ingest.own_ms - aimed_ms) * stretch * usd_per_ms
    print(
        f"our own code at a quarter of a verification would save ${saved:.4f} per million readings"
    )


def purchase_usage(rtt_ms: float) -> Usage:
    """One purchase of 1 kWh from a provider with credits on sale, then its settlement
    by the buyer: both API calls, counted on moto through the real dispatcher."""
    use_fake_aws_environment()
    with mock_aws():
        from infra.emulation import create_tables

        client = boto3.client("dynamodb", region_name=REGION)
        inspector = boto3.client("dynamodb", region_name=REGION)
        tables = tables_from_environment(create_tables(client, "bench-cost"))
        market = dynamodb_market(client, tables)
        market.clock.now = NOW
        seller = selling_provider(market, [1_500] * 6)
        buyer = market.funded_account("buyer.theblock", block=1_000)
        capacity = CapacityMeter(client, inspector)
        requests: list[DynamoRequest] = []
        with capacity.measuring() as purchase:
            bought = buy(market, buyer, seller.provider_id, "1", max_price="1")
        requests += purchase
        with capacity.measuring() as settle:
            market.client.call("energy.settle", {"transaction_id": bought["transaction_id"]}, buyer)
        requests += settle
    rru, wru = dynamo_units(requests)
    calls = 2
    return Usage(
        "purchase + settlement (2 API calls)",
        {
            "api_request": calls,
            "lambda_request": calls,
            # The API's own CPU is not measured here: 5 ms a call, stated.
            "lambda_gb_second": calls
            * lambda_gb_seconds(API_MEMORY_MB, 5, len(requests) / calls, rtt_ms),
            "dynamodb_rru": rru,
            "dynamodb_wru": wru,
            "log_gb": calls * LOG_BYTES_PER_INVOCATION / 1e9,
        },
    )


def print_usages(usages: list[Usage]) -> None:
    names = sorted({n for u in usages for n in u.counts}, key=list(PRICES).index)
    width = max(len(u.label) for u in usages)
    print(f"{'item':22s}" + "".join(f"  {u.label:>{width}s}" for u in usages))
    for name in names:
        cells = []
        for usage in usages:
            count = usage.counts.get(name, 0)
            usd = usage.usd_per_million().get(name, 0)
            cells.append(f"{_count(count):>10s} ${usd:>9.3f}".rjust(width))
        print(f"{name:22s}" + "".join(f"  {c}" for c in cells))
    totals = [sum(u.usd_per_million().values()) for u in usages]
    print(f"{'total per million':22s}" + "".join(f"  {f'${t:,.2f}':>{width}s}" for t in totals))


def _count(value: float) -> str:
    if value == 0:
        return "0"
    if value < 0.001:
        return f"{value:.2e}"
    return f"{Decimal(str(round(value, 4))).normalize():f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rtt-ms",
        type=float,
        default=5.0,
        help="assumed round trip of one DynamoDB request from Lambda (AWS: single-digit ms)",
    )
    args = parser.parse_args(argv)
    print(f"Prices: AWS list prices, us-east-1, {PRICES_CHECKED}")
    for name, price in PRICES.items():
        print(f"  {name:22s} ${price.usd:<14.10g} per {price.per}  {price.source}")
    print(f"Assumed DynamoDB round trip from Lambda: {args.rtt_ms} ms")
    print()
    print("Per million accepted readings (count per reading, USD per million readings)")
    usages, ingest = reading_usages(args.rtt_ms)
    print_usages(usages)
    print()
    footprint = ingest_footprint()
    print(
        f"The ingest function by memory size: its process peaks at {footprint.peak_mb:.0f} MB"
        f" (after {FOOTPRINT_READINGS:,} readings); a cold start (import app.py, the first"
        f" reading) takes {footprint.cold_start_cpu_ms:.0f} ms of CPU on a whole core"
        " (bytecode compiled already: bench/registry.py measures the cold start as deployed)"
    )
    print_memory_sizes(ingest, footprint, args.rtt_ms)
    print()
    print(
        f"Whose time a reading's Lambda bill pays for, at {INGEST_MEMORY_MB} MB"
        " (best rounds; each share priced alone, unrounded)"
    )
    print_time_shares(ingest, args.rtt_ms)
    print()
    print("Per million purchases (each settled by its buyer)")
    print_usages([purchase_usage(args.rtt_ms)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
