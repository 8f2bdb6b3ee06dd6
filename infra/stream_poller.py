"""The local stand-in for Lambda's DynamoDB stream event sources.

In AWS, Lambda polls a table's stream and invokes each function that has an
``@app.on_dynamodb_record`` event source with batches of records. Offline,
this process imports ``app``, finds the same functions (Chalice keeps them
in ``app.app.event_sources``), reads the streams they name from moto, reshapes
each batch into the event Lambda sends (``{"Records": [...]}`` with
``eventSourceARN`` and epoch-second ``ApproximateCreationDateTime``) and calls
the handler. Like Lambda, it retries a batch whose handler raised, with a
backoff, before moving on: records of one stream are handled in order and
none is skipped. Its counters and backlog go to ``--status-file``.

    python -m infra.stream_poller --status-file .local/streams/status.json
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from chalice.app import DynamoDBEventConfig

from iot.lifecycle import write_status

logger = logging.getLogger("infra.stream_poller")

POLL_SECONDS = 0.5
STATUS_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 10.0
BACKLOG_PROBE_LIMIT = 1000


@dataclass
class Subscription:
    """One handler reading one stream, and where it has got to."""

    name: str
    handler: Any
    stream_arn: str
    batch_size: int
    starting_position: str
    iterators: dict[str, str] = field(default_factory=dict)  # shard id -> next iterator
    records: int = 0
    batches: int = 0
    failures: int = 0
    backlog: int = 0
    last_error: str | None = None

    def status(self) -> dict[str, Any]:
        return {
            "stream_arn": self.stream_arn,
            "records": self.records,
            "batches": self.batches,
            "failures": self.failures,
            "backlog": self.backlog,
            "last_error": self.last_error,
        }


def lambda_event(
    records: list[dict[str, Any]], stream_arn: str, shard_id: str = "shardId-local"
) -> dict[str, Any]:
    """The event Lambda sends a stream function, from GetRecords' records.

    As Lambda sends it to a function with a tumbling window (the template
    gives both consumers one): with the shard's id, the window and its state.
    Windows are not emulated: each batch is its own, and the final one.
    """
    shaped = []
    for record in records:
        change = dict(record["dynamodb"])
        created = change.get("ApproximateCreationDateTime")
        if isinstance(created, datetime.datetime):
            change["ApproximateCreationDateTime"] = int(created.timestamp())
        shaped.append({**record, "dynamodb": change, "eventSourceARN": stream_arn})
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "Records": shaped,
        "shardId": shard_id,
        "eventSourceARN": stream_arn,
        "window": {"start": now, "end": now},
        "state": {},
        "isFinalInvokeForWindow": True,
        "isWindowTerminatedEarly": False,
    }


def stream_subscriptions(module: Any) -> list[Subscription]:
    subscriptions = []
    for source in module.app.event_sources:
        if isinstance(source, DynamoDBEventConfig):
            subscriptions.append(
                Subscription(
                    name=source.name,
                    handler=getattr(module, source.handler_string.split(".")[-1]),
                    stream_arn=source.stream_arn,
                    batch_size=source.batch_size,
                    starting_position=source.starting_position,
                )
            )
    return subscriptions


class StreamPoller:
    def __init__(
        self, subscriptions: list[Subscription], streams: Any, status_path: Path | None
    ) -> None:
        self.subscriptions = subscriptions
        self.streams = streams
        self.status_path = status_path
        self.stopping = threading.Event()

    def _open(self, subscription: Subscription) -> None:
        description = self.streams.describe_stream(StreamArn=subscription.stream_arn)
        for shard in description["StreamDescription"]["Shards"]:
            if shard["ShardId"] not in subscription.iterators:
                subscription.iterators[shard["ShardId"]] = self.streams.get_shard_iterator(
                    StreamArn=subscription.stream_arn,
                    ShardId=shard["ShardId"],
                    ShardIteratorType=subscription.starting_position,
                )["ShardIterator"]

    def poll(self, subscription: Subscription) -> int:
        """One batch per shard: hand it to the handler; return the records handled."""
        self._open(subscription)
        handled = 0
        for shard_id, iterator in list(subscription.iterators.items()):
            response = self.streams.get_records(
                ShardIterator=iterator, Limit=subscription.batch_size
            )
            records = response["Records"]
            if records:
                self._deliver(subscription, records, shard_id)
                handled += len(records)
            subscription.iterators[shard_id] = response["NextShardIterator"]
        return handled

    def _deliver(
        self, subscription: Subscription, records: list[dict[str, Any]], shard_id: str
    ) -> None:
        backoff = 0.5
        event = lambda_event(records, subscription.stream_arn, shard_id)
        while not self.stopping.is_set():
            try:
                subscription.handler(event, None)
            except Exception as exc:  # the invocation failed: Lambda retries the batch
                subscription.failures += 1
                subscription.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("%s failed on a batch of %d", subscription.name, len(records))
                self.stopping.wait(backoff)
                backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)
                continue
            subscription.records += len(records)
            subscription.batches += 1
            subscription.last_error = None
            return

    def measure_backlog(self) -> None:
        """Records in each stream not yet handed to its handler (up to a probe's limit)."""
        for subscription in self.subscriptions:
            waiting = 0
            for iterator in subscription.iterators.values():
                probe = self.streams.get_records(ShardIterator=iterator, Limit=BACKLOG_PROBE_LIMIT)
                waiting += len(probe["Records"])
            subscription.backlog = waiting

    def write_status(self) -> None:
        if self.status_path is None:
            return
        self.measure_backlog()
        write_status(self.status_path, {s.name: s.status() for s in self.subscriptions})

    def run(self) -> None:
        next_status = 0.0
        while not self.stopping.is_set():
            busy = False
            for subscription in self.subscriptions:
                try:
                    busy = self.poll(subscription) > 0 or busy
                except (BotoCoreError, ClientError) as exc:  # moto busy or restarting
                    subscription.last_error = f"{type(exc).__name__}: {exc}"
                    logger.warning("%s: %s", subscription.name, exc)
            if time.monotonic() >= next_status:
                self.write_status()
                next_status = time.monotonic() + STATUS_SECONDS
            if not busy:
                self.stopping.wait(POLL_SECONDS)
        self.write_status()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stream_poller", description=__doc__)
    parser.add_argument("--app", default="app", help="module holding the Chalice app")
    parser.add_argument("--status-file", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    subscriptions = stream_subscriptions(importlib.import_module(args.app))
    poller = StreamPoller(subscriptions, boto3.client("dynamodbstreams"), args.status_file)

    def stop(signum: int, frame: FrameType | None) -> None:
        poller.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("polling %s", ", ".join(f"{s.name} <- {s.stream_arn}" for s in subscriptions))
    poller.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
