"""Live events on each storage adapter: connections, subscriptions, tokens, fan-out.

The pusher here records what would go through API Gateway's @connections API;
tests/e2e drives the real path through the local WebSocket gateway.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.domain.events import MAX_TOPICS, Event
from chalicelib.services import live
from energy_client.rpc_client import events_token
from tests.support import MARKETPLACE_ID, MarketHarness


class RecordingPusher:
    """Frames by connection; connections in ``gone`` answer as GoneException does."""

    def __init__(self) -> None:
        self.frames: dict[str, list[dict[str, Any]]] = {}
        self.gone: set[str] = set()

    def post(self, connection_id: str, data: bytes) -> bool:
        if connection_id in self.gone:
            return False
        self.frames.setdefault(connection_id, []).append(json.loads(data))
        return True

    def last(self, connection_id: str) -> dict[str, Any]:
        return self.frames[connection_id][-1]


@pytest.fixture
def pusher() -> RecordingPusher:
    return RecordingPusher()


def _send(market: MarketHarness, pusher: RecordingPusher, connection: str, **message: Any) -> Any:
    live.receive(market.deps, pusher, connection, json.dumps(message))
    return pusher.last(connection)


def _token(market: MarketHarness, signer: Any, ahead_ms: int = 600_000) -> str:
    return events_token(signer, MARKETPLACE_ID, market.deps.now_ms() + ahead_ms)


def test_public_topics_need_no_key_and_ping_is_answered(
    market: MarketHarness, pusher: RecordingPusher
) -> None:
    assert live.connect(market.deps, "c1", None)
    answer = _send(market, pusher, "c1", action="subscribe", topics=["new_reading"], id="s1")
    assert answer == {"type": "subscribed", "topics": ["new_reading"], "id": "s1"}
    assert _send(market, pusher, "c1", action="ping") == {"type": "pong"}
    assert market.uow().connections.subscribers(["new_reading"]) == {"new_reading": ["c1"]}


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("not json", "not_json"),
        ("\ud800", "not_json"),
        (json.dumps({"action": "dance"}), "unknown_action"),
        (json.dumps({"action": "subscribe", "topics": []}), "bad_topics"),
        (json.dumps({"action": "subscribe", "topics": ["nope"]}), "unknown_topic"),
        (json.dumps({"action": "subscribe", "topics": ["new_reading"], "x": 1}), "unknown_field"),
        ("x" * 5000, "message_too_large"),
    ],
)
def test_a_bad_message_gets_an_error_and_changes_nothing(
    market: MarketHarness, pusher: RecordingPusher, message: str, reason: str
) -> None:
    live.connect(market.deps, "c1", None)
    before = market.uow().connections.topics("c1")
    live.receive(market.deps, pusher, "c1", message)
    answer = pusher.last("c1")
    assert (answer["type"], answer["reason"]) == ("error", reason)
    assert answer["message"]
    assert market.uow().connections.topics("c1") == before


def test_a_private_topic_needs_the_accounts_token(
    market: MarketHarness, pusher: RecordingPusher
) -> None:
    bob = market.funded_account("bob.theblock")
    eve = market.funded_account("eve.theblock")
    live.connect(market.deps, "c1", None)
    refused = _send(market, pusher, "c1", action="subscribe", topics=["account:bob.theblock"])
    assert refused["reason"] == "not_authorised"
    forged = _send(
        market,
        pusher,
        "c1",
        action="subscribe",
        topics=["account:bob.theblock"],
        token=_token(market, eve).replace("eve.theblock", "bob.theblock"),
    )
    assert forged["reason"] == "bad_token"
    expired = _send(
        market,
        pusher,
        "c1",
        action="subscribe",
        topics=["account:bob.theblock"],
        token=_token(market, bob, ahead_ms=-1),
    )
    assert expired["reason"] == "bad_token"
    too_long = _send(
        market,
        pusher,
        "c1",
        action="subscribe",
        topics=["account:bob.theblock"],
        token=_token(market, bob, ahead_ms=2 * 3_600_000),
    )
    assert too_long["reason"] == "bad_token"
    assert market.uow().connections.topics("c1") == []

    granted = _send(
        market,
        pusher,
        "c1",
        action="subscribe",
        topics=["account:bob.theblock"],
        token=_token(market, bob),
    )
    assert granted["type"] == "subscribed"
    # A token for bob opens bob's topic only.
    other = _send(
        market,
        pusher,
        "c1",
        action="subscribe",
        topics=["account:eve.theblock"],
        token=_token(market, bob),
    )
    assert other["reason"] == "not_authorised"


def test_a_token_in_the_connect_query_authorises_its_account(
    market: MarketHarness, pusher: RecordingPusher
) -> None:
    bob = market.funded_account("bob.theblock")
    assert not live.connect(market.deps, "bad", {"token": "bob.theblock.1.00"})
    assert market.uow().connections.get("bad") is None
    assert live.connect(market.deps, "c1", {"token": _token(market, bob)})
    answer = _send(market, pusher, "c1", action="subscribe", topics=["account:bob.theblock"])
    assert answer["type"] == "subscribed"


def test_a_connection_holds_a_bounded_number_of_topics(
    market: MarketHarness, pusher: RecordingPusher
) -> None:
    live.connect(market.deps, "c1", None)
    providers = [f"provider:energy-0x{n:016x}" for n in range(MAX_TOPICS)]
    held = ["new_reading", "market_stats", *providers[: MAX_TOPICS - 2]]
    assert _send(market, pusher, "c1", action="subscribe", topics=held)["type"] == "subscribed"
    # Again is the same: no new topic.
    assert _send(market, pusher, "c1", action="subscribe", topics=held[:3])["type"] == "subscribed"
    answer = _send(market, pusher, "c1", action="subscribe", topics=[providers[-1]])
    assert answer["reason"] == "too_many_topics"
    assert sorted(market.uow().connections.topics("c1")) == sorted(held)


def test_events_reach_subscribers_in_one_frame_and_a_gone_client_is_pruned(
    market: MarketHarness, pusher: RecordingPusher
) -> None:
    for connection, topics in (("c1", ["new_reading"]), ("c2", ["new_reading", "provider_update"])):
        live.connect(market.deps, connection, None)
        _send(market, pusher, connection, action="subscribe", topics=topics)
    found = [
        Event("new_reading", "new_reading", 2, {"provider_id": "p1"}),
        Event("new_reading", "new_reading", 1, {"provider_id": "p2"}),
        Event("provider_update", "provider_update", 3, {"provider_id": "p1"}),
        Event("dispute_opened", "dispute_opened", 4, {"dispute_id": "d"}),
    ]
    run = live.publish(market.deps, pusher, found)
    assert (run.connections, run.pushes, run.gone) == (2, 2, 0)
    first = pusher.last("c1")
    assert first["type"] == "events"
    assert [e["data"]["provider_id"] for e in first["events"]] == ["p2", "p1"]  # by time
    assert [e["topic"] for e in pusher.last("c2")["events"]] == [
        "new_reading",
        "new_reading",
        "provider_update",
    ]

    pusher.gone.add("c1")
    run = live.publish(market.deps, pusher, found[:1])
    assert (run.pushes, run.gone) == (2, 1)
    assert market.uow().connections.get("c1") is None
    assert market.uow().connections.subscribers(["new_reading"]) == {"new_reading": ["c2"]}


def test_disconnect_forgets_the_connection_and_its_subscriptions(
    market: MarketHarness, pusher: RecordingPusher
) -> None:
    live.connect(market.deps, "c1", None)
    _send(market, pusher, "c1", action="subscribe", topics=["new_reading", "dispute_opened"])
    _send(market, pusher, "c1", action="unsubscribe", topics=["dispute_opened"])
    assert market.uow().connections.topics("c1") == ["new_reading"]
    live.disconnect(market.deps, "c1")
    assert market.uow().connections.get("c1") is None
    assert market.uow().connections.subscribers(["new_reading"]) == {"new_reading": []}
    answer = _send(market, pusher, "c1", action="subscribe", topics=["new_reading"])
    assert answer["reason"] == "not_connected"


# -- the events the streams make (moto's real streams) -----------------------------------


def test_the_streams_make_the_documented_events(dynamodb: Any) -> None:
    import os

    from chalicelib.streams.live_events import dispute_events, ledger_events, registry_events
    from infra.emulation import stream_event_source
    from tests.integration.test_carbon import found_guilty, two_jurisdictions
    from tests.support import dynamodb_market, stream_records, tables_from_environment

    tables = tables_from_environment(dict(os.environ))
    market = dynamodb_market(dynamodb, tables)
    _, california, germany = two_jurisdictions(market)
    found_guilty(market, california)

    registry = registry_events(stream_records(dynamodb, tables.registry))
    readings = [e for e in registry if e.topic == "new_reading"]
    assert len(readings) == 1  # one batch: one event, whatever the readings
    summary = readings[0].data
    assert summary["readings"] == sum(p["readings"] for p in summary["providers"]) >= 4
    assert {p["provider_id"] for p in summary["providers"]} == {
        california.provider_id,
        germany.provider_id,
    }
    assert (
        summary["wh_by_type"] == {"solar": summary["wh"]} and summary["providers_not_listed"] == 0
    )
    own = {e.topic for e in registry if e.topic.startswith("provider:")}
    assert own == {f"provider:{california.provider_id}", f"provider:{germany.provider_id}"}
    updates = [e.data for e in registry if e.topic == "provider_update"]
    assert {u["provider_id"] for u in updates} == {california.provider_id, germany.provider_id}

    ledger = ledger_events(stream_records(dynamodb, tables.ledger))
    settled = [e.data for e in ledger if e.topic == "new_settlement"]
    assert len(settled) == 2 and all(s["receipt"]["hash"] for s in settled)
    bob = [e.event for e in ledger if e.topic == "account:bob.theblock"]
    assert bob.count("purchase_opened") == 2 and bob.count("purchase_settled") == 2
    assert "balance" in bob

    # The disputes stream's mapping filters it (infra/template.yaml): what it
    # drops makes no event, and it drops what is not a dispute's own item.
    records = stream_records(dynamodb, tables.disputes)
    admitted = [r for r in records if stream_event_source("publish_dispute_events").admits(r)]
    disputes = dispute_events(admitted)
    assert dispute_events(records) == disputes
    assert len(admitted) < len(records)  # the panel's and flaggers' items, here
    assert [e.event for e in disputes if e.topic.startswith("dispute_")] == [
        "dispute_opened",
        "dispute_resolved",
    ]
    resolved = next(e.data for e in disputes if e.topic == "dispute_resolved")
    assert resolved["status"] in {"guilty", "revoking"} and resolved["severity"] == "major"
    assigned = [e for e in disputes if e.event == "dispute_assigned"]
    assert len(assigned) == 5  # each validator drawn hears of it on its own topic
    flagger = [e.event for e in disputes if e.topic == "account:carol.theblock"]
    assert flagger == ["dispute_opened", "dispute_resolved"]


def test_a_fan_out_finds_each_topics_subscribers_among_shared_partitions(
    market: MarketHarness, pusher: RecordingPusher
) -> None:
    providers = [f"provider:energy-0x{n:016x}" for n in range(40)]
    expected: dict[str, list[str]] = {topic: [] for topic in [*providers, "new_reading"]}
    for n in range(6):
        connection = f"conn-{n}"
        live.connect(market.deps, connection, None)
        mine = providers[n * 5 : n * 5 + 5 + n]  # overlapping, uneven
        topics = [*mine, "new_reading"] if n % 2 else mine
        _send(market, pusher, connection, action="subscribe", topics=topics)
        for topic in topics:
            expected[topic].append(connection)
    found = market.uow().connections.subscribers(list(expected))
    assert {t: sorted(c) for t, c in found.items()} == {t: sorted(c) for t, c in expected.items()}
    nobody = [f"provider:energy-0x{n:016x}" for n in range(100, 140)]
    assert not market.uow().connections.subscribed_any(nobody)
    assert market.uow().connections.subscribed_any([*nobody, providers[7]])
