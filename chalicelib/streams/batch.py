"""One batch of stream records, handled the way Lambda's event source mapping expects.

The three stream functions run with ``FunctionResponseTypes:
[ReportBatchItemFailures]``, ``BisectBatchOnFunctionError``, a retry limit, a
maximum record age and an on-failure destination (infra/template.yaml). Lambda
reads their answer as a checkpoint: ``batchItemFailures`` names the first
record not done, by its ``SequenceNumber``; Lambda keeps the records before
it as processed and delivers that record and everything after it again (a
shard is ordered, so nothing after a failed record may count as done). After
the retry limit, or past the maximum age, Lambda sends a description of the
failed batch to the on-failure destination (the ``StreamFailuresQueue``) and
goes on with the shard.

A batch is handled in two steps:

1. Decode: every record becomes what the consumer needs (analytics
   contributions, fraud-watch events, live events). Decoding is pure, so a
   record that fails to decode will always fail: a *poison* record. Only
   when the batch fails to decode are the records decoded one by one, to find
   the first poison record; the records before it are handled, and the answer
   reports it. A poison record at the head of a batch with records after it
   cannot be reported usefully (Lambda would retry the same batch, and after
   the limit discard the good records with it), so it raises
   :class:`PoisonRecord`: a function error, on which Lambda splits the batch in
   two (bisection, which costs no retry) until the poison record is alone;
   alone, it is reported, retried up to the limit and sent to the
   destination, and the records after it go on.
2. Process: the decoded batch is written (analytics, detectors) and pushed
   (live events). Every write is idempotent per record (the analytics keep a
   per-shard sequence mark; the detectors' state is keyed by reading), so a
   batch delivered again counts nothing twice. A *transient* failure
   (throttling, which the adapters raise as ``StorageBusy``, a service error,
   a lost connection, a write that lost a race after botocore's own retries) is nobody's record: the whole batch is
   reported from its first record, so Lambda retries it without bisecting (a
   throttled table is not helped by smaller batches). Any other failure is
   raised: a bug that only some records trigger is isolated by bisection.

Every failure is logged (with the record's sequence number and keys, never
its images) and counted as an embedded metric, in total and by ``consumer``:
``StreamPoisonRecords`` each time a poison record is met (so a record retried
to the limit counts once per delivery) and ``StreamTransientFailures`` per
batch reported for a transient failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from chalicelib.observability import emit_metrics

logger = logging.getLogger(__name__)

Decoded = TypeVar("Decoded")
Record = Mapping[str, Any]

# botocore error codes of a request that may well succeed when sent again.
TRANSIENT_ERROR_CODES: Final = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "LimitExceededException",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)


class PoisonRecord(Exception):
    """The batch's first record cannot be decoded: raised so that Lambda bisects the batch."""


@dataclass(frozen=True)
class Decoding(Generic[Decoded]):
    """A batch decoded up to its first poison record, if it has one."""

    decoded: Decoded
    handled: int  # records decoded, from the head
    poison: BaseException | None = None


def decode_until_poison(
    records: Sequence[Record], decode: Callable[[Sequence[Record]], Decoded]
) -> Decoding[Decoded]:
    """Decode the batch; if it fails, decode the records before its first poison record."""
    try:
        return Decoding(decode(records), len(records))
    except Exception as batch_error:
        for index, record in enumerate(records):
            try:
                decode([record])
            # Decoding is pure: whatever it raises, this record will always raise it.
            except Exception as poison:  # noqa: BLE001
                return Decoding(decode(records[:index]), index, poison)
        # No record fails alone: the batch as a whole does. Not a record's fault.
        raise batch_error from None


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is a failure of the moment, not of the records."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    from chalicelib.domain.errors import ConcurrentUpdate, StorageBusy

    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code")) in TRANSIENT_ERROR_CODES
    return isinstance(
        error,
        EndpointConnectionError
        | ConnectTimeoutError
        | ReadTimeoutError
        | ConnectionClosedError
        | ConcurrentUpdate
        | StorageBusy,
    )


def answer(failed_from: Record | None, *, windowed: bool) -> dict[str, Any]:
    """The function's answer: the checkpoint, and for a tumbling window its state.

    A function with a tumbling window must answer with ``state`` (none is kept
    between batches: the aggregates are the state), or Lambda counts the
    invocation as failed.
    """
    failures = []
    if failed_from is not None:
        failures.append({"itemIdentifier": sequence_number(failed_from)})
    return (
        {"state": {}, "batchItemFailures": failures}
        if windowed
        else {"batchItemFailures": failures}
    )


def sequence_number(record: Record) -> str:
    return str((record.get("dynamodb") or {}).get("SequenceNumber", ""))


def consume(
    consumer: str,
    event: Mapping[str, Any],
    decode: Callable[[Sequence[Record]], Decoded],
    process: Callable[[Decoded], object],
    *,
    windowed: bool,
) -> dict[str, Any]:
    """Decode and process one stream event's batch; the answer Lambda reads."""
    records: list[Record] = list(event.get("Records") or [])
    decoding = decode_until_poison(records, decode)
    if decoding.poison is not None:
        poison = records[decoding.handled]
        _report_poison(consumer, poison, decoding.poison)
        if decoding.handled == 0 and len(records) > 1:
            raise PoisonRecord(
                f"{consumer}: record {sequence_number(poison)} cannot be decoded"
                f" ({type(decoding.poison).__name__}); split the batch to isolate it"
            ) from decoding.poison
    if decoding.handled:
        try:
            process(decoding.decoded)
        except Exception as error:
            if not is_transient(error):
                raise
            logger.warning(
                "stream batch failed on a transient error; reported for a retry",
                extra={
                    "consumer": consumer,
                    "records": len(records),
                    "first_sequence_number": sequence_number(records[0]),
                    "error": f"{type(error).__name__}: {error}",
                },
            )
            emit_metrics(
                {"StreamTransientFailures": 1},
                dimensions={"consumer": consumer},
                dimension_sets=[[], ["consumer"]],
            )
            return answer(records[0], windowed=windowed)
    if decoding.poison is not None:
        return answer(records[decoding.handled], windowed=windowed)
    return answer(None, windowed=windowed)


def _report_poison(consumer: str, record: Record, error: BaseException) -> None:
    logger.error(
        "stream record cannot be processed",
        extra={
            "consumer": consumer,
            "sequence_number": sequence_number(record),
            "event_name": record.get("eventName"),
            "keys": (record.get("dynamodb") or {}).get("Keys"),
            "error": f"{type(error).__name__}: {error}",
        },
    )
    emit_metrics(
        {"StreamPoisonRecords": 1},
        dimensions={"consumer": consumer},
        dimension_sets=[[], ["consumer"]],
    )
