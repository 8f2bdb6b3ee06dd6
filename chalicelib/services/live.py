"""Live events: WebSocket connections, their subscriptions, and the fan-out of events.

The three WebSocket routes (``$connect``, ``$default``, ``$disconnect``) keep
connections and subscriptions in the connections table; the stream handlers
and the market-stats job call ``publish`` with the events their records
made. Every push goes through the @connections API (``Pusher``); a connection
that answers GoneException is forgotten at once. A connection gets at most
one frame per publish, holding every event of the publish it subscribed to
(``events.frames``), so a batch of a thousand readings is one push per client,
not a thousand. docs/events.md is the protocol.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from chalicelib.adapters.push import Pusher
from chalicelib.domain import events, signing
from chalicelib.domain.errors import AlreadyExists
from chalicelib.domain.events import (
    BadMessage,
    Connection,
    Event,
    Ping,
    Subscribe,
    Token,
    Unsubscribe,
)
from chalicelib.services.dependencies import Dependencies

logger = logging.getLogger(__name__)

# Pushes in flight at once in one publish.
PUSH_WORKERS = 16
# The query-string parameter that carries a token at connect.
TOKEN_PARAMETER = "token"  # noqa: S105  (a parameter's name, not a secret)


def verified_token(deps: Dependencies, text: str) -> Token | None:
    """The token, if its account signed it for this marketplace and it is live."""
    token = events.parse_token(text)
    now = deps.now_ms()
    if token is None or not now < token.expires_ms <= now + events.MAX_TOKEN_LIFETIME_MS:
        return None
    account = deps.unit_of_work().accounts.get(token.account)
    if account is None:
        return None
    message = events.token_message(deps.settings.marketplace_id, token.account, token.expires_ms)
    return token if signing.verify(account.public_key, message, token.signature) else None


def connect(deps: Dependencies, connection_id: str, query: Mapping[str, str] | None) -> bool:
    """Record a new connection; False (refuse it) for a token that does not verify."""
    text = (query or {}).get(TOKEN_PARAMETER)
    token = verified_token(deps, text) if text else None
    if text and token is None:
        return False
    connection = Connection(
        connection_id,
        deps.now_ms(),
        account=token.account if token else None,
        authorised_until_ms=token.expires_ms if token else 0,
    )
    uow = deps.unit_of_work()
    uow.connections.open(connection)
    # API Gateway retried the $connect: it is the same connection.
    with contextlib.suppress(AlreadyExists):
        uow.commit()
    return True


def disconnect(deps: Dependencies, connection_id: str) -> None:
    deps.unit_of_work().connections.close(connection_id)


def receive(deps: Dependencies, pusher: Pusher, connection_id: str, body: str | None) -> None:
    """Handle one client message: answer it on its connection."""
    try:
        message = events.parse(body)
    except BadMessage as bad:
        _answer(deps, pusher, connection_id, events.error(bad.reason, str(bad)))
        return
    if isinstance(message, Ping):
        _answer(deps, pusher, connection_id, events.answer("pong", message.id))
        return
    connection = deps.unit_of_work().connections.get(connection_id)
    if connection is None:
        # Its items expired, or $disconnect came first: the client reconnects.
        reply = events.error("not_connected", "this connection is closed; connect again")
        _answer(deps, pusher, connection_id, reply)
        return
    if isinstance(message, Unsubscribe):
        uow = deps.unit_of_work()
        for topic in message.topics:
            uow.connections.unsubscribe(connection_id, topic)
        uow.commit()
        reply = events.answer("unsubscribed", message.id, topics=list(message.topics))
        _answer(deps, pusher, connection_id, reply)
        return
    _subscribe(deps, pusher, connection, message)


def _subscribe(
    deps: Dependencies, pusher: Pusher, connection: Connection, message: Subscribe
) -> None:
    now = deps.now_ms()
    token = verified_token(deps, message.token) if message.token else None
    if message.token and token is None:
        reply = events.error("bad_token", "the token does not verify or has expired", message.id)
        _answer(deps, pusher, connection.connection_id, reply)
        return
    for topic in message.topics:
        account = events.private_account(topic)
        if account is None or connection.may_read(account, now):
            continue
        if token is None or token.account != account:
            reply = events.error(
                "not_authorised",
                f"{topic} needs a token signed by {account} (docs/events.md)",
                message.id,
            )
            _answer(deps, pusher, connection.connection_id, reply)
            return
    uow = deps.unit_of_work()
    held = set(uow.connections.topics(connection.connection_id))
    if len(held | set(message.topics)) > events.MAX_TOPICS:
        reply = events.error(
            "too_many_topics", f"a connection holds at most {events.MAX_TOPICS} topics", message.id
        )
        _answer(deps, pusher, connection.connection_id, reply)
        return
    for topic in message.topics:
        uow.connections.subscribe(connection, topic)
    uow.commit()
    reply = events.answer("subscribed", message.id, topics=list(message.topics))
    _answer(deps, pusher, connection.connection_id, reply)


def _answer(deps: Dependencies, pusher: Pusher, connection_id: str, data: bytes) -> None:
    if not pusher.post(connection_id, data):
        disconnect(deps, connection_id)


@dataclass
class PublishRun:
    events: int = 0
    topics: int = 0
    connections: int = 0
    pushes: int = 0
    gone: int = 0

    def as_log(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "topics": self.topics,
            "connections": self.connections,
            "pushes": self.pushes,
            "gone": self.gone,
        }


def publish(deps: Dependencies, pusher: Pusher, found: Sequence[Event]) -> PublishRun:
    """Push events to their topics' subscribers: one frame per connection (or a few, if large)."""
    run = PublishRun(events=len(found))
    if not found:
        return run
    uow = deps.unit_of_work()
    per_connection: dict[str, list[Event]] = defaultdict(list)
    grouped = events.by_topic(found)
    run.topics = len(grouped)
    for topic, connection_ids in uow.connections.subscribers(list(grouped)).items():
        for connection_id in connection_ids:
            per_connection[connection_id].extend(grouped[topic])
    run.connections = len(per_connection)

    def push(connection_id: str) -> tuple[int, bool]:
        """Frames sent, and whether the connection turned out to be gone."""
        sent = 0
        for frame in events.frames(sorted(per_connection[connection_id], key=lambda e: e.at_ms)):
            sent += 1
            if not pusher.post(connection_id, frame):
                disconnect(deps, connection_id)
                return sent, True
        return sent, False

    # A push is one HTTPS call of a few milliseconds: a thousand clients one
    # after the other would hold the stream for seconds.
    workers = min(PUSH_WORKERS, len(per_connection)) or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for sent, gone in pool.map(push, list(per_connection)):
            run.pushes += sent
            run.gone += gone
    if run.gone:
        logger.info("pruned connections that were gone", extra={"live": run.as_log()})
    return run
