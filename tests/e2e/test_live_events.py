"""Live events end to end: the local stack's WebSocket gateway, the app's routes and
stream handlers, and a real WebSocket client, while meters read over MQTT."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from energy_client.rpc_client import MarketplaceClient, Signer, events_token
from infra.local_stack import DemoOptions, LocalStack, free_port

pytestmark = pytest.mark.e2e

BLOCK = 1_000_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    state = tmp_path_factory.mktemp("live")
    demo = DemoOptions(
        meters=3, buyers=1, interval_seconds=2, buyer_pause_seconds=3, faulty_every_seconds=0
    )
    with (
        (state / "stack.log").open("wb") as output,
        LocalStack(
            moto_port=0,
            api_port=free_port(),
            mqtt_port=0,
            state_dir=state / "state",
            chalice_output=output,
            stack_name="energy-marketplace-e2e-live",
            jobs_interval=2,
            demo=demo,
            settings={"DISPUTE_WINDOW_MS": "0"},
        ) as running,
    ):
        yield running


def _events(socket: ClientConnection, wanted: set[str], timeout: float) -> dict[str, Any]:
    """Frames until an event of each wanted (topic, event) arrived; the first of each."""
    found: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while set(found) < wanted and time.monotonic() < deadline:
        try:
            frame = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        except TimeoutError:
            break
        for event in frame.get("events", []):
            found.setdefault(f"{event['topic']}/{event['event']}", event)
    missing = wanted - set(found)
    assert not missing, (missing, sorted(found))
    return found


def _subscribe(socket: ClientConnection, topics: list[str], **extra: Any) -> dict[str, Any]:
    socket.send(json.dumps({"action": "subscribe", "topics": topics, "id": "s", **extra}))
    while True:
        answer: dict[str, Any] = json.loads(socket.recv(timeout=10))
        if answer.get("type") != "events":
            return answer


def test_public_events_arrive_as_the_market_moves(stack: LocalStack) -> None:
    api = MarketplaceClient.over_http(stack.rpc_url)
    deadline = time.monotonic() + 60
    providers: list[dict[str, Any]] = []
    while not providers and time.monotonic() < deadline:
        providers = api.call("energy.listProviders", {})["providers"]
        time.sleep(0.5)
    own = f"provider:{providers[0]['provider_id']}"
    topics = ["new_reading", "new_settlement", own]
    with connect(stack.websocket_url) as socket:
        answer = _subscribe(socket, topics)
        assert answer == {"type": "subscribed", "id": "s", "topics": topics}
        found = _events(
            socket,
            {
                "new_reading/new_reading",
                "new_settlement/new_settlement",
                f"{own}/new_reading",
                f"{own}/provider_update",
            },
            timeout=90,
        )
    readings = found["new_reading/new_reading"]["data"]
    assert readings["readings"] >= 1 and readings["providers"]
    assert found["new_settlement/new_settlement"]["data"]["receipt"]["hash"]
    card = found[f"{own}/provider_update"]["data"]
    assert card["provider_id"] == providers[0]["provider_id"] and "on_sale_wh" in card


def test_a_private_topic_needs_a_valid_token_and_then_carries_the_accounts_events(
    stack: LocalStack,
) -> None:
    api = MarketplaceClient.over_http(stack.rpc_url)
    assert stack.operator_key is not None
    operator = Signer("operator", stack.operator_key)
    marketplace = api.call("energy.getMarketInfo", {})["marketplace_id"]
    api.marketplace_id = marketplace
    alice = Signer.generate("alice.e2e")
    api.create_account(alice)
    soon = int(time.time() * 1000) + 600_000

    with connect(stack.websocket_url) as socket:
        refused = _subscribe(socket, ["account:alice.e2e"])
        assert refused["reason"] == "not_authorised"
        forged = _subscribe(
            socket,
            ["account:alice.e2e"],
            token=events_token(Signer.generate("alice.e2e"), marketplace, soon),
        )
        assert forged["reason"] == "bad_token"
    with (
        pytest.raises(InvalidStatus) as refused_connect,
        connect(f"{stack.websocket_url}?token=alice.e2e.{soon}.{'0' * 128}"),
    ):
        pass
    assert refused_connect.value.response.status_code == 403

    token = events_token(alice, marketplace, soon)
    with connect(f"{stack.websocket_url}?token={token}") as socket:
        assert _subscribe(socket, ["account:alice.e2e"])["type"] == "subscribed"
        api.deposit(operator, "alice.e2e", 5 * BLOCK, "0xdeposit-alice-e2e")
        balances = _balances(socket, "alice.e2e", until=5 * BLOCK, timeout=30)
    # The account's creation (balance 0) may come first: its stream record can
    # be handed over after the subscription when the stream poller is busy.
    assert balances in ([5 * BLOCK], [0, 5 * BLOCK])


def _balances(socket: ClientConnection, account: str, until: int, timeout: float) -> list[int]:
    """The account's balance events, until one shows ``until``."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while until not in seen and time.monotonic() < deadline:
        try:
            frame = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        except TimeoutError:
            break
        for event in frame.get("events", []):
            if (event["topic"], event["event"]) == (f"account:{account}", "balance"):
                assert event["data"]["account"] == account
                seen.append(event["data"]["balance"])
    return seen


def _connections(stack: LocalStack) -> int:
    """Connection items the app keeps (a test may scan; the product never does)."""
    dynamodb = stack.aws_client("dynamodb")
    table = stack.table_names["CONNECTIONS_TABLE"]
    return sum(
        1
        for page in dynamodb.get_paginator("scan").paginate(TableName=table)
        for item in page["Items"]
        if item["sk"]["S"] == "CONN"
    )


def test_a_client_that_vanished_is_pruned_and_a_gateway_restart_is_survived(
    stack: LocalStack,
) -> None:
    with connect(stack.websocket_url) as vanished:
        assert _subscribe(vanished, ["market_stats"])["type"] == "subscribed"
        # The gateway crashes: no $disconnect reaches the app, whose record of
        # the connection stays until a push to it answers 410 GoneException.
        stack.restart_ws_gateway(crash=True)

    # A client that reconnects and subscribes again is served by the new gateway.
    with connect(stack.websocket_url) as socket:
        assert _subscribe(socket, ["new_reading", "market_stats"])["type"] == "subscribed"
        found = _events(
            socket, {"new_reading/new_reading", "market_stats/market_stats"}, timeout=90
        )
        stats = found["market_stats/market_stats"]["data"]
        assert stats["providers"]["registered"] >= 3 and stats["as_of_ms"] > 0
        # The market_stats push found the vanished connection gone and forgot it.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _connections(stack) != 1:
            time.sleep(1)
        assert _connections(stack) == 1
    # A clean close is a $disconnect: nothing is left.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _connections(stack):
        time.sleep(0.5)
    assert _connections(stack) == 0
