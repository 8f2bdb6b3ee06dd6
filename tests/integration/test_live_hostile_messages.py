"""Whatever a WebSocket client sends, it gets one answer and nothing else changes.

Anyone can open a connection to the live events API. Hypothesis sends the
``$default`` route any text, and messages made of the protocol's own fields
and strangers holding any JSON (lone surrogates, numbers beyond 64 bits,
nesting), and the ``$connect`` route any token. Each message is answered with
exactly one frame of the documented kinds (docs/events.md), never an
exception; a refused message leaves the connection's topics as they were,
and a refused connect stores nothing. On both storage adapters.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chalicelib.services import live
from energy_client.rpc_client import events_token
from tests.hostile import JSON_VALUES, any_text, mostly
from tests.integration.test_live import RecordingPusher
from tests.support import MARKETPLACE_ID, MarketHarness

SHARED_MARKET = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ANSWER_KINDS = {"error", "subscribed", "unsubscribed", "pong"}
CONNECTION = "hostile-1"


@pytest.fixture
def connected(market: MarketHarness) -> tuple[MarketHarness, str]:
    """A connection subscribed to one topic, and a live token of a real account."""
    bob = market.funded_account("bob.theblock")
    assert live.connect(market.deps, CONNECTION, None)
    pusher = RecordingPusher()
    live.receive(market.deps, pusher, CONNECTION, '{"action":"subscribe","topics":["new_reading"]}')
    assert pusher.last(CONNECTION)["type"] == "subscribed"
    return market, events_token(bob, MARKETPLACE_ID, market.deps.now_ms() + 600_000)


def messages(token: str) -> st.SearchStrategy[str]:
    """The protocol's own fields, mostly plausible, with a stranger one time in
    four; one message in five any text at all."""
    topic = st.sampled_from(
        [
            "new_reading",
            "market_stats",
            "account:bob.theblock",
            "provider:energy-0x0000000000000000",
        ]
    )
    known = st.fixed_dictionaries(
        {
            "action": mostly(st.sampled_from(["subscribe", "unsubscribe", "ping"])),
            "topics": mostly(st.lists(mostly(topic, any_text()), min_size=1, max_size=4), odds=7),
        },
        optional={
            "token": mostly(st.sampled_from([token, token[:-1] + "0", "bob.theblock.1.00"])),
            "id": mostly(any_text(max_size=66)),
        },
    )
    strangers = st.dictionaries(any_text(max_size=8), JSON_VALUES, max_size=1)
    objects = st.tuples(known, mostly(st.just({}), strangers)).map(
        lambda both: json.dumps({**both[1], **both[0]})
    )
    return mostly(objects, any_text(max_size=60), odds=4)


def queries(token: str) -> st.SearchStrategy[dict[str, str]]:
    """A connect's query string: mostly a token, live, tampered or any text."""
    token_value = st.sampled_from([token, token[:-1] + "0", ""]) | any_text(max_size=90)
    strangers = st.dictionaries(any_text(max_size=6), any_text(max_size=20))
    with_token = st.tuples(strangers, token_value).map(
        lambda both: {**both[0], live.TOKEN_PARAMETER: both[1]}
    )
    return mostly(with_token, strangers)


@SHARED_MARKET
@given(data=st.data())
def test_any_message_gets_one_documented_answer_and_a_refused_one_changes_nothing(
    connected: tuple[MarketHarness, str], data: st.DataObject
) -> None:
    market, token = connected
    body = data.draw(messages(token), label="body")
    pusher = RecordingPusher()
    before = market.uow().connections.topics(CONNECTION)
    live.receive(market.deps, pusher, CONNECTION, body)
    (answer,) = pusher.frames[CONNECTION]
    assert answer["type"] in ANSWER_KINDS, answer
    event(answer.get("reason", answer["type"]))
    if answer["type"] == "error":
        assert isinstance(answer["reason"], str) and answer["message"], answer
        assert market.uow().connections.topics(CONNECTION) == before


@SHARED_MARKET
@given(data=st.data())
def test_any_connect_query_is_accepted_or_refused_and_a_refusal_stores_nothing(
    connected: tuple[MarketHarness, str], data: st.DataObject
) -> None:
    market, token = connected
    query = data.draw(queries(token), label="query")
    before = market.snapshot()
    accepted = live.connect(market.deps, "hostile-2", query)
    event("accepted" if accepted else "refused")
    if not accepted:
        assert market.snapshot() == before
    live.disconnect(market.deps, "hostile-2")
