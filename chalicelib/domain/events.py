"""Live events: the topics a WebSocket client subscribes to, its messages and ours.

docs/events.md is the contract; this module is its only implementation on
the server (the CLI's ``watch`` speaks the same JSON).

Public topics need no key: ``provider_update``, ``new_reading``,
``new_settlement``, ``dispute_opened``, ``dispute_resolved`` and
``market_stats``, and ``provider:<id>`` (one provider's readings and changes). A private topic, ``account:<name>``, carries what concerns
one account (its purchases, settlements, sales and disputes) and needs a
token the account signed with its Ed25519 key: browsers cannot set headers
on a WebSocket, so the token travels in the connect URL's query string or in
the subscribe message.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from chalicelib.domain.accounts import is_valid_account_name
from chalicelib.domain.signing import canonical_json

PUBLIC_TOPICS: Final = (
    "provider_update",
    "new_reading",
    "new_settlement",
    "dispute_opened",
    "dispute_resolved",
    "market_stats",
)
ACCOUNT_PREFIX: Final = "account:"
# One provider's readings and changes: what a provider's page follows.
PROVIDER_PREFIX: Final = "provider:"
_PROVIDER_ID = re.compile(r"^energy-0x[0-9a-f]{16}$")
# The new_reading event lists at most this many providers (the rest are
# counted): a frame stays within one 32 KB WebSocket message however large
# the batch; a page that needs one provider's readings follows its topic.
MAX_PROVIDERS_LISTED: Final = 100
MAX_TOPICS: Final = 16  # per connection: the public ones and a few accounts
MAX_MESSAGE_BYTES: Final = 4_096
# Bytes that prefix a token's signed message (no request or receipt signature
# can be taken for one).
TOKEN_DOMAIN: Final = b"energy-marketplace/events-token/v1\n"
# A token is accepted until it expires, at most this far ahead of our clock:
# a leaked token is worth an hour of one account's events at most.
MAX_TOKEN_LIFETIME_MS: Final = 3_600_000
_TOKEN = re.compile(r"^(.{1,100})\.(\d{13})\.([0-9a-f]{128})$")


class BadMessage(ValueError):
    """A client message this protocol does not know; ``reason`` names why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def is_topic(topic: str) -> bool:
    if topic in PUBLIC_TOPICS:
        return True
    if topic.startswith(PROVIDER_PREFIX):
        return bool(_PROVIDER_ID.fullmatch(topic.removeprefix(PROVIDER_PREFIX)))
    account = topic.removeprefix(ACCOUNT_PREFIX)
    return topic.startswith(ACCOUNT_PREFIX) and is_valid_account_name(account)


def private_account(topic: str) -> str | None:
    """The account a private topic belongs to; None for a public one."""
    return topic.removeprefix(ACCOUNT_PREFIX) if topic.startswith(ACCOUNT_PREFIX) else None


def account_topic(account: str) -> str:
    return f"{ACCOUNT_PREFIX}{account}"


def provider_topic(provider_id: str) -> str:
    return f"{PROVIDER_PREFIX}{provider_id}"


# -- what a client sends ----------------------------------------------------------------


@dataclass(frozen=True)
class Subscribe:
    topics: tuple[str, ...]
    token: str | None = None
    id: str | None = None  # echoed in the answer, to match it


@dataclass(frozen=True)
class Unsubscribe:
    topics: tuple[str, ...]
    id: str | None = None


@dataclass(frozen=True)
class Ping:
    id: str | None = None


ClientMessage = Subscribe | Unsubscribe | Ping


def parse(body: str | bytes | None) -> ClientMessage:
    """A client's message, or BadMessage saying what is wrong with it."""
    try:
        raw = body.encode() if isinstance(body, str) else (body or b"")
    except UnicodeEncodeError:  # a lone surrogate: text no UTF-8 frame can carry
        raise BadMessage("not_json", "a message is one JSON object in UTF-8") from None
    if len(raw) > MAX_MESSAGE_BYTES:
        raise BadMessage("message_too_large", f"a message is at most {MAX_MESSAGE_BYTES} bytes")
    try:
        message = json.loads(raw)
    except ValueError:
        raise BadMessage("not_json", "a message is one JSON object") from None
    if not isinstance(message, dict):
        raise BadMessage("not_json", "a message is one JSON object")
    action = message.get("action")
    ident = message.get("id")
    if ident is not None and (not isinstance(ident, str) or len(ident) > 64):
        raise BadMessage("bad_id", "id is a string of at most 64 characters")
    known = {"action", "id"}
    if action == "ping":
        _only(message, known)
        return Ping(ident)
    if action not in ("subscribe", "unsubscribe"):
        raise BadMessage("unknown_action", 'action is "subscribe", "unsubscribe" or "ping"')
    topics = message.get("topics")
    if (
        not isinstance(topics, list)
        or not topics
        or len(topics) > MAX_TOPICS
        or not all(isinstance(t, str) for t in topics)
    ):
        raise BadMessage("bad_topics", f"topics is a list of 1 to {MAX_TOPICS} topic names")
    unknown = [t for t in topics if not is_topic(t)]
    if unknown:
        raise BadMessage("unknown_topic", f"no such topic: {unknown[0][:80]}")
    ordered = tuple(dict.fromkeys(topics))
    if action == "unsubscribe":
        _only(message, known | {"topics"})
        return Unsubscribe(ordered, ident)
    _only(message, known | {"topics", "token"})
    token = message.get("token")
    if token is not None and not isinstance(token, str):
        raise BadMessage("bad_token", "token is a string (docs/events.md)")
    return Subscribe(ordered, token, ident)


def _only(message: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(message) - allowed)
    if extra:
        raise BadMessage("unknown_field", f"unknown field: {extra[0][:40]}")


# -- tokens -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    account: str
    expires_ms: int
    signature: str

    def text(self) -> str:
        return f"{self.account}.{self.expires_ms}.{self.signature}"


def token_message(marketplace_id: str, account: str, expires_ms: int) -> bytes:
    """The bytes an account signs to read its private topic until ``expires_ms``."""
    body = {"account": account, "expires_ms": expires_ms, "marketplace": marketplace_id}
    return TOKEN_DOMAIN + canonical_json(body)


def parse_token(text: str) -> Token | None:
    found = _TOKEN.fullmatch(text)
    if found is None or not is_valid_account_name(found[1]):
        return None
    return Token(found[1], int(found[2]), found[3])


# -- what we send -------------------------------------------------------------------------


def encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), sort_keys=True).encode()


def answer(kind: str, ident: str | None, **fields: Any) -> bytes:
    """An answer to a client's message: ``subscribed``, ``unsubscribed``, ``pong``, ``error``."""
    body: dict[str, Any] = {"type": kind, **fields}
    if ident is not None:
        body["id"] = ident
    return encode(body)


def error(reason: str, message: str, ident: str | None = None) -> bytes:
    return answer("error", ident, reason=reason, message=message)


@dataclass(frozen=True)
class Event:
    """One push: a topic, what happened, when, and its data (JSON-ready)."""

    topic: str
    event: str
    at_ms: int
    data: Mapping[str, Any]

    def body(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "event": self.event,
            "at_ms": self.at_ms,
            "data": dict(self.data),
        }


def by_topic(events: Sequence[Event]) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = {}
    for event in events:
        grouped.setdefault(event.topic, []).append(event)
    return grouped


# -- connections ---------------------------------------------------------------------------

# API Gateway closes a WebSocket connection after 2 hours: nothing of it is
# kept longer (its items expire then, whether or not $disconnect came).
CONNECTION_LIFETIME_MS: Final = 2 * 3_600_000
# A public topic's subscribers are spread over this many index partitions (by
# connection), so that no one partition holds every client of the market.
PUBLIC_TOPIC_LANES: Final = 8
# A scoped topic (one provider's, one account's) has few subscribers, and a
# batch concerns hundreds of them: scoped subscriptions share this many
# partitions (by topic), and a fan-out reads each partition its topics fall
# in once, rather than one per topic.
SCOPED_TOPIC_LANES: Final = 64
# A frame API Gateway carries whole (its limit is 32 KB per frame).
MAX_FRAME_BYTES: Final = 32_000


@dataclass(frozen=True)
class Connection:
    connection_id: str
    connected_at_ms: int
    # The account a valid token named at connect, and until when it may
    # subscribe to that account's topic without another token.
    account: str | None = None
    authorised_until_ms: int = 0

    @property
    def expires_at_ms(self) -> int:
        return self.connected_at_ms + CONNECTION_LIFETIME_MS

    def may_read(self, account: str, now_ms: int) -> bool:
        return self.account == account and now_ms <= self.authorised_until_ms


def lane_of(topic: str, connection_id: str) -> str:
    """The index partition a subscription is listed in."""
    if topic in PUBLIC_TOPICS:
        return f"{topic}#{zlib.crc32(connection_id.encode()) % PUBLIC_TOPIC_LANES}"
    return scoped_lane(topic)


def scoped_lane(topic: str) -> str:
    prefix = PROVIDER_PREFIX if topic.startswith(PROVIDER_PREFIX) else ACCOUNT_PREFIX
    return f"{prefix}#{zlib.crc32(topic.encode()) % SCOPED_TOPIC_LANES}"


def lanes_of(topics: Sequence[str]) -> dict[str, set[str]]:
    """The partitions to read for ``topics``, each with the topics it may list."""
    found: dict[str, set[str]] = {}
    for topic in topics:
        if topic in PUBLIC_TOPICS:
            for lane in range(PUBLIC_TOPIC_LANES):
                found.setdefault(f"{topic}#{lane}", set()).add(topic)
        else:
            found.setdefault(scoped_lane(topic), set()).add(topic)
    return found


def frames(events: Sequence[Event]) -> list[bytes]:
    """A connection's events in as few frames as fit: ``{"type": "events", "events": [...]}``."""
    found: list[bytes] = []
    batch: list[dict[str, Any]] = []
    size = 0
    for event in events:
        body = event.body()
        length = len(encode(body)) + 1
        if batch and size + length > MAX_FRAME_BYTES:
            found.append(encode({"type": "events", "events": batch}))
            batch, size = [], 0
        batch.append(body)
        size += length
    if batch:
        found.append(encode({"type": "events", "events": batch}))
    return found
