"""DynamoDB cost accounting shared by the benchmarks: requests, items read, capacity units.

moto does not report consumed capacity faithfully (a fixed figure per
operation, none for transactions), so the units here are computed from item
sizes by AWS's documented on-demand rules: reads in 4 KB units (0.5 for an
eventually consistent read), writes in 1 KB units, transactions twice, and
every global secondary index an item enters, leaves or changes.
"""

from __future__ import annotations

import copy
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

Item = dict[str, Any]  # a low-level DynamoDB item: {"attr": {"S": "..."}}

READ_UNIT_BYTES: Final = 4_096
WRITE_UNIT_BYTES: Final = 1_024

# -- DynamoDB item size and capacity (AWS's documented rules) -------------------


def number_size(text: str) -> int:
    """Bytes of a DynamoDB number: 1 per two significant digits, plus 1."""
    digits = "".join(str(d) for d in Decimal(text).as_tuple().digits).strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one low-level attribute value ({"S": ...}, {"N": ...}, ...)."""
    ((kind, content),) = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "N":
        return number_size(content)
    if kind == "B":
        return len(content)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in content)
    if kind == "NS":
        return sum(number_size(n) for n in content)
    if kind == "BS":
        return sum(len(b) for b in content)
    if kind == "L":
        return 3 + sum(1 + value_size(element) for element in content)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in content.items())
    raise ValueError(f"not a DynamoDB attribute value: {value!r}")


def item_size(item: Item | None) -> int:
    """Bytes of an item as DynamoDB counts them: attribute names plus values."""
    return sum(len(name.encode()) + value_size(value) for name, value in (item or {}).items())


def read_units(total_bytes: int, consistent: bool = False) -> float:
    """RCU of one GetItem (one item) or one Query (the summed size of every item read)."""
    return max(1, math.ceil(total_bytes / READ_UNIT_BYTES)) * (1.0 if consistent else 0.5)


def write_units(item_bytes: int) -> int:
    """WCU of writing one item, or one index entry."""
    return max(1, math.ceil(item_bytes / WRITE_UNIT_BYTES))


@dataclass(frozen=True)
class IndexSchema:
    name: str
    keys: tuple[str, ...]
    projection: str  # ALL, KEYS_ONLY or INCLUDE
    non_key_attributes: frozenset[str]


@dataclass(frozen=True)
class TableSchema:
    keys: tuple[str, ...]
    indexes: tuple[IndexSchema, ...]

    @classmethod
    def describe(cls, client: Any, table: str) -> TableSchema:
        description = client.describe_table(TableName=table)["Table"]
        indexes = tuple(
            IndexSchema(
                name=index["IndexName"],
                keys=tuple(k["AttributeName"] for k in index["KeySchema"]),
                projection=index["Projection"]["ProjectionType"],
                non_key_attributes=frozenset(index["Projection"].get("NonKeyAttributes", ())),
            )
            for index in description.get("GlobalSecondaryIndexes", ())
        )
        return cls(tuple(k["AttributeName"] for k in description["KeySchema"]), indexes)

    def index(self, name: str) -> IndexSchema:
        return next(index for index in self.indexes if index.name == name)

    def key_of(self, item: Item) -> Item:
        return {name: item[name] for name in self.keys}

    def entry(self, item: Item | None, index: IndexSchema) -> Item | None:
        """The item as the index stores it; None when the item is not in the index."""
        if item is None or any(name not in item for name in index.keys):
            return None  # sparse index: no key attribute, no entry
        if index.projection == "ALL":
            return item
        kept = set(self.keys) | set(index.keys)
        if index.projection == "INCLUDE":
            kept |= index.non_key_attributes
        return {name: value for name, value in item.items() if name in kept}

    def index_write_units(self, before: Item | None, after: Item | None) -> int:
        """WCU of keeping every global secondary index in step with one item write."""
        total = 0
        for index in self.indexes:
            old, new = self.entry(before, index), self.entry(after, index)
            if old is None and new is None:
                continue
            if old is None or new is None:
                total += write_units(item_size(old if new is None else new))
            elif any(old[k] != new[k] for k in index.keys):
                total += write_units(item_size(old)) + write_units(item_size(new))
            elif old != new:
                total += write_units(max(item_size(old), item_size(new)))
        return total


# -- recording the app's DynamoDB requests ---------------------------------------


@dataclass
class DynamoRequest:
    """One DynamoDB request of an API call, and what DynamoDB would charge for it."""

    operation: str
    target: str  # table, table/index, or the tables a transaction writes
    returned: int = 0  # Query: Count; GetItem: 1 when found
    read: int = 0  # Query: ScannedCount (read before the filter); GetItem: 1 when found
    read_bytes: int = 0
    read_units: float = 0.0
    writes: int = 0  # items written (a transaction writes several)
    write_bytes: int = 0
    table_write_units: float = 0.0
    index_write_units: float = 0.0
    moto_units: float | None = None  # moto's ConsumedCapacity; None when it gave none
    error: str | None = None


@dataclass
class _WriteTarget:
    table: str
    key: Item
    before: Item | None


@dataclass
class _Pending:
    operation: str
    params: dict[str, Any]
    writes: list[_WriteTarget]


_PLACEHOLDER: Final = re.compile(r"[#:][A-Za-z0-9_]+")
_TRANSACTION_MEMBERS: Final = ("Put", "Update", "Delete", "ConditionCheck")


def short_table(name: str) -> str:
    """``<stack>-registry`` -> ``registry``: the table names the template gives."""
    return name.rsplit("-", 1)[-1]


class CapacityMeter:
    """Records every DynamoDB request one boto3 client makes while measuring.

    ``inspector`` is a second client on the same moto backend, with no
    handlers. It reads item images around writes and re-reads what a filtered
    Query read. Its own requests are not recorded.
    """

    def __init__(self, client: Any, inspector: Any) -> None:
        self._inspector = inspector
        self._schemas: dict[str, TableSchema] = {}
        self._requests: list[DynamoRequest] | None = None
        client.meta.events.register("before-parameter-build.dynamodb", self._before)
        client.meta.events.register("after-call.dynamodb", self._after)

    @contextmanager
    def measuring(self) -> Iterator[list[DynamoRequest]]:
        requests: list[DynamoRequest] = []
        self._requests = requests
        try:
            yield requests
        finally:
            self._requests = None

    def schema(self, table: str) -> TableSchema:
        if table not in self._schemas:
            self._schemas[table] = TableSchema.describe(self._inspector, table)
        return self._schemas[table]

    # botocore passes handler arguments by keyword; one request_context dict
    # travels from before-parameter-build to after-call.
    def _before(
        self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        if self._requests is None:
            return
        targets = [
            _WriteTarget(table, key, self._image(table, key))
            for table, key in self._write_keys(model.name, params)
        ]
        context["bench_pending"] = _Pending(model.name, copy.deepcopy(params), targets)

    def _after(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        pending: _Pending | None = context.pop("bench_pending", None)
        if pending is None or self._requests is None:
            return
        params = pending.params
        target = short_table(params.get("TableName", ""))
        if "IndexName" in params:
            target += "/" + params["IndexName"]
        if pending.writes and not target:
            tables = Counter(short_table(w.table) for w in pending.writes)
            target = ", ".join(f"{table} {n}" for table, n in tables.items())
        request = DynamoRequest(pending.operation, target, moto_units=_moto_units(parsed))
        if "Error" in parsed:
            request.error = parsed["Error"].get("Code", "error")
        elif pending.operation == "GetItem":
            self._cost_get(request, params, parsed)
        elif pending.operation == "Query":
            self._cost_query(request, params, parsed)
        elif pending.operation == "BatchGetItem":
            self._cost_batch_get(request, params, parsed)
        elif pending.writes:
            self._cost_writes(request, pending)
        self._requests.append(request)

    def _cost_get(self, request: DynamoRequest, params: dict[str, Any], parsed: Any) -> None:
        found = parsed.get("Item")
        if found is not None and "ProjectionExpression" in params:
            found = self._image(params["TableName"], params["Key"])  # billed on the whole item
        request.returned = request.read = 0 if found is None else 1
        request.read_bytes = item_size(found)
        request.read_units = read_units(request.read_bytes, params.get("ConsistentRead", False))

    def _cost_batch_get(self, request: DynamoRequest, params: dict[str, Any], parsed: Any) -> None:
        # Each item of a batch is billed as its own GetItem, rounded up per item.
        (table,) = params["RequestItems"]
        request.target = short_table(table)
        found = parsed.get("Responses", {}).get(table, [])
        consistent = params["RequestItems"][table].get("ConsistentRead", False)
        request.returned = request.read = len(found)
        request.read_bytes = sum(item_size(item) for item in found)
        request.read_units = sum(read_units(item_size(item), consistent) for item in found)

    def _cost_query(self, request: DynamoRequest, params: dict[str, Any], parsed: Any) -> None:
        request.returned, request.read = parsed["Count"], parsed["ScannedCount"]
        items_read = self._items_read(params, parsed)
        if len(items_read) != request.read:
            raise AssertionError(f"re-read {len(items_read)} items; moto scanned {request.read}")
        schema = self.schema(params["TableName"])
        index = schema.index(params["IndexName"]) if "IndexName" in params else None
        request.read_bytes = sum(
            item_size(schema.entry(item, index) if index else item) for item in items_read
        )
        request.read_units = read_units(request.read_bytes, params.get("ConsistentRead", False))

    def _items_read(self, params: dict[str, Any], parsed: Any) -> list[Item]:
        """Every item the Query read: a filter drops items after they are read (and billed)."""
        narrowing = ("FilterExpression", "ProjectionExpression", "Select", "AttributesToGet")
        if not any(name in params for name in narrowing):
            return list(parsed["Items"])
        kept = ("TableName", "IndexName", "KeyConditionExpression", "ExclusiveStartKey")
        rerun = {
            name: params[name] for name in (*kept, "Limit", "ScanIndexForward") if name in params
        }
        used = set(_PLACEHOLDER.findall(params["KeyConditionExpression"]))
        for member in ("ExpressionAttributeNames", "ExpressionAttributeValues"):
            placeholders = {k: v for k, v in params.get(member, {}).items() if k in used}
            if placeholders:
                rerun[member] = placeholders
        return list(self._inspector.query(**rerun)["Items"])

    def _cost_writes(self, request: DynamoRequest, pending: _Pending) -> None:
        doubled = 2 if pending.operation == "TransactWriteItems" else 1
        for write in pending.writes:
            after = self._image(write.table, write.key)
            size = max(item_size(write.before), item_size(after))
            request.writes += 1
            request.write_bytes += size
            request.table_write_units += doubled * write_units(size)
            request.index_write_units += self.schema(write.table).index_write_units(
                write.before, after
            )

    def _write_keys(self, operation: str, params: Mapping[str, Any]) -> list[tuple[str, Item]]:
        if operation == "PutItem":
            return [(params["TableName"], self.schema(params["TableName"]).key_of(params["Item"]))]
        if operation in ("UpdateItem", "DeleteItem"):
            return [(params["TableName"], params["Key"])]
        if operation != "TransactWriteItems":
            return []
        keys = []
        for action in params["TransactItems"]:
            ((member, body),) = action.items()
            if member not in _TRANSACTION_MEMBERS:
                raise ValueError(f"unexpected transaction member {member}")
            table = body["TableName"]
            keys.append((table, body.get("Key") or self.schema(table).key_of(body["Item"])))
        return keys

    def _image(self, table: str, key: Item) -> Item | None:
        found = self._inspector.get_item(TableName=table, Key=key, ConsistentRead=True)
        item: Item | None = found.get("Item")
        return item


def _moto_units(parsed: Mapping[str, Any]) -> float | None:
    consumed = parsed.get("ConsumedCapacity")
    if isinstance(consumed, dict):
        return float(consumed["CapacityUnits"])
    if isinstance(consumed, list) and consumed:
        return float(sum(c.get("CapacityUnits", 0) for c in consumed))
    return None  # nothing (moto's TransactWriteItems answers with an empty list)


@dataclass(frozen=True)
class RequestTotals:
    """What a list of recorded requests adds up to."""

    requests: list[DynamoRequest]

    @property
    def operations(self) -> Counter[str]:
        return Counter(r.operation for r in self.requests)

    @property
    def items_read(self) -> int:
        return sum(r.read for r in self.requests)

    @property
    def rcu(self) -> float:
        return sum(r.read_units for r in self.requests)

    @property
    def wcu_table(self) -> float:
        return sum(r.table_write_units for r in self.requests)

    @property
    def wcu_index(self) -> float:
        return sum(r.index_write_units for r in self.requests)


def fmt_units(value: float) -> str:
    return f"{value:g}"


# -- moto's ConsumedCapacity, probed ------------------------------------------------


@dataclass(frozen=True)
class ProbeRow:
    operation: str
    moto_units: float | None
    computed: str


def probe_moto_capacity(client: Any, meter: CapacityMeter, table: str) -> list[ProbeRow]:
    """What moto reports for a 9 KB item, next to what DynamoDB would charge."""
    item: Item = {
        "pk": {"S": "PROBE#1"},
        "sk": {"S": "PROBE"},
        "energy_type": {"S": "probe"},  # in ProvidersByEnergyType (ALL projected)
        "price_key": {"S": "000000000001#probe"},
        "payload": {"S": "x" * 9_000},
    }
    key = {"pk": item["pk"], "sk": item["sk"]}
    total = {"ReturnConsumedCapacity": "TOTAL"}  # as every request of the app asks
    update = {
        "TableName": table,
        "Key": key,
        "UpdateExpression": "SET payload = :p",
        "ExpressionAttributeValues": {":p": {"S": "y" * 9_000}},
    }
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("PutItem", lambda: client.put_item(TableName=table, Item=item, **total)),
        ("GetItem", lambda: client.get_item(TableName=table, Key=key, **total)),
        (
            "Query (GSI)",
            lambda: client.query(
                TableName=table,
                IndexName="ProvidersByEnergyType",
                KeyConditionExpression="energy_type = :t",
                ExpressionAttributeValues={":t": {"S": "probe"}},
                **total,
            ),
        ),
        ("UpdateItem", lambda: client.update_item(**update, **total)),
        (
            "TransactWriteItems",
            lambda: client.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": table, "Item": {**item, "pk": {"S": "PROBE#2"}}}},
                    {"Update": {**update, "ExpressionAttributeValues": {":p": item["payload"]}}},
                ],
                **total,
            ),
        ),
    ]
    rows = []
    for operation, call in calls:
        with meter.measuring() as requests:
            call()
        (request,) = requests
        if request.read_units:
            computed = f"{fmt_units(request.read_units)} RCU ({request.read_bytes:,} B read)"
        else:
            computed = (
                f"{fmt_units(request.table_write_units)} table + "
                f"{fmt_units(request.index_write_units)} GSI WCU "
                f"({request.writes} item(s), {request.write_bytes:,} B)"
            )
        rows.append(ProbeRow(operation, request.moto_units, computed))
    return rows
