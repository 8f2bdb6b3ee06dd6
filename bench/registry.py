"""Registry benchmark: DynamoDB cost per API call, and the Lambda cold start.

Run from the repository root: ``.venv/bin/python bench/registry.py`` (or
``make bench``). It prints figures. It asserts only that the calls it makes
succeed; nothing here passes or fails on speed.

1. DynamoDB cost per API call. On-demand DynamoDB bills per request unit, so
   what an ``energy.*`` call costs is how many DynamoDB requests it makes, how
   many items those requests read and how many capacity units they consume.
   The registry table first gets 1,000 providers (four energy types, eight
   jurisdictions, prices 0.04-0.30 BLOCK/kWh, capacities 1-1,000 kWh). Then
   each measured call takes the real path: ``app.rpc`` under
   ``chalice.test.Client``, ``chalicelib.wiring``, the JSON-RPC dispatcher, the
   use case, and ``DynamoUnitOfWork`` on the app's own boto3 client. The
   client talks to moto in-process (``mock_aws``), with the tables built by
   ``infra.emulation.create_tables`` from ``infra/template.yaml``.

   Two botocore event handlers on the app's client record each request.
   ``before-parameter-build.dynamodb`` gets the operation and its API
   parameters (``before-call`` has only the serialised body), and for a
   write it reads each item as it is before the write.
   ``after-call.dynamodb`` gets the parsed response, with ``Count``,
   ``ScannedCount`` and ``ConsumedCapacity``.

   moto's ``ConsumedCapacity`` is a constant per operation, not a measurement.
   A probe at the start of the run prints it next to the computed figure for a
   9 KB item. TransactWriteItems reports none at all. So the capacity columns
   are computed from item sizes by AWS's documented rules, and moto's figure is
   printed beside them with a label saying it is moto's:

   - item size: attribute name bytes + value bytes. A string counts its UTF-8
     bytes; a number 1 byte per two significant digits + 1; binary its raw
     bytes; bool and null 1; a list or map 3 + 1 per element + the elements;
     a set the sum of its elements;
   - reads are eventually consistent, as the app reads. GetItem costs 0.5 RCU
     per 4 KB of the item, rounded up, and at least 0.5 even when nothing is
     found. Query costs 0.5 RCU per 4 KB of the summed size of every item
     *read*, rounded up once. That includes items the filter expression then
     drops, which this script re-reads without the filter. On an index, the
     size is that of the projected entry (ALL here: the whole item);
   - writes cost 1 WCU per 1 KB of the larger of an item's before and after
     images, rounded up per item. Every global secondary index the write
     touches adds its own WCU: an insert or delete costs 1 per KB of the
     entry, a changed index key costs a delete plus an insert, and a change
     to projected attributes only costs 1 per KB. TransactWriteItems doubles
     the table writes. Index upkeep is counted once, because it happens
     asynchronously, outside the transaction.

   Seeding 1,000 providers through the API would take many minutes here.
   moto's TransactWriteItems deep-copies every table it touches, so each
   registration costs more than the one before. The run registers a sample
   through the API, fits that growth and prints the projection. When the
   projection exceeds the budget, the rest of the provider items are written
   directly with the adapter's own mapping (``provider_to_item`` + PutItem).

2. Cold start. Importing ``app.py`` is every Lambda function's cold start, so
   ``app.py`` defers chalicelib (pydantic, boto3, nacl, the method registry)
   to the first request. Each case runs in fresh subprocesses: median of 7,
   after one untimed warm-up round. The cases:

   - importing a bare Chalice app;
   - importing ``app``;
   - the first request as Lambda makes it: import ``app``, then call
     ``app.app(event, context)`` with an API Gateway proxy event for one
     ``energy.getMarketInfo``;
   - the same request with awscrt hidden, as in the deployed package.
     awscrt is installed here only because of awsiotsdk, a development
     requirement, and botocore imports it whenever it is present;
   - the same request through ``chalice.test.Client``, whose own start-up is
     not timed. The test client has already imported botocore and hundreds
     of other modules, so the request it carries looks cheaper than it is on
     Lambda.

   ``python -X importtime`` on the first request as deployed shows which
   packages its import time goes to.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as `python bench/registry.py`: sys.path[0] is bench/

import boto3
from moto import mock_aws

from bench._capacity import (
    CapacityMeter,
    DynamoRequest,
    ProbeRow,
    fmt_units,
    item_size,
    probe_moto_capacity,
)
from bench._fake_aws import REGION, use_fake_aws_environment
from bench._printing import print_table, say
from chalicelib.adapters.dynamodb.providers import provider_to_item
from chalicelib.domain.providers import EnergyType, Location, Provider, provider_id_for
from energy_client.rpc_client import MarketplaceClient, Signer, Transport
from infra.emulation import create_tables
from tests.support import registration_params

STACK: Final = "energy-marketplace-bench"
MARKETPLACE_ID: Final = "energy-marketplace-bench"
MICRO: Final = 1_000_000  # micro-BLOCK per BLOCK; micro-degrees per degree

PROVIDERS: Final = 1_000
OWNERS: Final = 100  # owner i % OWNERS owns provider i
API_SAMPLE: Final = 100  # registrations through the API before deciding how to seed the rest
API_SEED_BUDGET_SECONDS: Final = 120.0
RANDOM_SEED: Final = 20261124
PAGE: Final = 50

# Jurisdiction -> a point inside it (micro-degrees); its providers scatter around it.
JURISDICTIONS: Final = {
    "US_CA": (36_700_000, -119_400_000),
    "US_TX": (31_000_000, -99_900_000),
    "DE_BY": (48_800_000, 11_500_000),
    "DE_NW": (51_400_000, 7_600_000),
    "FR": (46_200_000, 2_200_000),
    "ES_AN": (37_500_000, -4_700_000),
    "GB": (54_000_000, -2_000_000),
    "AU_NSW": (-33_000_000, 147_000_000),
}
PRICE_RANGE: Final = (40_000, 300_000)  # micro-BLOCK per kWh
CAPACITY_RANGE_KWH: Final = (1, 1_000)

COLD_START_RUNS: Final = 7


# -- the market under measurement -----------------------------------------------


def decimal_text(millionths: int) -> str:
    """An integer in millionths as an exact decimal string: 80000 -> "0.080000"."""
    sign = "-" if millionths < 0 else ""
    return f"{sign}{abs(millionths) // MICRO}.{abs(millionths) % MICRO:06d}"


@dataclass(frozen=True)
class Listing:
    """One provider of the seeded market."""

    owner: str
    meter_address: str
    energy_type: EnergyType
    jurisdiction: str
    latitude_micro_deg: int
    longitude_micro_deg: int
    capacity_kwh: int
    price_micro_block_per_kwh: int

    @property
    def display_name(self) -> str:
        return f"{self.energy_type.value.title()} {self.meter_address}"

    def registration(self) -> dict[str, Any]:
        return registration_params(
            self.owner,
            display_name=self.display_name,
            capacity_kwh=str(self.capacity_kwh),
            price_per_kwh=decimal_text(self.price_micro_block_per_kwh),
            meter_address=self.meter_address,
            jurisdiction=self.jurisdiction,
            stake=1_000 * MICRO,
            energy_type=self.energy_type.value,
            latitude=decimal_text(self.latitude_micro_deg),
            longitude=decimal_text(self.longitude_micro_deg),
        )

    def provider(self, now: int) -> Provider:
        """The Provider that registerProvider builds from :meth:`registration`."""
        return Provider(
            provider_id=provider_id_for(self.owner, self.meter_address),
            owner=self.owner,
            display_name=self.display_name,
            energy_type=self.energy_type,
            jurisdiction=self.jurisdiction,
            location=Location(self.latitude_micro_deg, self.longitude_micro_deg),
            capacity_wh=self.capacity_kwh * 1_000,
            price_micro_block_per_kwh=self.price_micro_block_per_kwh,
            stake_micro_block=1_000 * MICRO,
            meter_address=self.meter_address,
            meter_public_key=Signer.generate("meter").public_key,
            created_at=now,
            updated_at=now,
        )


def owner_name(index: int) -> str:
    return f"owner-{index:03d}.bench"


def plan_listings(rng: random.Random) -> list[Listing]:
    planned = []
    for i in range(PROVIDERS):
        jurisdiction = rng.choice(list(JURISDICTIONS))
        latitude, longitude = JURISDICTIONS[jurisdiction]
        energy_type = rng.choice(list(EnergyType))
        planned.append(
            Listing(
                owner=owner_name(i % OWNERS),
                meter_address=f"{energy_type.value}_meter_{i:04d}",
                energy_type=energy_type,
                jurisdiction=jurisdiction,
                latitude_micro_deg=latitude + rng.randint(-500_000, 500_000),
                longitude_micro_deg=longitude + rng.randint(-500_000, 500_000),
                capacity_kwh=rng.randint(*CAPACITY_RANGE_KWH),
                price_micro_block_per_kwh=rng.randint(*PRICE_RANGE),
            )
        )
    return planned


def chalice_transport(http: Any) -> Transport:
    """POST /rpc through chalice.test.Client: app.py's route handler, as Lambda runs it."""

    def send(body: bytes) -> bytes | None:
        response = http.post("/rpc", body=body, headers={"Content-Type": "application/json"})
        payload: bytes = response.body
        return payload or None

    return send


@dataclass
class SeedReport:
    accounts_seconds: float = 0.0
    through_api: int = 0
    api_seconds: float = 0.0
    first_half_ms: float = 0.0
    second_half_ms: float = 0.0
    projected_api_seconds: float = 0.0
    written_directly: int = 0
    direct_seconds: float = 0.0


def seed(
    api: MarketplaceClient,
    operator: Signer,
    inspector: Any,
    registry_table: str,
    planned: Sequence[Listing],
) -> SeedReport:
    report = SeedReport()
    started = time.perf_counter()
    owners: dict[str, Signer] = {}
    for i in range(OWNERS):
        signer = Signer.generate(owner_name(i))
        api.create_account(signer)
        api.deposit(operator, signer.account, 100_000 * MICRO, f"0xseed-{i:03d}")
        owners[signer.account] = signer
    report.accounts_seconds = time.perf_counter() - started

    def register(listing: Listing) -> None:
        api.call("energy.registerProvider", listing.registration(), owners[listing.owner])

    durations: list[float] = []
    for listing in planned[:API_SAMPLE]:
        started = time.perf_counter()
        register(listing)
        durations.append(time.perf_counter() - started)
    report.through_api = len(durations)
    report.api_seconds = sum(durations)
    half = len(durations) // 2
    report.first_half_ms = 1_000 * statistics.mean(durations[:half])
    report.second_half_ms = 1_000 * statistics.mean(durations[half:])
    # A registration costs about a + b * (providers already stored): fit it, sum it.
    fit = statistics.linear_regression(range(len(durations)), durations)
    report.projected_api_seconds = report.api_seconds + sum(
        max(0.0, fit.intercept + fit.slope * n) for n in range(len(durations), len(planned))
    )

    rest = planned[report.through_api :]
    if report.projected_api_seconds <= API_SEED_BUDGET_SECONDS:
        started = time.perf_counter()
        for listing in rest:
            register(listing)
        report.api_seconds += time.perf_counter() - started
        report.through_api += len(rest)
        return report
    started = time.perf_counter()
    now = int(time.time())
    for listing in rest:
        inspector.put_item(
            TableName=registry_table,
            Item=provider_to_item(listing.provider(now)),
            ConditionExpression="attribute_not_exists(pk)",
        )
    report.direct_seconds = time.perf_counter() - started
    report.written_directly = len(rest)
    return report


# -- measuring the calls ------------------------------------------------------------


@dataclass
class CallCost:
    label: str
    requests: list[DynamoRequest]

    def _queries(self) -> list[DynamoRequest]:
        return [r for r in self.requests if r.operation == "Query"]

    @property
    def operations(self) -> str:
        counted = Counter(r.operation for r in self.requests)
        return ", ".join(f"{n} {operation}" for operation, n in counted.items())

    @property
    def items_read(self) -> str:
        queries = self._queries()
        if not queries:
            return "-"
        return f"{sum(r.read for r in queries)} ({sum(r.returned for r in queries)})"

    @property
    def write_units(self) -> str:
        table = sum(r.table_write_units for r in self.requests)
        index = sum(r.index_write_units for r in self.requests)
        return f"{fmt_units(table)} + {fmt_units(index)}" if table else "-"

    @property
    def read_units(self) -> str:
        return fmt_units(sum(r.read_units for r in self.requests))

    @property
    def moto(self) -> str:
        reported = [r.moto_units for r in self.requests if r.moto_units is not None]
        missing = len(self.requests) - len(reported)
        text = fmt_units(sum(reported)) if reported else "-"
        return f"{text} ({missing} with none)" if missing else text


def measure_calls(
    api: MarketplaceClient, meter: CapacityMeter, operator: Signer
) -> tuple[list[CallCost], list[str]]:
    """Run each measured call once; return its cost and a note on its parameters."""
    costs: list[CallCost] = []
    notes: list[str] = []

    def measure(label: str, call: Callable[[], Any], note: str) -> Any:
        with meter.measuring() as requests:
            result = call()  # MarketplaceClient.call raises RpcError unless the call succeeded
        assert all(r.error is None for r in requests), [r.error for r in requests]
        costs.append(CallCost(label, requests))
        notes.append(f"{label}: {note}")
        return result

    newcomer = Signer.generate("newcomer.bench")
    measure(
        "energy.createAccount",
        lambda: api.create_account(newcomer),
        "a new account (account, balance and nonce items)",
    )
    measure(
        "energy.deposit",
        lambda: api.deposit(operator, newcomer.account, 5_000 * MICRO, "0xbench-deposit"),
        "5,000 BLOCK to that account, signed by the operator",
    )
    registration = registration_params(
        newcomer.account,
        meter_address="newcomer_meter_0001",
        stake=1_000 * MICRO,
        jurisdiction="DE_BY",
        energy_type="wind",
    )
    provider = measure(
        "energy.registerProvider",
        lambda: api.call("energy.registerProvider", registration, newcomer),
        "the 1,001st provider, its owner's first (so the provider role is granted too)",
    )
    measure(
        "energy.getProvider",
        lambda: api.call("energy.getProvider", {"provider_id": provider["provider_id"]}),
        "that provider",
    )
    listing_cases: list[tuple[str, dict[str, Any]]] = [
        ("no filter", {}),
        ("energy_type", {"energy_type": "wind"}),
        ("jurisdiction+max_price", {"jurisdiction": "DE_BY", "max_price": "0.10"}),
        ("min_capacity", {"min_capacity": "900"}),
    ]
    for name, filters in listing_cases:
        params = {**filters, "limit": PAGE}
        page = measure(
            f"energy.listProviders ({name})",
            partial(api.call, "energy.listProviders", params),
            f"params {params}, first page",
        )
        assert page["providers"], f"listProviders {params} returned nothing"
        if "min_capacity" in filters:
            assert all(p["capacity_wh"] >= 900_000 for p in page["providers"])
    account = measure(
        "energy.getAccount (1 provider)",
        lambda: api.call("energy.getAccount", {"name": newcomer.account}),
        "the new account, owner of the new provider",
    )
    assert account["providers"] == [provider["provider_id"]]
    owned = PROVIDERS // OWNERS
    seeded = measure(
        f"energy.getAccount ({owned} providers)",
        lambda: api.call("energy.getAccount", {"name": owner_name(0)}),
        f"a seeded owner of {owned} providers (its providers are read through ProvidersByOwner)",
    )
    assert len(seeded["providers"]) == owned
    return costs, notes


@dataclass
class DynamoReport:
    moto_version: str
    probe: list[ProbeRow]
    seed: SeedReport
    costs: list[CallCost]
    notes: list[str]
    item_bytes: list[int] = field(default_factory=list)


def run_dynamodb_benchmark() -> DynamoReport:
    import moto

    use_fake_aws_environment()
    with mock_aws():
        inspector = boto3.client("dynamodb", region_name=REGION)
        tables = create_tables(inspector, STACK)
        probe_table = create_tables(inspector, STACK + "-probe")["REGISTRY_TABLE"]
        operator = Signer.generate("operator")
        use_fake_aws_environment(
            {**tables, "MARKETPLACE_ID": MARKETPLACE_ID, "OPERATOR_PUBLIC_KEY": operator.public_key}
        )
        # Imported here: the app reads its settings on first use, from the environment above.
        from chalice.test import Client

        import app
        from chalicelib.adapters.aws import dynamodb_client

        with Client(app.app, stage_name="dev", project_dir=str(ROOT)) as chalice_client:
            api = MarketplaceClient(chalice_transport(chalice_client.http), MARKETPLACE_ID)
            info = api.call("energy.getMarketInfo")  # builds the app's client and dispatcher
            assert info["marketplace_id"] == MARKETPLACE_ID
            meter = CapacityMeter(dynamodb_client(), inspector)

            probe = probe_moto_capacity(dynamodb_client(), meter, probe_table)

            seeded = seed(
                api,
                operator,
                inspector,
                tables["REGISTRY_TABLE"],
                plan_listings(random.Random(RANDOM_SEED)),
            )
            costs, notes = measure_calls(api, meter, operator)
        item_bytes = [
            item_size(item)
            for energy_type in EnergyType
            for page in inspector.get_paginator("query").paginate(
                TableName=tables["REGISTRY_TABLE"],
                IndexName="ProvidersByEnergyType",
                KeyConditionExpression="energy_type = :t",
                ExpressionAttributeValues={":t": {"S": str(energy_type)}},
            )
            for item in page["Items"]
        ]
    return DynamoReport(moto.__version__, probe, seeded, costs, notes, item_bytes)


# -- cold start -------------------------------------------------------------------

_IMPORT_ONLY: Final = """
import time
started = time.perf_counter()
import {module}
imported = time.perf_counter()
print(imported - started, 0.0)
"""

_GET_MARKET_INFO: Final = '{"jsonrpc":"2.0","id":1,"method":"energy.getMarketInfo"}'

# The first request as Lambda makes it: the handler is the Chalice app object,
# called with an API Gateway (REST, proxy) event.
_FIRST_REQUEST_LAMBDA: Final = f"""
import time
started = time.perf_counter()
import app
imported = time.perf_counter()
event = {{
    "resource": "/rpc", "path": "/rpc", "httpMethod": "POST",
    "headers": {{"content-type": "application/json"}},
    "multiValueQueryStringParameters": None, "pathParameters": None, "stageVariables": None,
    "requestContext": {{
        "resourcePath": "/rpc", "httpMethod": "POST", "path": "/api/rpc", "stage": "api",
        "identity": {{"sourceIp": "127.0.0.1"}},
    }},
    "body": {_GET_MARKET_INFO!r}, "isBase64Encoded": False,
}}
before = time.perf_counter()
response = app.app(event, None)
handled = time.perf_counter()
if response["statusCode"] != 200 or '"result"' not in response["body"]:
    raise SystemExit(f"getMarketInfo failed: {{response}}")
print(imported - started, handled - before)
"""

# The Lambda package (chalice package, requirements.txt) has no awscrt: it comes with
# awsiotsdk, a development requirement. botocore imports it whenever it is installed.
_WITHOUT_AWSCRT: Final = (
    'import sys\nsys.modules["awscrt"] = None  # import awscrt -> ImportError\n'
)

# The same request through chalice.test.Client. Its start-up and one request to an
# unknown route (which exercises only the harness) are not timed.
_FIRST_REQUEST_TEST_CLIENT: Final = f"""
import time
started = time.perf_counter()
import app
imported = time.perf_counter()
from chalice.test import Client
client = Client(app.app, stage_name="dev", project_dir=".")
client.http.get("/bench-warm-up")
before = time.perf_counter()
response = client.http.post(
    "/rpc", body={_GET_MARKET_INFO.encode()!r}, headers={{"Content-Type": "application/json"}}
)
handled = time.perf_counter()
if response.status_code != 200 or b'"result"' not in response.body:
    raise SystemExit(f"getMarketInfo failed: {{response.status_code}} {{response.body!r}}")
print(imported - started, handled - before)
"""


@dataclass(frozen=True)
class ColdStartCase:
    label: str
    code: str
    cwd: Path


@dataclass
class ColdStartResult:
    case: ColdStartCase
    imports: list[float] = field(default_factory=list)  # `import <module>`, seconds
    calls: list[float] = field(default_factory=list)  # the first request (0 if none), seconds
    wall: list[float] = field(default_factory=list)  # the whole subprocess, seconds

    @property
    def totals(self) -> list[float]:
        return [i + c for i, c in zip(self.imports, self.calls, strict=True)]


def _run_python(code: str, cwd: Path, env: Mapping[str, str], *flags: str) -> tuple[str, str]:
    finished = subprocess.run(
        [sys.executable, *flags, "-c", code],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if finished.returncode != 0:
        raise RuntimeError(f"subprocess failed ({finished.returncode}):\n{finished.stderr}")
    return finished.stdout, finished.stderr


def run_cold_starts(env: Mapping[str, str], bare_dir: Path) -> list[ColdStartResult]:
    cases = [
        ColdStartCase("bare Chalice app: import", _IMPORT_ONLY.format(module="bare_app"), bare_dir),
        ColdStartCase("app.py: import", _IMPORT_ONLY.format(module="app"), ROOT),
        ColdStartCase("first request, Lambda handler", _FIRST_REQUEST_LAMBDA, ROOT),
        ColdStartCase(
            "first request, Lambda handler, no awscrt",
            _WITHOUT_AWSCRT + _FIRST_REQUEST_LAMBDA,
            ROOT,
        ),
        ColdStartCase("first request, chalice.test.Client", _FIRST_REQUEST_TEST_CLIENT, ROOT),
    ]
    results = [ColdStartResult(case) for case in cases]
    for round_number in range(COLD_START_RUNS + 1):
        for result in results:  # interleaved, so drift affects every case alike
            started = time.perf_counter()
            stdout, _ = _run_python(result.case.code, result.case.cwd, env)
            wall = time.perf_counter() - started
            if round_number == 0:
                continue  # warm-up round: the page cache, and .pyc files where they are written
            import_seconds, call_seconds = (float(x) for x in stdout.split())
            result.imports.append(import_seconds)
            result.calls.append(call_seconds)
            result.wall.append(wall)
    return results


_IMPORTTIME_LINE: Final = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)")


def heaviest_imports(env: Mapping[str, str], top: int = 5) -> tuple[list[tuple[str, float]], float]:
    """Self import time of the first request as deployed, summed by top-level package."""
    code = _WITHOUT_AWSCRT + _FIRST_REQUEST_LAMBDA
    _, stderr = _run_python(code, ROOT, env, "-X", "importtime")
    by_package: defaultdict[str, float] = defaultdict(float)
    for line in stderr.splitlines():
        match = _IMPORTTIME_LINE.match(line)
        if match:
            by_package[match.group(3).split(".")[0]] += int(match.group(1)) / 1_000
    ranked = sorted(by_package.items(), key=lambda pair: pair[1], reverse=True)
    return ranked[:top], sum(by_package.values())


def bytecode_note(env: Mapping[str, str]) -> str:
    cached = any(ROOT.joinpath("chalicelib").rglob("__pycache__"))
    if env.get("PYTHONDONTWRITEBYTECODE") and not cached:
        return (
            "app.py and chalicelib are compiled from source in every run (PYTHONDONTWRITEBYTECODE "
            "is set and there is no __pycache__), as on Lambda, where the package holds sources "
            "only. The installed packages load from their .pyc files. A chalice package zip has "
            "no .pyc for them either, so Lambda compiles them too."
        )
    return (
        "app.py and chalicelib load from .pyc files written by an earlier run. On Lambda the "
        "package holds sources only, so Lambda compiles them on every cold start."
    )


# -- printing ---------------------------------------------------------------------


def print_dynamodb_report(report: DynamoReport) -> None:
    seeded = report.seed
    print(f"1. DynamoDB cost per API call (moto {report.moto_version}, in-process mock_aws)")
    print()
    print("1a. What moto reports as ConsumedCapacity (ReturnConsumedCapacity=TOTAL), 9 KB item:")
    print()
    print_table(
        ["operation", "moto reports", "DynamoDB on-demand would charge (computed)"],
        [
            [
                r.operation,
                "nothing" if r.moto_units is None else fmt_units(r.moto_units),
                r.computed,
            ]
            for r in report.probe
        ],
        right=set(),
    )
    print()
    say(
        "moto reports a constant per operation, whatever the item size, and nothing for "
        "TransactWriteItems. So in 1c the RCU and WCU columns are computed from item sizes by "
        "AWS's rules (see the module docstring). moto's own figure is shown for reference only."
    )
    print()
    print("1b. Seeding")
    print()
    say(
        f"{OWNERS} accounts, each with a deposit, through the API: {seeded.accounts_seconds:.1f} s. "
        f"{seeded.through_api} providers through the API: {seeded.api_seconds:.1f} s "
        f"(first {API_SAMPLE // 2}: {seeded.first_half_ms:.0f} ms each; "
        f"next {API_SAMPLE - API_SAMPLE // 2}: {seeded.second_half_ms:.0f} ms each)."
    )
    if seeded.written_directly:
        say(
            f"Registering all {PROVIDERS:,} through the API is projected to take "
            f"{seeded.projected_api_seconds:,.0f} s, over the {API_SEED_BUDGET_SECONDS:.0f} s "
            "budget: moto's TransactWriteItems deep-copies the tables it touches, so each "
            f"registration costs more than the one before. So the other "
            f"{seeded.written_directly} provider items were written directly "
            f"(provider_to_item + PutItem) in {seeded.direct_seconds:.1f} s. Their meter claims "
            "and stake ledger entries were not written; no measured call reads them."
        )
    sizes = report.item_bytes
    say(
        f"Provider items: {len(sizes):,}, {min(sizes)}-{max(sizes)} B each (median "
        f"{statistics.median(sizes):.0f} B), over {len(EnergyType)} energy types and "
        f"{len(JURISDICTIONS)} jurisdictions."
    )
    print()
    print("1c. Cost per call")
    print()
    print_table(
        [
            "call",
            "DynamoDB requests",
            "items read (returned)",
            "RCU",
            "WCU table + GSI",
            "moto CU",
        ],
        [
            [c.label, c.operations, c.items_read, c.read_units, c.write_units, c.moto]
            for c in report.costs
        ],
        right={2, 3, 4},
    )
    print()
    say(
        "items read (returned): Query only, summed ScannedCount (Count). RCU and WCU: computed "
        "on-demand request units, reads eventually consistent. moto CU: the sum of what moto "
        "reported, and how many requests it reported nothing for."
    )
    for note in report.notes:
        say(note, indent="  ")
    print()
    print("Per request (computed; moto's figure in brackets):")
    targets = [r.target for cost in report.costs for r in cost.requests]
    width = max(len(t) for t in targets) + 2
    for cost in report.costs:
        print(f"  {cost.label}")
        for r in cost.requests:
            moto = "-" if r.moto_units is None else fmt_units(r.moto_units)
            if r.operation == "Query":
                detail = (
                    f"read {r.read} (returned {r.returned}), "
                    f"{r.read_bytes:,} B -> {fmt_units(r.read_units)} RCU"
                )
            elif r.operation == "GetItem":
                detail = f"{r.read_bytes:,} B -> {fmt_units(r.read_units)} RCU"
            else:
                detail = (
                    f"{r.writes} item(s), {r.write_bytes:,} B -> "
                    f"{fmt_units(r.table_write_units)} + {fmt_units(r.index_write_units)} WCU"
                )
            print(f"    {r.operation:<20}{r.target:<{width}}{detail}  [moto {moto}]")


def print_cold_start_report(
    results: Sequence[ColdStartResult],
    heaviest: tuple[list[tuple[str, float]], float],
    note: str,
) -> None:
    print(
        f"2. Cold start (fresh subprocesses, {COLD_START_RUNS} runs per case; Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs)"
    )
    print()
    bare = statistics.median(results[0].totals)

    def ms(seconds: float) -> str:
        return f"{1_000 * seconds:.1f}"

    print_table(
        ["case", "import", "first call", "total", "min total", "x bare", "process wall"],
        [
            [
                r.case.label,
                ms(statistics.median(r.imports)),
                ms(statistics.median(r.calls)) if any(r.calls) else "-",
                ms(statistics.median(r.totals)),
                ms(min(r.totals)),
                f"{statistics.median(r.totals) / bare:.1f}x",
                f"{1_000 * statistics.median(r.wall):.0f}",
            ]
            for r in results
        ],
        right={1, 2, 3, 4, 5, 6},
    )
    print()
    say(
        "Milliseconds. import, first call, total: medians of perf_counter spans inside the "
        "subprocess (the first call includes building the boto3 client and the dispatcher); "
        "min total: the fastest run. x bare: median total over the bare app's. process wall: "
        "median of the whole `python -c` subprocess, with interpreter start-up and, in the last "
        "row, the test client's start-up."
    )
    say(
        "The Lambda handler rows time the real cold start: import app, then app.app(event, "
        "context). The 'no awscrt' row is the deployed package. awscrt is installed here only "
        "because awsiotsdk, a development requirement, brings it, and botocore imports it "
        "whenever it is present. chalice.test.Client imports botocore, urllib3 and some 480 "
        "other modules before the timed call, so in its row the first request looks cheaper "
        "than it is."
    )
    say(note)
    print()
    ranked, total = heaviest
    say(
        "Heaviest imports of the first request as deployed (Lambda handler, no awscrt; "
        "python -X importtime, self time "
        f"summed by top-level package, {total:.0f} ms in all with importtime's own overhead):"
    )
    for package, package_ms in ranked:
        print(f"  {package:<20}{package_ms:7.1f} ms")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python bench/registry.py", description=__doc__)
    # The DynamoDB part takes minutes; a change to what app.py imports needs part 2 only.
    parser.add_argument(
        "--cold-start-only", action="store_true", help="measure part 2 (the cold start) only"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print("Registry benchmark: DynamoDB cost per API call, and the Lambda cold start")
    print("=" * 74)
    print()
    if not args.cold_start_only:
        print_dynamodb_report(run_dynamodb_benchmark())
        print()
    env = use_fake_aws_environment()
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as bare_dir:
        Path(bare_dir, "bare_app.py").write_text(
            'from chalice import Chalice\n\napp = Chalice(app_name="bare")\n', encoding="utf-8"
        )
        cold = run_cold_starts(env, Path(bare_dir))
    print_cold_start_report(cold, heaviest_imports(env), bytecode_note(env))
    print()
    print(f"Total run time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
