"""The three stream functions' work: what each decodes from its batch, and what it does with it.

``app.py``'s handlers call these; ``chalicelib.streams.batch`` runs the two
steps and turns failures into the answer Lambda reads.

registry stream  ``watch_meters``            credits to restore, analytics, fraud detectors,
                                             live events
ledger stream    ``publish_market_events``   market events and metrics, analytics, live events
disputes stream  ``publish_dispute_events``  live events
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.analytics import Contribution
from chalicelib.domain.credits import Credit
from chalicelib.domain.events import Event
from chalicelib.services.fraud_watch import MeterEvent
from chalicelib.streams import (
    live_events,
    market_analytics,
    meter_watch,
    minted_credits,
    purchase_events,
)
from chalicelib.streams.batch import Record, consume
from chalicelib.streams.purchase_events import MarketEvent


@dataclass(frozen=True)
class RegistryBatch:
    minted: list[Credit]
    contributions: list[Contribution]
    meter_events: list[MeterEvent]
    live: list[Event]


@dataclass(frozen=True)
class LedgerBatch:
    market_events: list[MarketEvent]
    contributions: list[Contribution]
    live: list[Event]


def watch_meters(event: Mapping[str, Any]) -> dict[str, Any]:
    from chalicelib.services.analytics import buckets_of, fold
    from chalicelib.services.fraud_watch import watch_meters as watch
    from chalicelib.services.ingest import restore_credits
    from chalicelib.wiring import jobs_dependencies

    deps = jobs_dependencies()
    buckets = buckets_of(deps)

    def decode(records: Sequence[Record]) -> RegistryBatch:
        return RegistryBatch(
            minted_credits.credits_from_records(records, deps.settings.credit_lifetime_ms),
            market_analytics.contributions(records, buckets),
            meter_watch.events_from_records(records),
            live_events.registry_events(records),
        )

    def process(batch: RegistryBatch) -> None:
        # First: a credit lost between ingest's two writes is what buyers wait for.
        restore_credits(deps, batch.minted)
        if batch.contributions:
            fold(deps, market_analytics.shard_of(event), batch.contributions)
        if batch.meter_events:
            watch(deps, batch.meter_events)
        live_events.publish_events(batch.live)

    return consume("watch_meters", event, decode, process, windowed=True)


def publish_market_events(event: Mapping[str, Any]) -> dict[str, Any]:
    from chalicelib.services.analytics import buckets_of, fold
    from chalicelib.wiring import jobs_dependencies

    deps = jobs_dependencies()
    buckets = buckets_of(deps)

    def decode(records: Sequence[Record]) -> LedgerBatch:
        return LedgerBatch(
            purchase_events.events_from_records(records),
            market_analytics.contributions(records, buckets),
            live_events.ledger_events(records),
        )

    def process(batch: LedgerBatch) -> None:
        purchase_events.publish(batch.market_events)
        if batch.contributions:
            fold(deps, market_analytics.shard_of(event), batch.contributions)
        live_events.publish_events(batch.live)

    return consume("publish_market_events", event, decode, process, windowed=True)


def publish_dispute_events(event: Mapping[str, Any]) -> dict[str, Any]:
    return consume(
        "publish_dispute_events",
        event,
        live_events.dispute_events,
        live_events.publish_events,
        windowed=False,
    )
