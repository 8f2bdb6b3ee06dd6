"""The DynamoDB unit of work: writes staged by the repositories, one commit.

A commit with several writes is one TransactWriteItems call (at most
MAX_TRANSACTION_WRITES items, DynamoDB's limit: a commit that stages more is
refused before any call); a single write is a plain conditional call (half
the write capacity of a one-item transaction). ``commit_in_order`` makes each
staged write a plain call of its own, in order, for the one use case whose
first write decides and whose later ones are idempotent and restored if lost
(an accepted reading: see services/ingest.py).

Errors are translated here, by their code, never their text:

- a failed condition is the domain error its write staged (AlreadyExists,
  InsufficientBalance, ConcurrentUpdate for a version that moved, ...);
- TransactionConflict (another transaction held one of the items; for a
  plain write, TransactionConflictException) is ConcurrentUpdate: reading
  again and retrying is the answer;
- throttling (ProvisionedThroughputExceeded, ThrottlingException,
  RequestLimitExceeded, or a transaction cancelled for ThrottlingError) is
  StorageBusy: botocore has already retried with backoff, and retrying the
  use case at once would only add load. For every request, reads included:
  the repositories' client is ``ThrottledIsBusy`` (a throttled read was an
  internal error to the caller, who could not tell it from a bug);
- anything else (ValidationException, a transaction cancelled for a
  ValidationError, ...) is a bug and stays the ClientError it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from botocore.exceptions import ClientError

from chalicelib.adapters.dynamodb.accounts import DynamoAccounts, DynamoNonces
from chalicelib.adapters.dynamodb.analytics import DynamoAnalytics
from chalicelib.adapters.dynamodb.codec import Item
from chalicelib.adapters.dynamodb.connections import DynamoConnections
from chalicelib.adapters.dynamodb.credits import DynamoCredits
from chalicelib.adapters.dynamodb.disputes import DynamoDisputes, DynamoValidators
from chalicelib.adapters.dynamodb.jobs import DynamoJobs
from chalicelib.adapters.dynamodb.layout import Tables
from chalicelib.adapters.dynamodb.ledger import DynamoLedger
from chalicelib.adapters.dynamodb.meters import DynamoMeters
from chalicelib.adapters.dynamodb.providers import DynamoProviders
from chalicelib.adapters.dynamodb.purchases import DynamoPurchases
from chalicelib.adapters.dynamodb.receipts import DynamoReceipts
from chalicelib.adapters.dynamodb.watch import DynamoWatch
from chalicelib.domain.errors import (
    ConcurrentUpdate,
    DomainError,
    StorageBusy,
    TransactionTooLarge,
)

# DynamoDB's limit on the items of one TransactWriteItems call.
MAX_TRANSACTION_WRITES: Final = 100
# Error codes of a request refused for capacity, whatever it wrote.
THROTTLING_ERRORS: Final = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
# Cancellation reasons of a transaction refused for capacity.
THROTTLING_REASONS: Final = frozenset(
    {"ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)


def _busy_if_throttled(call: Callable[..., Any], request: dict[str, Any]) -> Any:
    try:
        return call(**request)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in THROTTLING_ERRORS:
            raise StorageBusy("the database is busy; try again shortly", error=code) from exc
        raise


class ThrottledIsBusy:
    """The DynamoDB client as the repositories call it: a request DynamoDB still
    throttles after botocore's retries raises StorageBusy, whatever its
    operation; every other error is left to the caller that knows what it
    means (a failed condition is its write's own error)."""

    __slots__ = ("_client",)

    def __init__(self, client: Any) -> None:
        self._client = client

    def get_item(self, **request: Any) -> Any:
        return _busy_if_throttled(self._client.get_item, request)

    def batch_get_item(self, **request: Any) -> Any:
        return _busy_if_throttled(self._client.batch_get_item, request)

    def query(self, **request: Any) -> Any:
        return _busy_if_throttled(self._client.query, request)

    def put_item(self, **request: Any) -> Any:
        return _busy_if_throttled(self._client.put_item, request)

    def update_item(self, **request: Any) -> Any:
        return _busy_if_throttled(self._client.update_item, request)

    def delete_item(self, **request: Any) -> Any:
        return _busy_if_throttled(self._client.delete_item, request)

    def batch_write_item(self, **request: Any) -> Any:
        return _busy_if_throttled(self._client.batch_write_item, request)

    def transact_write_items(self, **request: Any) -> Any:
        return _busy_if_throttled(self._client.transact_write_items, request)


@dataclass(frozen=True)
class Write:
    """One staged conditional write and the error its failed condition means."""

    kind: str  # "Put", "Update" or "Delete": the TransactWriteItems member name
    request: dict[str, Any]
    on_condition_failed: Callable[[], DomainError]


class Staged:
    """The writes a unit of work's repositories staged, in order."""

    def __init__(self) -> None:
        self.writes: list[Write] = []

    def put(
        self,
        table: str,
        item: Item,
        condition: str,
        on_failed: Callable[[], DomainError],
        **extra: Any,
    ) -> None:
        request = {"TableName": table, "Item": item, "ConditionExpression": condition, **extra}
        self.writes.append(Write("Put", request, on_failed))

    def update(
        self,
        table: str,
        key: Item,
        expression: str,
        condition: str | None,
        on_failed: Callable[[], DomainError],
        **extra: Any,
    ) -> None:
        request = {"TableName": table, "Key": key, "UpdateExpression": expression, **extra}
        if condition is not None:  # None: an ADD that commutes with everything
            request["ConditionExpression"] = condition
        self.writes.append(Write("Update", request, on_failed))

    def delete(
        self,
        table: str,
        key: Item,
        condition: str | None,
        on_failed: Callable[[], DomainError],
        **extra: Any,
    ) -> None:
        request = {"TableName": table, "Key": key, **extra}
        if condition is not None:  # None: deleting what is not there is fine
            request["ConditionExpression"] = condition
        self.writes.append(Write("Delete", request, on_failed))


def commit(client: Any, staged: Staged) -> None:
    """Apply every staged write, or none; raise the failing write's domain error."""
    writes, staged.writes = staged.writes, []
    if not writes:
        return
    if len(writes) > MAX_TRANSACTION_WRITES:
        raise TransactionTooLarge(
            "the request would change more records than one atomic write holds",
            writes=len(writes),
            max_writes=MAX_TRANSACTION_WRITES,
        )
    if len(writes) == 1:
        _commit_one(client, writes[0])
    else:
        _commit_transaction(client, writes)


def commit_in_order(client: Any, staged: Staged) -> None:
    """Apply the staged writes one at a time, in order, each a plain conditional
    call; stop at the first that fails and raise its domain error (the writes
    after it are not made)."""
    writes, staged.writes = staged.writes, []
    for write in writes:
        _commit_one(client, write)


def _commit_one(client: Any, write: Write) -> None:
    call = getattr(
        client, {"Put": "put_item", "Update": "update_item"}.get(write.kind, "delete_item")
    )
    try:
        call(ReturnConsumedCapacity="TOTAL", **write.request)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code == "ConditionalCheckFailedException":
            raise write.on_condition_failed() from exc
        if code == "TransactionConflictException":
            # A transaction (a purchase's, say) held the item as this write came.
            raise ConcurrentUpdate(
                "another request changed the same record; retry", error=code
            ) from exc
        raise


def _commit_transaction(client: Any, writes: list[Write]) -> None:
    try:
        client.transact_write_items(
            TransactItems=[{w.kind: w.request} for w in writes],
            ReturnConsumedCapacity="TOTAL",
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "TransactionCanceledException":
            raise
        reasons = exc.response.get("CancellationReasons") or []
        codes = [r.get("Code", "None") for r in reasons]
        for write, reason in zip(writes, codes, strict=False):
            if reason == "ConditionalCheckFailed":
                raise write.on_condition_failed() from exc
        if THROTTLING_REASONS.intersection(codes):
            raise StorageBusy(
                "the database is busy; try again shortly", cancellation_reasons=codes
            ) from exc
        if "TransactionConflict" in codes or not set(codes) - {"None"}:
            # Another transaction held one of the items (or DynamoDB gave no
            # reason, which it does only for a race).
            raise ConcurrentUpdate(
                "another request changed the same records; retry", cancellation_reasons=codes
            ) from exc
        raise  # a ValidationError and the like: a bug, not a race


_T = TypeVar("_T")
_Owner = TypeVar("_Owner")


class built_once(Generic[_Owner, _T]):
    """A unit of work's repository, built on first use and kept in the instance.

    A unit of work serves one request in one thread, so unlike
    functools.cached_property (which takes a lock on every first use, more than
    the ingest of a reading costs otherwise) this takes none.
    """

    def __init__(self, build: Callable[[_Owner], _T]) -> None:
        self._build = build
        self._name = build.__name__

    def __get__(self, instance: _Owner, owner: type | None = None) -> _T:
        built = self._build(instance)
        instance.__dict__[self._name] = built  # found before this descriptor from now on
        return built


class _Watermarks:
    """The jobs' watermarks for the due-work scans: each move is a commit of its own."""

    def __init__(self, client: Any, tables: Tables) -> None:
        self._client, self._tables = client, tables

    def hour(self, job: str) -> int | None:
        return DynamoJobs(self._client, self._tables, Staged()).watermark_hour(job)

    def advance_alone(self, job: str, hour: int) -> None:
        staged = Staged()
        DynamoJobs(self._client, self._tables, staged).advance_hour(job, hour)
        commit(self._client, staged)


class DynamoUnitOfWork:
    max_writes: Final = MAX_TRANSACTION_WRITES

    def __init__(self, client: Any, tables: Tables) -> None:
        self._client = ThrottledIsBusy(client)
        self._tables = tables
        self._staged = Staged()

    # Each repository is built on first use: a use case touches two or three.

    @built_once
    def accounts(self) -> DynamoAccounts:
        return DynamoAccounts(self._client, self._tables, self._staged)

    @built_once
    def nonces(self) -> DynamoNonces:
        return DynamoNonces(self._client, self._tables, self._staged)

    @built_once
    def ledger(self) -> DynamoLedger:
        return DynamoLedger(self._client, self._tables, self._staged)

    @built_once
    def providers(self) -> DynamoProviders:
        return DynamoProviders(self._client, self._tables, self._staged)

    @built_once
    def meters(self) -> DynamoMeters:
        return DynamoMeters(self._client, self._tables, self._staged)

    @built_once
    def credits(self) -> DynamoCredits:
        return DynamoCredits(
            self._client, self._tables, self._staged, _Watermarks(self._client, self._tables)
        )

    @built_once
    def purchases(self) -> DynamoPurchases:
        return DynamoPurchases(
            self._client, self._tables, self._staged, _Watermarks(self._client, self._tables)
        )

    @built_once
    def receipts(self) -> DynamoReceipts:
        return DynamoReceipts(self._client, self._tables, self._staged)

    @built_once
    def jobs(self) -> DynamoJobs:
        return DynamoJobs(self._client, self._tables, self._staged)

    @built_once
    def disputes(self) -> DynamoDisputes:
        return DynamoDisputes(
            self._client, self._tables, self._staged, _Watermarks(self._client, self._tables)
        )

    @built_once
    def validators(self) -> DynamoValidators:
        return DynamoValidators(self._client, self._tables, self._staged)

    @built_once
    def watch(self) -> DynamoWatch:
        return DynamoWatch(self._client, self._tables, self._staged)

    @built_once
    def analytics(self) -> DynamoAnalytics:
        return DynamoAnalytics(self._client, self._tables, self._staged)

    @built_once
    def connections(self) -> DynamoConnections:
        return DynamoConnections(self._client, self._tables, self._staged)

    def staged_writes(self) -> int:
        """How many writes the next commit would apply (for tests of the limit)."""
        return len(self._staged.writes)

    def commit(self) -> None:
        commit(self._client, self._staged)

    def commit_in_order(self) -> None:
        commit_in_order(self._client, self._staged)
