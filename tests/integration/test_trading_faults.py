"""Trading survives DynamoDB's failures: nothing is lost, minted or settled twice.

A Hypothesis state machine mints (signed meter readings, sometimes delivered
again), buys (sometimes more than is on sale, sometimes again with the same
idempotency key, sometimes settling at once), settles early (as the buyer or
not), runs the settlement and expiry jobs, moves the clock, retires held
credits, deposits and withdraws, on the DynamoDB adapter (moto, in-process).
Before each step it may arm a fault for the Nth DynamoDB call of that step:

* throttling: the call is refused with ``ProvisionedThroughputExceededException``
  or ``ThrottlingException`` (botocore's own retries ran out), for one to
  three calls in a row;
* transaction cancellation: ``TransactWriteItems`` is cancelled with a
  ``TransactionConflict`` or ``ThrottlingError`` reason, one to five times in
  a row (the use cases try four times), or every time for the rest of the
  step;
* a crash: the call is made, then the Lambda dies before the next one (after
  minting, after a settlement but before the job moves its watermark, ...).

A client that got no answer may send the very same signed request again.
Whatever the client or the job saw, after every step, read from storage:
BLOCK is conserved (balances + stakes + escrow + treasury = deposits -
withdrawals), Wh is conserved (minted = available + reserved + held + retired
+ expired, and equal to what the meters counted), each settled purchase has
exactly one receipt in an intact, signed chain, reserved and held credits
belong to open and settled purchases, the counters kept beside the items (a
provider's energy on sale, open obligations and sales; a buyer's Wh bought)
agree with the items, and no job has moved its watermark past work it still
has to do. At the end, past every dispute window and credit lifetime, the
jobs run once more without faults and leave nothing open and nothing on sale.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import boto3
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from nacl.signing import SigningKey

from chalicelib.adapters.due_work import HOUR_MS
from chalicelib.adapters.dynamodb import from_item
from chalicelib.adapters.dynamodb.receipts import receipt_from_item
from chalicelib.domain.errors import DomainError
from chalicelib.domain.readings import Rejection
from chalicelib.domain.receipts import ChainHead, Receipt, verify_chain
from chalicelib.domain.trading import purchase_id_for
from chalicelib.services.expiry import EXPIRY_JOB, run_expiry
from chalicelib.services.ingest import Status, record_payload
from chalicelib.services.settlement import SETTLEMENT_JOB, run_settlement
from energy_client.rpc_client import RpcError, Signer, unwrap
from infra.emulation import create_tables
from tests.support import (
    BLOCK,
    RECEIPT_SEED,
    Clock,
    MarketHarness,
    SimulatedMeter,
    assert_conserved,
    buy,
    dynamodb_market,
    metered_provider,
    tables_from_environment,
    with_settings,
)

REGION = "us-east-1"
BASELINE_COUNTER_WH = 1_000
FEE_BPS = 250  # some of every sale goes to the treasury
INTERNAL_ERROR = -32603
CONCURRENT_UPDATE = 5001
STORAGE_BUSY = 5002
REPLAYED_REQUEST = 1002
NOT_AUTHORISED, NOT_FOUND, ALREADY_EXISTS = 1004, 2001, 2002
INSUFFICIENT_BALANCE, INVALID_STATE = 3001, 4002
INSUFFICIENT_ENERGY, PURCHASE_TOO_LARGE = 4005, 4007

EVERY_CALL = 10**6  # a fault's ``times``: every eligible call from ``at`` on
READS = frozenset({"get_item", "batch_get_item", "query"})
WRITES = frozenset({"put_item", "update_item", "transact_write_items"})


class Crash(BaseException):
    """The Lambda died right after a DynamoDB call returned.

    A BaseException, as a dying process is: no ``except Exception`` in the
    code under test (the JSON-RPC dispatcher has one) may turn it into an
    answer and carry on.
    """


@dataclass(frozen=True)
class Fault:
    """One fault for one step: ``kind`` hits the ``at``-th eligible call and,
    for throttling and cancellation, the ``times - 1`` eligible calls after it."""

    kind: str  # "throttle", "cancel" or "crash"
    at: int
    times: int = 1
    writes_only: bool = False  # throttle, crash: count only writes
    code: str = "ProvisionedThroughputExceededException"  # throttle
    reason: str = "TransactionConflict"  # cancel
    # A client that saw no answer (the function died, or a 5xx) sends the very
    # same signed request again.
    resend: bool = False

    def eligible(self, operation: str) -> bool:
        if self.kind == "cancel":
            return operation == "transact_write_items"
        return operation in WRITES or (not self.writes_only and operation in READS)


class FaultyClient:
    """The moto client, with a fault armed for the calls of one step."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.fault: Fault | None = None
        self.eligible = 0  # eligible calls seen since the fault was armed
        self.fired = 0  # faults injected since then
        self.calls: list[str] = []  # every operation since then, for failure reports
        self.writes = 0  # write calls ever attempted: none since a check, nothing to check
        # While the checks run, the harness's audit and this test's own checks
        # read one snapshot of each table (see _snapshot).
        self.scans: dict[str, list[Any]] | None = None

    def get_paginator(self, operation: str) -> Any:
        if operation != "scan" or self.scans is None:
            return self._client.get_paginator(operation)
        return _Snapshot(self.scans)

    def arm(self, fault: Fault | None) -> None:
        self.fault, self.eligible, self.fired, self.calls = fault, 0, 0, []

    def disarm(self) -> None:
        self.fault = None

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in READS | WRITES:
            return attribute  # waiters, exceptions, ...

        def call(**request: Any) -> Any:
            return self._call(name, attribute, request)

        return call

    def _call(self, operation: str, method: Callable[..., Any], request: dict[str, Any]) -> Any:
        fault = self.fault
        self.calls.append(operation)
        self.writes += operation in WRITES
        if fault is None or not fault.eligible(operation):
            return method(**request)
        self.eligible += 1
        if not fault.at <= self.eligible < fault.at + fault.times:
            return method(**request)
        self.fired += 1
        self.calls[-1] += f" <- {fault.kind}"
        if fault.kind == "throttle":
            raise _error(fault.code, "Rate of requests exceeds the allowed throughput", operation)
        if fault.kind == "cancel":
            items = len(request["TransactItems"])
            reasons = [{"Code": "None"}] * items
            reasons[self.eligible % items] = {"Code": fault.reason, "Message": fault.reason}
            raise _error(
                "TransactionCanceledException",
                f"Transaction cancelled, please refer cancellation reasons [{fault.reason}]",
                operation,
                CancellationReasons=reasons,
            )
        with contextlib.suppress(ClientError):  # whatever the call answered
            method(**request)
        raise Crash(f"the Lambda died after {operation}")


class _Snapshot:
    """A Scan paginator over each table's items as moto holds them, read once
    per check."""

    def __init__(self, scans: dict[str, list[Any]]) -> None:
        self._scans = scans

    def paginate(self, TableName: str) -> list[Any]:
        if TableName not in self._scans:
            self._scans[TableName] = [{"Items": _snapshot(TableName)}]
        return self._scans[TableName]


def _snapshot(table_name: str) -> list[dict[str, Any]]:
    """Every item of a table as Scan returns it, straight from moto's memory.

    A real Scan costs about a millisecond an item in moto (serialising the
    response), and the checks read every table after every step: through
    the API they took half the test's time. The first example compares this
    with a real Scan, so a moto that keeps items otherwise fails there.
    """
    table = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].get_table(table_name)
    return [item.to_json()["Attributes"] for item in table.all_items()]


def _error(code: str, message: str, operation: str, **extra: Any) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, **extra}, operation)


# Which call a fault hits: mostly one of the first few (a request makes about
# five), sometimes one deep into a job's run.
calls = st.integers(1, 3) | st.integers(1, 8) | st.integers(9, 60)
faults = st.one_of(
    st.none(),
    st.none(),
    st.builds(
        Fault,
        kind=st.just("throttle"),
        at=calls,
        times=st.integers(1, 3),
        writes_only=st.booleans(),  # writes are fewer: a write fault hits more often
        code=st.sampled_from(["ProvisionedThroughputExceededException", "ThrottlingException"]),
        resend=st.booleans(),
    ),
    st.builds(
        Fault,
        kind=st.just("cancel"),
        at=st.integers(1, 2) | st.integers(3, 6),
        # The use cases try four times; a hot item may stay hot all the step.
        times=st.integers(1, 5) | st.just(EVERY_CALL),
        reason=st.sampled_from(["TransactionConflict", "ThrottlingError"]),
        resend=st.booleans(),
    ),
    st.builds(
        Fault, kind=st.just("crash"), at=calls, writes_only=st.booleans(), resend=st.booleans()
    ),
)

BUYERS = ["alice.theblock", "bob.theblock"]
OWNERS = ["sun.theblock", "wind.theblock"]
ACCOUNTS = BUYERS + OWNERS


@dataclass
class Stored:
    """Every item of the market's tables, as plain values."""

    accounts: dict[str, int]  # balances
    bought: dict[str, dict[str, int]]  # account -> energy type -> Wh
    providers: dict[str, dict[str, Any]]
    meters: dict[str, dict[str, Any]]
    credits: list[dict[str, Any]]
    purchases: dict[str, dict[str, Any]]
    entries: list[dict[str, Any]]
    receipts: dict[str, list[Receipt]]  # chain -> its receipts by sequence
    heads: dict[str, dict[str, Any]]
    watermarks: dict[str, int]  # job -> the first hour it still reads


class FaultyTradingMachine(RuleBasedStateMachine):
    last: Stored  # as the last check found it

    def __init__(self) -> None:
        super().__init__()
        self._mock = mock_aws()
        self._mock.start()
        self.raw = boto3.client("dynamodb", region_name=REGION)
        self.tables = tables_from_environment(create_tables(self.raw, "energy-marketplace-faults"))
        self.dynamo = FaultyClient(self.raw)
        # A one-hour dispute window and two-hour credits: settlement and expiry
        # fall due within a few steps of the clock.
        self.market: MarketHarness = with_settings(
            dynamodb_market(self.dynamo, self.tables, Clock()),
            dispute_window_ms=HOUR_MS,
            credit_lifetime_ms=2 * HOUR_MS,
            market_fee_bps=FEE_BPS,
        )
        self.signers: dict[str, Signer] = {}
        self.meters: list[SimulatedMeter] = []
        self.last_payload: dict[str, bytes] = {}
        self.keys: dict[str, list[str]] = defaultdict(list)  # buyer -> idempotency keys
        self.purchases_tried: dict[str, str] = {}  # purchase id -> buyer
        self.purchases_made: set[str] = set()  # answered with success
        self.deposits_tried: set[tuple[str, str, int]] = set()  # (chain tx, account, amount)
        self.deposits_made: set[str] = set()
        self.numbers = itertools.count(1)
        self.initial_deposits: set[str] = set()  # made by the opening, not by a rule
        self.resent = False  # this step's client sent its request twice
        self.checked_at_writes = -1  # FaultyClient.writes when last checked
        self.healthy = True  # the last step passed every check

    # -- set-up -------------------------------------------------------------

    @initialize()
    def open_the_market(self) -> None:
        """Two providers with energy on sale, two buyers with money. Built
        through the API once; the next examples start from a copy of the
        items it wrote (the API calls would be a third of the test's time)."""
        tables = self.tables
        if _OPENED is None:
            _open_through_the_api(self)
            for table in (tables.registry, tables.ledger, tables.credits, tables.receipts):
                pages = self.raw.get_paginator("scan").paginate(TableName=table)
                scanned = [item for page in pages for item in page["Items"]]
                assert _sorted(_snapshot(table)) == _sorted(scanned), "moto keeps items otherwise"
        else:
            _OPENED.restore(self)
        ledger = [from_item(item) for item in _snapshot(tables.ledger)]
        self.initial_deposits = {e["entry_id"] for e in ledger if e.get("kind") == "deposit"}
        self.last = self.check()

    # -- helpers ------------------------------------------------------------

    def now_ms(self) -> int:
        return self.market.clock.now * 1000

    def deliver(self, meter: SimulatedMeter, counter_wh: int, at_ms: int) -> Any:
        payload = meter.payload(counter_wh, at_ms)
        self.last_payload[meter.provider_id] = payload
        return self.redeliver(meter, payload)

    def redeliver(self, meter: SimulatedMeter, payload: bytes) -> Any:
        return record_payload(
            self.market.deps,
            payload,
            topic_meter_address=meter.meter_address,
            received_at_ms=self.now_ms(),
        )

    def step(
        self, what: str, fault: Fault | None, action: Callable[[], Any], *refusals: int
    ) -> Any:
        """Run ``action`` with ``fault`` armed. A refusal must be one of
        ``refusals`` unless a fault fired; then the client may also see an
        internal error or a concurrent update, and a job or the ingest
        Lambda may die of the DynamoDB error. Returns None unless it succeeded."""
        self.healthy = False
        self.resent = False
        self.dynamo.arm(fault)
        try:
            result = action()
        except Crash:
            return self.saw(what, fault, "crashed")
        except RpcError as refused:
            error = refused
        except (ClientError, DomainError):
            if not self.dynamo.fired:
                raise
            return self.saw(what, fault, "died of a DynamoDB error")
        else:
            self.saw(what, fault, "succeeded")
            return result
        finally:
            self.dynamo.disarm()
        faulted = {INTERNAL_ERROR, CONCURRENT_UPDATE, STORAGE_BUSY} if self.dynamo.fired else set()
        # The first request may have done it all: its copy is a replay.
        replayed = {REPLAYED_REQUEST} if self.resent else set()
        allowed = {*refusals, *faulted, *replayed}
        assert error.code in allowed, (error, fault, self.dynamo.calls)
        return self.saw(what, fault, f"refused ({error.reason})")

    def call(self, method: str, params: dict[str, Any], signer: Signer) -> Any:
        """A signed call, sent again as it was when the fault asks for it."""
        client = self.market.client
        body = client.request(method, params, signer)
        try:
            return unwrap(client.send(body))
        except (Crash, RpcError) as failed:
            fault = self.dynamo.fault
            lost = not isinstance(failed, RpcError) or failed.code in (
                INTERNAL_ERROR,
                CONCURRENT_UPDATE,  # "retry"
            )
            if fault is None or not fault.resend or not lost:
                raise
        self.resent = True
        return unwrap(client.send(body))

    def saw(self, what: str, fault: Fault | None, outcome: str) -> None:
        """Tell --hypothesis-show-statistics what the runs exercised."""
        if fault is None:
            event(f"{what}: {outcome}")
        elif self.dynamo.fired:
            again = ", sent again" if self.resent else ""
            event(f"{what}, {fault.kind} fired{again}: {outcome}")
        else:
            event(f"{what}, {fault.kind} not reached: {outcome}")

    def meter_state(self, meter: SimulatedMeter) -> dict[str, Any]:
        key = {"pk": {"S": f"METER#{meter.meter_address}"}, "sk": {"S": "METER"}}
        found = self.raw.get_item(TableName=self.tables.registry, Key=key, ConsistentRead=True)
        return _plain(from_item(found["Item"]))

    def pick(self, options: list[str], index: int) -> str | None:
        return options[index % len(options)] if options else None

    # -- rules --------------------------------------------------------------

    @rule(
        which=st.sampled_from(["first", "second", "both"]),
        wh=st.integers(1, 4_000),
        redeliver=st.booleans(),
        fault=faults,
    )
    def mint(self, which: str, wh: int, redeliver: bool, fault: Fault | None) -> None:
        chosen = {"first": self.meters[:1], "second": self.meters[1:], "both": self.meters}[which]
        plan = []
        expected: list[Rejection | None] = []  # each new reading's refusal, if any
        for meter in chosen:
            if redeliver:
                plan.append((meter, self.last_payload[meter.provider_id]))
                continue
            # The meter's last accepted reading, whatever the last step saw.
            state = self.meter_state(meter)
            at_ms = max(int(state["last_timestamp_ms"]) + 10_000, self.now_ms() - 60_000)
            payload = meter.payload(int(state["last_counter_wh"]) + wh, at_ms)
            self.last_payload[meter.provider_id] = payload
            plan.append((meter, payload))
            # Refused only when the meter has run ahead of our clock by more
            # than the skew allowed (many mints within a minute of each other).
            ahead = at_ms > self.now_ms() + self.market.deps.settings.max_clock_skew_ms
            expected.append(Rejection.TIMESTAMP_IN_FUTURE if ahead else None)

        def deliver_all() -> list[Any]:
            return [self.redeliver(meter, payload) for meter, payload in plan]

        outcomes = self.step("mint", fault, deliver_all)
        if outcomes is not None and not self.dynamo.fired and not redeliver:
            assert [o.reason for o in outcomes] == expected, outcomes
            assert [o.status == Status.ACCEPTED for o in outcomes] == [
                reason is None for reason in expected
            ], outcomes

    @rule(
        buyer=st.sampled_from([*BUYERS, OWNERS[0]]),
        provider=st.integers(0, 1),
        wh=st.integers(1, 4_000) | st.integers(1, 4_000) | st.integers(4_000, 40_000),
        retry=st.integers(0, 1_000) | st.none(),
        then_settle=st.booleans(),
        fault=faults,
    )
    def purchase(
        self,
        buyer: str,
        provider: int,
        wh: int,
        retry: int | None,
        then_settle: bool,
        fault: Fault | None,
    ) -> None:
        """Buy (or retry an earlier purchase by its key), and sometimes settle
        at once; the fault may hit either call."""
        keys = self.keys[buyer]
        key = self.pick(keys, retry) if retry is not None else None
        if key is None:
            key = f"purchase-{next(self.numbers):04d}"
            keys.append(key)
        purchase_id = purchase_id_for(buyer, key)
        self.purchases_tried[purchase_id] = buyer
        params = {
            "provider_id": self.meters[provider].provider_id,
            "kwh_amount": Decimal(wh) / 1000,
            "max_price_per_kwh": "1",
            "idempotency_key": key,
        }
        signer = self.signers[buyer]

        def buy() -> tuple[Any, Any]:
            bought = self.call("energy.purchaseEnergy", params, signer)
            self.purchases_made.add(purchase_id)
            if not then_settle:
                return bought, None
            settle = {"transaction_id": purchase_id}
            return bought, self.call("energy.settle", settle, signer)

        result = self.step(
            "purchase, then settle" if then_settle else "purchase",
            fault,
            buy,
            INSUFFICIENT_ENERGY,
            INSUFFICIENT_BALANCE,
            PURCHASE_TOO_LARGE,
            NOT_AUTHORISED,  # the provider's owner buying its own energy
        )
        if result is not None:
            bought, settled = result
            assert bought["transaction_id"] == purchase_id
            if settled is not None:
                assert settled["status"] == "settled"
                assert settled["receipt"]["transaction_id"] == purchase_id

    @rule(
        which=st.integers(0, 1_000),
        open_only=st.sampled_from([True, True, True, False]),
        by_buyer=st.sampled_from([True, True, True, False]),
        fault=faults,
    )
    def settle_early(
        self, which: int, open_only: bool, by_buyer: bool, fault: Fault | None
    ) -> None:
        # Mostly a purchase still open; sometimes any purchase tried (settled,
        # or refused and never stored).
        still_open = [p for p, v in self.last.purchases.items() if v["status"] == "open"]
        purchase_id = self.pick(sorted(still_open), which) if open_only else None
        purchase_id = purchase_id or self.pick(sorted(self.purchases_tried), which)
        assert purchase_id is not None
        buyer = self.purchases_tried[purchase_id]
        signer = buyer if by_buyer else next(n for n in BUYERS if n != buyer)
        result = self.step(
            "settle early" if by_buyer else "settle early, not the buyer",
            fault,
            lambda: self.call(
                "energy.settle", {"transaction_id": purchase_id}, self.signers[signer]
            ),
            NOT_FOUND,  # the purchase was refused (or its transaction never ran)
            NOT_AUTHORISED,  # only the buyer settles early
        )
        if result is not None:
            assert by_buyer and result["status"] == "settled"
            assert result["receipt"]["transaction_id"] == purchase_id

    # The scheduled jobs run at the time they are scheduled: often an hour or
    # two on, when purchases have fallen due and credits have expired.
    later = st.sampled_from([0, 61, 121, 181])

    @rule(minutes=later, fault=faults)
    def settle_by_job(self, minutes: int, fault: Fault | None) -> None:
        self.market.clock.now += minutes * 60
        run = self.step("settlement job", fault, lambda: run_settlement(self.market.deps))
        if run is not None:
            event(f"settlement job settled {'some' if run.done else 'none'}")
            # An injected fault fails at most one item; none fails without one.
            assert run.failed <= self.dynamo.fired, run

    @rule(minutes=later, fault=faults)
    def expire(self, minutes: int, fault: Fault | None) -> None:
        self.market.clock.now += minutes * 60
        run = self.step("expiry job", fault, lambda: run_expiry(self.market.deps))
        if run is not None:
            event(f"expiry job expired {'some' if run.done else 'none'}")
            # An injected fault fails at most one item; none fails without one.
            assert run.failed <= self.dynamo.fired, run

    @rule(minutes=st.integers(1, 60) | st.sampled_from([61, 121, 181]))
    def advance_clock(self, minutes: int) -> None:
        self.market.clock.now += minutes * 60

    @precondition(lambda self: any(c["state"] == "held" for c in self.last.credits))
    @rule(
        start=st.integers(0, 1_000),
        count=st.integers(1, 3),
        anything=st.sampled_from([False, False, False, True]),
        fault=faults,
    )
    def retire(self, start: int, count: int, anything: bool, fault: Fault | None) -> None:
        # Credits someone holds, signed by the holder of the first (the others
        # may be the other buyer's); sometimes any credits at all.
        credits = self.last.credits
        held = sorted((c["credit_id"], c["held_by"]) for c in credits if c["state"] == "held")
        pool = sorted((c["credit_id"], c.get("held_by") or BUYERS[0]) for c in credits)
        options = pool if anything else held
        chosen = sorted({options[(start + n) % len(options)] for n in range(count)})
        holder = chosen[0][1]
        params = {
            "credit_ids": [credit_id for credit_id, _ in chosen],
            "beneficiary": f"{holder} Scope 2",
            "reporting_period_start_ms": self.now_ms() - 30 * 86_400_000,
            "reporting_period_end_ms": self.now_ms(),
        }
        result = self.step(
            "retire" if not anything else "retire anything",
            fault,
            lambda: self.call("energy.retireCredits", params, self.signers[holder]),
            INVALID_STATE,  # not held, or produced over more than an hour
            NOT_AUTHORISED,  # held by the other buyer
        )
        if result is not None:
            certified = sorted(c["credit_id"] for c in result["certificates"])
            assert certified == params["credit_ids"]

    @rule(
        account=st.sampled_from([*ACCOUNTS, "nobody.theblock"]),
        amount=st.integers(1, 2 * BLOCK),
        reuse=st.integers(0, 1_000) | st.none(),
        fault=faults,
    )
    def deposit(self, account: str, amount: int, reuse: int | None, fault: Fault | None) -> None:
        earlier = sorted({tx for tx, _, _ in self.deposits_tried})
        chain_tx = self.pick(earlier, reuse) if reuse is not None else None
        chain_tx = chain_tx or f"0xchain-{next(self.numbers):04d}"
        self.deposits_tried.add((chain_tx, account, amount))
        params = {"account": account, "amount_micro_block": amount, "chain_tx": chain_tx}
        result = self.step(
            "deposit",
            fault,
            lambda: self.call("energy.deposit", params, self.market.operator),
            ALREADY_EXISTS,  # that chain transaction was credited already
            NOT_FOUND,  # no such account
        )
        if result is not None:
            self.deposits_made.add(chain_tx)

    @rule(account=st.sampled_from(ACCOUNTS), amount=st.integers(1, 3 * BLOCK), fault=faults)
    def withdraw(self, account: str, amount: int, fault: Fault | None) -> None:
        params = {"amount_micro_block": amount, "destination": "0xwallet"}
        self.step(
            "withdraw",
            fault,
            lambda: self.call("energy.withdraw", params, self.signers[account]),
            INSUFFICIENT_BALANCE,
        )

    # -- what must hold -----------------------------------------------------

    @invariant()
    def everything_adds_up(self) -> None:
        if self.dynamo.writes != self.checked_at_writes:  # else: as last checked
            self.last = self.check()
        self.healthy = True

    def teardown(self) -> None:
        try:
            if self.healthy:  # not after a failed step: its own error is the report
                self.heal()
        finally:
            self._mock.stop()

    def heal(self) -> None:
        """Past every dispute window and every credit's lifetime, the jobs run
        again without faults: every purchase is settled and every credit left
        unsold has expired, whatever the faults left behind."""
        for name, value in [
            ("settled", any(p["status"] == "settled" for p in self.last.purchases.values())),
            ("open", any(p["status"] == "open" for p in self.last.purchases.values())),
            ("retired", any(c["state"] == "retired" for c in self.last.credits)),
            ("expired", any(c["state"] == "expired" for c in self.last.credits)),
        ]:
            event(f"before healing, {name}: {'some' if value else 'none'}")
        self.market.clock.now += 3 * 3600
        run_settlement(self.market.deps)
        run_expiry(self.market.deps)
        stored = self.check()
        left_open = [p for p, v in stored.purchases.items() if v["status"] == "open"]
        assert not left_open, f"due purchases left open: {left_open}"
        on_sale = [c["credit_id"] for c in stored.credits if c["state"] == "available"]
        assert not on_sale, f"expired credits still on sale: {on_sale}"
        reserved = [c["credit_id"] for c in stored.credits if c["state"] == "reserved"]
        assert not reserved, f"credits reserved for no open purchase: {reserved}"
        for provider in stored.providers.values():
            assert provider["available_wh"] == provider["open_obligations"] == 0, provider

    def check(self) -> Stored:
        self.checked_at_writes = self.dynamo.writes
        self.dynamo.scans = {}
        try:
            stored = self.stored()
            totals = assert_conserved(self.market)  # BLOCK; Wh; settled == receipts
        finally:
            self.dynamo.scans = None
        assert totals.settled == sum(
            1 for p in stored.purchases.values() if p["status"] == "settled"
        )
        assert all(balance >= 0 for balance in stored.accounts.values()), stored.accounts
        self.check_money_came_from_calls(stored)
        self.check_purchases_and_credits(stored)
        self.check_receipts(stored)
        self.check_providers(stored)
        self.check_watermarks(stored)
        return stored

    def check_watermarks(self, stored: Stored) -> None:
        """A job never reads the hours behind its watermark again: nothing
        it still has to do may be left there."""
        settled_from = stored.watermarks[SETTLEMENT_JOB] * HOUR_MS
        for purchase in stored.purchases.values():
            if purchase["status"] == "open":
                assert purchase["settles_at_ms"] >= settled_from, (purchase, stored.watermarks)
        expired_from = stored.watermarks[EXPIRY_JOB] * HOUR_MS
        for credit in stored.credits:
            if credit["state"] == "available":
                assert credit["expires_at_ms"] >= expired_from, (credit, stored.watermarks)

    def check_money_came_from_calls(self, stored: Stored) -> None:
        deposits = [e for e in stored.entries if e["kind"] == "deposit"]
        for entry in deposits:
            if entry["entry_id"] in self.initial_deposits:
                continue
            attempt = (entry["entry_id"], entry["account"], entry["micro_block"])
            assert attempt in self.deposits_tried, entry
        assert self.deposits_made <= {e["entry_id"] for e in deposits}
        # A chain transaction is credited once (its entry's key is the tx).
        assert len({e["entry_id"] for e in deposits}) == len(deposits)

    def check_purchases_and_credits(self, stored: Stored) -> None:
        assert set(stored.purchases) <= set(self.purchases_tried)
        assert self.purchases_made <= set(stored.purchases)
        by_id = {c["credit_id"]: c for c in stored.credits}
        for purchase_id, purchase in stored.purchases.items():
            credits = [by_id[c] for c in purchase["credit_ids"]]
            assert sum(c["wh"] for c in credits) == purchase["wh"], purchase
            assert all(c["purchase_id"] == purchase_id for c in credits), purchase
            if purchase["status"] == "open":
                assert all(c["state"] == "reserved" for c in credits), (purchase, credits)
            else:
                assert purchase["status"] == "settled", purchase
                for credit in credits:
                    assert credit["state"] in ("held", "retired"), (purchase, credit)
                    assert credit["held_by"] == purchase["buyer"], (purchase, credit)
        for credit in stored.credits:
            if credit["state"] == "reserved":
                owner = stored.purchases.get(credit.get("purchase_id", ""))
                assert owner is not None and owner["status"] == "open", credit
            if credit["state"] in ("held", "retired"):
                sold_in = stored.purchases.get(credit.get("purchase_id", ""))
                assert sold_in is not None and sold_in["status"] == "settled", credit
            if credit["state"] == "retired":
                assert credit["retired_by"] == credit["held_by"], credit
        # What buyers have bought is what they hold or retired.
        bought: dict[str, Counter[str]] = defaultdict(Counter)
        for credit in stored.credits:
            if credit["state"] in ("held", "retired"):
                bought[credit["held_by"]][credit["energy_type"]] += credit["wh"]
        assert {a: dict(wh) for a, wh in bought.items()} == {
            a: {t: wh for t, wh in types.items() if wh} for a, types in stored.bought.items()
        }

    def check_receipts(self, stored: Stored) -> None:
        public_key = bytes(SigningKey(bytes.fromhex(RECEIPT_SEED)).verify_key).hex()
        settled = {p for p, v in stored.purchases.items() if v["status"] == "settled"}
        seen: list[str] = []
        for chain, receipts in stored.receipts.items():
            assert [r.sequence for r in receipts] == list(range(1, len(receipts) + 1)), chain
            head = stored.heads[chain]
            report = verify_chain(
                receipts,
                public_key,
                expected_head=ChainHead(chain, head["sequence"], head["receipt_hash"]),
            )
            assert report.intact, report
            for receipt in receipts:
                seen.append(receipt.transaction_id)
                purchase = stored.purchases[receipt.transaction_id]
                assert purchase["receipt_chain"] == chain, purchase
                assert purchase["receipt_sequence"] == receipt.sequence, purchase
                assert purchase["receipt_hash"] == receipt.receipt_hash, purchase
                assert (receipt.wh, receipt.buyer) == (purchase["wh"], purchase["buyer"])
        assert sorted(seen) == sorted(set(seen)), "a purchase settled twice"
        assert set(seen) == settled, "a settled purchase without a receipt, or the reverse"
        assert set(stored.heads) == set(stored.receipts)

    def check_providers(self, stored: Stored) -> None:
        for meter in self.meters:
            provider = stored.providers[meter.provider_id]
            mine = [c for c in stored.credits if c["issuer_provider_id"] == meter.provider_id]
            on_sale = sum(c["wh"] for c in mine if c["state"] == "available")
            assert provider["available_wh"] == on_sale, (provider, on_sale)
            purchases = [
                p for p in stored.purchases.values() if p["provider_id"] == provider["provider_id"]
            ]
            open_ones = sum(1 for p in purchases if p["status"] == "open")
            assert provider["open_obligations"] == open_ones, (provider, open_ones)
            receipts = stored.receipts.get(meter.provider_id, [])
            assert provider["settled_purchases"] == len(receipts), provider
            assert provider.get("sold_wh", 0) == sum(r.wh for r in receipts), provider
            assert provider.get("earned_micro_block", 0) == sum(
                r.provider_amount_micro_block for r in receipts
            ), provider
            # Every Wh the meter counted was minted once: no more, no less.
            counted = stored.meters[meter.meter_address]["last_counter_wh"] - BASELINE_COUNTER_WH
            assert sum(c["wh"] for c in mine) == counted, (meter.meter_address, counted)

    def stored(self) -> Stored:
        def scan_raw(table: str) -> list[dict[str, Any]]:
            pages = self.dynamo.get_paginator("scan").paginate(TableName=table)
            return [item for page in pages for item in page["Items"]]

        def scan(table: str) -> list[dict[str, Any]]:
            return [_plain(from_item(item)) for item in scan_raw(table)]

        registry, ledger = scan(self.tables.registry), scan(self.tables.ledger)
        receipts = scan(self.tables.receipts)
        chains: dict[str, list[Receipt]] = defaultdict(list)
        for receipt in sorted(
            (
                receipt_from_item(item)
                for item in scan_raw(self.tables.receipts)
                if item["sk"]["S"].startswith("RECEIPT#")
            ),
            key=lambda r: (r.chain, r.sequence),
        ):
            chains[receipt.chain].append(receipt)
        bought = {
            i["pk"].removeprefix("ACCOUNT#"): {
                k.removeprefix("wh_"): v for k, v in i.items() if k.startswith("wh_")
            }
            for i in ledger
            if i["sk"] == "BOUGHT"
        }
        return Stored(
            accounts={
                i["pk"].removeprefix("ACCOUNT#"): i["micro_block"]
                for i in ledger
                if i["sk"] == "BALANCE"
            },
            bought=bought,
            providers={i["provider_id"]: i for i in registry if i["sk"] == "PROVIDER"},
            meters={i["meter_address"]: i for i in registry if i["sk"] == "METER"},
            credits=scan(self.tables.credits),
            purchases={i["purchase_id"]: i for i in ledger if i["sk"] == "PURCHASE"},
            entries=[i for i in ledger if i["sk"] == "ENTRY"],
            receipts=dict(chains),
            heads={i["pk"].removeprefix("CHAIN#"): i for i in receipts if i["sk"] == "HEAD"},
            watermarks={
                i["pk"].removeprefix("JOB#"): i["hour"] for i in registry if i["sk"] == "WATERMARK"
            },
        )


def _open_through_the_api(machine: FaultyTradingMachine) -> None:
    global _OPENED
    market = machine.market
    # The jobs have run before (a fresh deployment's first run looks 48
    # hours back: 800 queries of nothing for expiry).
    hour = machine.now_ms() // HOUR_MS
    for job in (SETTLEMENT_JOB, EXPIRY_JOB):
        uow = market.uow()
        uow.jobs.advance(job, hour * HOUR_MS)
        uow.commit()
    for owner, price, energy in zip(OWNERS, ["0.08", "0.05"], ["solar", "wind"], strict=True):
        meter = metered_provider(
            market, owner, capacity_kwh=10_000, price_per_kwh=price, energy_type=energy
        )
        assert meter.owner is not None
        machine.signers[owner] = meter.owner
        machine.meters.append(meter)
        # The baseline, then some energy on sale from the start.
        counter = BASELINE_COUNTER_WH
        for n, wh in enumerate([0, 2_000, 3_000]):
            counter += wh
            outcome = machine.deliver(meter, counter, machine.now_ms() - 60_000 + n * 10_000)
            assert outcome.status == Status.ACCEPTED, outcome
    for name in BUYERS:
        machine.signers[name] = market.funded_account(name, block=2)
    # Trading under way: two purchases open, one settled (credits to retire).
    for n, (buyer, provider, wh, settle) in enumerate(
        [(BUYERS[0], 0, 1_500, True), (BUYERS[1], 1, 2_500, False), (BUYERS[0], 1, 1_000, False)]
    ):
        key = f"opening-{n}"
        signer = machine.signers[buyer]
        provider_id = machine.meters[provider].provider_id
        purchase = buy(market, signer, provider_id, Decimal(wh) / 1000, 1, idempotency_key=key)
        assert purchase["transaction_id"] == purchase_id_for(buyer, key)
        machine.keys[buyer].append(key)
        machine.purchases_tried[purchase["transaction_id"]] = buyer
        machine.purchases_made.add(purchase["transaction_id"])
        if settle:
            settlement = {"transaction_id": purchase["transaction_id"]}
            market.client.call("energy.settle", settlement, signer)
    tables = machine.tables
    _OPENED = _Opened(
        signers=dict(machine.signers),
        meters=list(machine.meters),
        last_payload=dict(machine.last_payload),
        keys={buyer: list(keys) for buyer, keys in machine.keys.items()},
        purchases=dict(machine.purchases_tried),
        items={
            table: [
                item
                for page in machine.raw.get_paginator("scan").paginate(TableName=table)
                for item in page["Items"]
            ]
            for table in (tables.registry, tables.ledger, tables.credits, tables.receipts)
        },
    )


@dataclass(frozen=True)
class _Opened:
    """The opened market: who signs, and every item the API wrote."""

    signers: dict[str, Signer]
    meters: list[SimulatedMeter]
    last_payload: dict[str, bytes]
    keys: dict[str, list[str]]  # buyer -> idempotency keys used
    purchases: dict[str, str]  # purchase id -> buyer
    items: dict[str, list[dict[str, Any]]]

    def restore(self, machine: FaultyTradingMachine) -> None:
        machine.signers.update(self.signers)
        machine.meters.extend(self.meters)
        machine.last_payload.update(self.last_payload)
        for buyer, keys in self.keys.items():
            machine.keys[buyer].extend(keys)
        machine.purchases_tried.update(self.purchases)
        machine.purchases_made.update(self.purchases)
        for table, items in self.items.items():
            for start in range(0, len(items), 25):  # BatchWriteItem takes 25
                puts = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
                response = machine.raw.batch_write_item(RequestItems={table: puts})
                assert not response.get("UnprocessedItems"), response


_OPENED: _Opened | None = None


def _sorted(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda item: (item["pk"]["S"], item["sk"]["S"]))


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB's Decimals as ints (every number stored here is one)."""
    return {k: int(v) if isinstance(v, Decimal) else v for k, v in values.items()}


def test_faults_lose_nothing_and_settle_nothing_twice(aws_credentials: None) -> None:
    # About a second and a half an example on moto: 15 examples run in under
    # half a minute on two cores (the ledger test's convention: more on CI).
    run_state_machine_as_test(
        FaultyTradingMachine,
        settings=settings(
            max_examples=20 if os.environ.get("CI") else 15,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
