"""Trading events from the ledger table's stream: what changes in the market, as it happens.

DynamoDB streams every change of the ledger table (new and old images). The
records of purchase items become market events: a purchase opened (its cost
held in escrow) and a purchase settled (the escrow released, the energy
delivered). Each event is published as one structured log line, the
market's event feed, and each batch as CloudWatch embedded metrics
(purchases opened and settled, Wh and micro-BLOCK settled), without an API
call and off the request path. Delivery is at least once and in order per
item: an event names its purchase and status, so a consumer drops a repeat.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from chalicelib.adapters.dynamodb.purchases import purchase_from_item
from chalicelib.domain.trading import Purchase, PurchaseStatus
from chalicelib.observability import emit_metrics

logger = logging.getLogger(__name__)

OPENED = "purchase_opened"
SETTLED = "purchase_settled"


@dataclass(frozen=True)
class MarketEvent:
    kind: str
    transaction_id: str
    buyer: str
    provider_id: str
    wh: int
    micro_block: int  # the escrow: held when opened, released when settled
    at_ms: int
    sequence_number: str  # the stream record's, for ordering and de-duplication


def _purchase(image: Mapping[str, Any]) -> Purchase | None:
    """The purchase in a stream image (the item mapping's own decoding), if it is one."""
    if image.get("sk", {}).get("S") != "PURCHASE":
        return None
    return purchase_from_item(dict(image))


def events_from_records(records: Iterable[Mapping[str, Any]]) -> list[MarketEvent]:
    """The market events in a batch of ledger stream records (others are skipped)."""
    events = []
    for record in records:
        change = record.get("dynamodb") or {}
        new = _purchase(change.get("NewImage") or {})
        if new is None:
            continue
        old = _purchase(change.get("OldImage") or {})
        before = old.status if old is not None else None
        if record.get("eventName") == "INSERT" and new.status == PurchaseStatus.OPEN:
            kind, at_ms = OPENED, new.created_at_ms
        elif before == PurchaseStatus.OPEN and new.status == PurchaseStatus.SETTLED:
            kind, at_ms = SETTLED, new.settled_at_ms or 0
        else:
            continue
        events.append(
            MarketEvent(
                kind=kind,
                transaction_id=new.purchase_id,
                buyer=new.buyer,
                provider_id=new.provider_id,
                wh=new.wh,
                micro_block=new.escrow_micro_block,
                at_ms=at_ms,
                sequence_number=str(change.get("SequenceNumber", "")),
            )
        )
    return events


def publish(events: list[MarketEvent]) -> dict[str, int]:
    """Log every event and the batch's metrics; return the batch's totals."""
    for event in events:
        logger.info("market event", extra={"market_event": asdict(event)})
    settled = [e for e in events if e.kind == SETTLED]
    totals = {
        "PurchasesOpened": sum(e.kind == OPENED for e in events),
        "PurchasesSettled": len(settled),
        "SettledWh": sum(e.wh for e in settled),
        "SettledMicroBlock": sum(e.micro_block for e in settled),
    }
    if events:
        emit_metrics(totals)
    return totals
