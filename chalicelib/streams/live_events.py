"""The live events in a batch of stream records (registry, ledger or disputes).

Each stream handler turns its batch into events and publishes them
(``chalicelib.services.live``); docs/events.md lists every event and its data.

registry  PROVIDER / ``new_reading`` (the meter's last reading moving, kept on its
          METER      provider's item; on a legacy meter item): one per batch (readings and energy by type,
                     and per provider, for the first 100: how many, their energy,
                     the newest counter and time); on ``provider:<id>``, one per
                     provider per batch
          PROVIDER   ``provider_update``: one per provider per batch, its newest
                     state, when its settings changed (name, capacity, price, status,
                     open disputes); on ``provider:<id>``, on any change of its card
ledger    PURCHASE   ``new_settlement`` (public); ``purchase_opened``,
                     ``purchase_settled``, ``purchase_revoked`` on the buyer's topic
          BALANCE    ``balance`` on the account's topic
disputes  DISPUTE    ``dispute_opened``, ``dispute_resolved`` (public, and on the
                     topics of the provider's owner and the flaggers);
                     ``dispute_assigned`` on each drawn validator's topic
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from chalicelib.adapters.dynamodb.codec import as_int, from_item
from chalicelib.adapters.dynamodb.disputes import dispute_from_item
from chalicelib.adapters.dynamodb.meters import meter_image
from chalicelib.adapters.dynamodb.providers import provider_from_item
from chalicelib.adapters.dynamodb.purchases import purchase_from_item
from chalicelib.domain.disputes import Dispute, DisputeStatus
from chalicelib.domain.events import (
    MAX_PROVIDERS_LISTED,
    Event,
    account_topic,
    provider_topic,
)
from chalicelib.domain.providers import Provider
from chalicelib.domain.trading import Purchase, PurchaseStatus

logger = logging.getLogger(__name__)

DECIDED = frozenset({DisputeStatus.GUILTY, DisputeStatus.CLEARED, DisputeStatus.REVOKING})


def _record_ms(change: Mapping[str, Any]) -> int:
    return int(change.get("ApproximateCreationDateTime", 0)) * 1000


def _sort_key(change: Mapping[str, Any]) -> str:
    image = change.get("NewImage") or change.get("OldImage") or change.get("Keys") or {}
    return str(image.get("sk", {}).get("S", ""))


def registry_events(records: Iterable[Mapping[str, Any]]) -> list[Event]:
    readings: dict[str, dict[str, Any]] = {}
    providers: dict[str, tuple[Provider, int, bool]] = {}  # newest state, when, settings changed
    for record in records:
        change = record.get("dynamodb") or {}
        new, old = change.get("NewImage") or {}, change.get("OldImage") or {}
        sort_key = _sort_key(change)
        if sort_key == "METER" and new:
            _reading(readings, from_item(dict(old)) if old else {}, from_item(dict(new)))
        elif sort_key == "PROVIDER" and new:
            # An accepted reading moves the meter's last reading on this item.
            meter_old, meter_new = meter_image(dict(old)), meter_image(dict(new))
            _reading(readings, from_item(meter_old) if old else {}, from_item(meter_new))
            after = provider_from_item(dict(new))
            before = provider_from_item(dict(old)) if old else None
            if before is None or _summary(before) != _summary(after):
                settings = before is None or _settings(before) != _settings(after)
                earlier = providers.get(after.provider_id)
                settings = settings or (earlier is not None and earlier[2])
                providers[after.provider_id] = (after, _record_ms(change), settings)
    found: list[Event] = []
    if readings:
        found.append(_readings_summary(list(readings.values())))
        found += [
            Event(provider_topic(r["provider_id"]), "new_reading", r["timestamp_ms"], r)
            for r in readings.values()
        ]
    for provider, at_ms, settings in providers.values():
        summary = _summary(provider)
        # Every provider's energy on sale moves with each reading: the public
        # topic hears of settings only (a market of a million meters would
        # otherwise push every provider to every client); the provider's own
        # topic hears of everything.
        if settings:
            found.append(Event("provider_update", "provider_update", at_ms, summary))
        found.append(Event(provider_topic(provider.provider_id), "provider_update", at_ms, summary))
    return found


def _settings(provider: Provider) -> tuple[Any, ...]:
    """What the public provider_update topic follows: the provider's settings and standing."""
    return (
        provider.display_name,
        provider.capacity_wh,
        provider.price_micro_block_per_kwh,
        provider.status,
        len(provider.freezes),
    )


def _readings_summary(readings: list[dict[str, Any]]) -> Event:
    """The batch's readings as one event: a frame per client per batch, of bounded size."""
    by_type: dict[str, int] = {}
    for reading in readings:
        by_type[reading["energy_type"]] = by_type.get(reading["energy_type"], 0) + reading["wh"]
    listed = sorted(readings, key=lambda r: r["timestamp_ms"])[-MAX_PROVIDERS_LISTED:]
    data = {
        "readings": sum(r["readings"] for r in readings),
        "wh": sum(r["wh"] for r in readings),
        "wh_by_type": dict(sorted(by_type.items())),
        "providers": listed,
        "providers_not_listed": len(readings) - len(listed),
    }
    return Event("new_reading", "new_reading", listed[-1]["timestamp_ms"], data)


def _reading(
    found: dict[str, dict[str, Any]], old: Mapping[str, Any], new: Mapping[str, Any]
) -> None:
    hash_after = new.get("last_reading_hash")
    if hash_after is None or hash_after == old.get("last_reading_hash"):
        return  # not a reading: a key rotated, a refusal counted
    counter = as_int(new["last_counter_wh"])
    previous = old.get("last_counter_wh")
    wh = counter - as_int(previous) if previous is not None else 0
    provider_id = str(new["provider_id"])
    entry = found.setdefault(
        provider_id,
        {
            "provider_id": provider_id,
            "meter_address": new["meter_address"],
            "energy_type": str(new.get("energy_type", "unknown")),
            "readings": 0,
            "wh": 0,
        },
    )
    entry["readings"] += 1
    entry["wh"] += wh
    entry["counter_wh"] = counter
    entry["timestamp_ms"] = as_int(new["last_timestamp_ms"])


def _summary(provider: Provider) -> dict[str, Any]:
    """What a provider card shows, as the provider_update event carries it."""
    return {
        "provider_id": provider.provider_id,
        "display_name": provider.display_name,
        "energy_type": str(provider.energy_type),
        "jurisdiction": provider.jurisdiction,
        "capacity_wh": provider.capacity_wh,
        "price_micro_block_per_kwh": provider.price_micro_block_per_kwh,
        "status": str(provider.status),
        "on_sale_wh": provider.on_sale_wh,
        "sold_wh": provider.sold_wh,
        "rating": provider.rating,
        "open_disputes": len(provider.freezes),
    }


def ledger_events(records: Iterable[Mapping[str, Any]]) -> list[Event]:
    found: list[Event] = []
    balances: dict[str, tuple[int, int]] = {}
    for record in records:
        change = record.get("dynamodb") or {}
        new, old = change.get("NewImage") or {}, change.get("OldImage") or {}
        sort_key = _sort_key(change)
        if sort_key == "PURCHASE" and new:
            found += _purchase(
                purchase_from_item(dict(old)) if old else None, purchase_from_item(dict(new))
            )
        elif sort_key == "BALANCE" and new:
            account = str(new["pk"]["S"]).removeprefix("ACCOUNT#")
            balances[account] = (int(new["micro_block"]["N"]), _record_ms(change))
    found += [
        Event(account_topic(account), "balance", at_ms, {"account": account, "balance": balance})
        for account, (balance, at_ms) in balances.items()
    ]
    return found


def _purchase(before: Purchase | None, after: Purchase) -> list[Event]:
    data: dict[str, Any] = {
        "transaction_id": after.purchase_id,
        "provider_id": after.provider_id,
        "buyer": after.buyer,
        "wh": after.wh,
        "total_cost": after.escrow_micro_block,
        "price_micro_block_per_kwh": after.price_micro_block_per_kwh,
        "status": str(after.status),
    }
    mine = account_topic(after.buyer)
    if before is None and after.status == PurchaseStatus.OPEN:
        data["settles_at_ms"] = after.settles_at_ms
        return [Event(mine, "purchase_opened", after.created_at_ms, data)]
    if before is None or before.status != PurchaseStatus.OPEN or after.closed_at_ms is None:
        return []
    if after.status == PurchaseStatus.SETTLED:
        data["settled_at_ms"] = after.closed_at_ms
        data["receipt"] = {
            "chain": after.receipt_chain,
            "sequence": after.receipt_sequence,
            "hash": after.receipt_hash,
        }
        return [
            Event("new_settlement", "new_settlement", after.closed_at_ms, data),
            Event(mine, "purchase_settled", after.closed_at_ms, data),
        ]
    if after.status == PurchaseStatus.REVOKED:
        return [Event(mine, "purchase_revoked", after.closed_at_ms, data)]
    return []


def dispute_events(records: Iterable[Mapping[str, Any]]) -> list[Event]:
    found: list[Event] = []
    for record in records:
        change = record.get("dynamodb") or {}
        new, old = change.get("NewImage") or {}, change.get("OldImage") or {}
        if _sort_key(change) != "DISPUTE" or not new:
            continue
        after = dispute_from_item(dict(new))
        before = dispute_from_item(dict(old)) if old else None
        found += _dispute(before, after)
    return found


def _dispute(before: Dispute | None, after: Dispute) -> list[Event]:
    data: dict[str, Any] = {
        "dispute_id": after.dispute_id,
        "provider_id": after.provider_id,
        "status": str(after.status),
        "reason": after.flags[0].reason if after.flags else None,
        "flags": len(after.flags),
        "opened_at_ms": after.opened_at_ms,
        "deadline_ms": after.deadline_ms,
        "severity": str(after.severity) if after.severity else None,
    }
    flaggers = {f.flagger for f in after.flags if f.flagger is not None}
    concerned = sorted({after.provider_owner, *flaggers})
    if before is None:
        at = after.opened_at_ms
        return (
            [Event("dispute_opened", "dispute_opened", at, data)]
            + [Event(account_topic(a), "dispute_opened", at, data) for a in concerned]
            + [Event(account_topic(v), "dispute_assigned", at, data) for v in after.panel]
        )
    if before.status == DisputeStatus.OPEN and after.status in DECIDED:
        at = after.resolved_at_ms or after.deadline_ms
        return [Event("dispute_resolved", "dispute_resolved", at, data)] + [
            Event(account_topic(a), "dispute_resolved", at, data) for a in concerned
        ]
    return []


def publish_events(found: list[Event]) -> dict[str, Any]:
    """Push a batch's events to their subscribers, if live events are configured.

    Best effort: a push that fails is logged and not retried, so that a busy
    WebSocket API never holds back the stream (and its analytics) or pushes
    the batch's other events twice. Clients that miss one reconcile by reading
    the API on reconnect (docs/events.md).
    """
    from chalicelib.services.live import publish
    from chalicelib.wiring import jobs_dependencies, live_pusher

    pusher = live_pusher()
    if pusher is None or not found:
        return {"events": len(found), "pushes": 0}
    try:
        return publish(jobs_dependencies(), pusher, found).as_log()
    except Exception:
        logger.exception("live events were not pushed", extra={"events": len(found)})
        return {"events": len(found), "pushes": 0, "failed": True}


def push_market_stats() -> dict[str, Any]:
    """The ``market_stats`` topic: the same figures ``energy.getMarketStats`` answers."""
    import json

    from chalicelib.services.live import publish
    from chalicelib.wiring import dispatcher, jobs_dependencies, live_pusher

    pusher = live_pusher()
    deps = jobs_dependencies()
    if pusher is None or not deps.unit_of_work().connections.subscribed_any(["market_stats"]):
        return {"pushed": False}
    request = b'{"jsonrpc": "2.0", "id": 1, "method": "energy.getMarketStats"}'
    answer = dispatcher().handle(request)
    stats = json.loads(answer or b"{}").get("result")
    if stats is None:
        return {"pushed": False, "error": "no figures"}
    event = Event("market_stats", "market_stats", int(stats["as_of_ms"]), stats)
    return publish(deps, pusher, [event]).as_log()
