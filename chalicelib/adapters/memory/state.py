"""The in-memory store, its lock, and staged writes: what every repository shares."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from chalicelib.adapters.dynamodb.layout import encode_cursor
from chalicelib.domain.accounts import Account
from chalicelib.domain.analytics import Aggregate, AggregateKey, SellerIndex
from chalicelib.domain.credits import Credit
from chalicelib.domain.disputes import Dispute, Validator
from chalicelib.domain.errors import DomainError
from chalicelib.domain.events import Connection
from chalicelib.domain.fraud import DayCurve, PeerHistogram, WatchState
from chalicelib.domain.ledger import EntryKind, LedgerEntry
from chalicelib.domain.providers import Provider
from chalicelib.domain.readings import MeterState, RejectionRecord
from chalicelib.domain.receipts import ChainHead, Receipt, SlashReceipt
from chalicelib.domain.trading import Purchase
from chalicelib.services.ports import Page, UsedNonce


@dataclass
class MemoryState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    accounts: dict[str, Account] = field(default_factory=dict)
    nonces: dict[tuple[str, str], int] = field(default_factory=dict)
    nonce_requests: dict[tuple[str, str], UsedNonce] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)
    treasury: dict[int, int] = field(default_factory=dict)
    entries: dict[tuple[EntryKind, str], LedgerEntry] = field(default_factory=dict)
    providers: dict[str, Provider] = field(default_factory=dict)
    meters: dict[str, MeterState] = field(default_factory=dict)
    rejections: dict[tuple[str, str], RejectionRecord] = field(default_factory=dict)
    credits: dict[str, Credit] = field(default_factory=dict)
    purchases: dict[str, Purchase] = field(default_factory=dict)
    bought: dict[str, dict[str, int]] = field(default_factory=dict)  # account -> type -> Wh
    # account -> (type, jurisdiction) -> Wh: the DynamoDB item's origin counters
    bought_from: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    receipts: dict[tuple[str, int], Receipt] = field(default_factory=dict)
    heads: dict[str, ChainHead] = field(default_factory=dict)
    slash_receipts: dict[tuple[str, int], SlashReceipt] = field(default_factory=dict)
    watermarks: dict[str, int] = field(default_factory=dict)
    disputes: dict[str, Dispute] = field(default_factory=dict)
    validators: dict[str, Validator] = field(default_factory=dict)
    # The fraud detectors': meter -> (state, version); peer cell hours; replay keys.
    watch_states: dict[str, tuple[WatchState, int]] = field(default_factory=dict)
    peer_cells: dict[str, PeerHistogram] = field(default_factory=dict)
    replay_index: dict[str, tuple[tuple[DayCurve, ...], int]] = field(default_factory=dict)
    # Live WebSocket connections, and their subscriptions as (connection, topic).
    connections: dict[str, Connection] = field(default_factory=dict)
    subscriptions: set[tuple[str, str]] = field(default_factory=set)
    # The analytics: each aggregate with the leaderboard index it was stored with.
    aggregates: dict[AggregateKey, tuple[Aggregate, SellerIndex | None]] = field(
        default_factory=dict
    )


T = TypeVar("T")

# A staged write: a condition that returns the error to raise (or None), and
# the change to apply once every condition of the commit holds.
Check = Callable[[MemoryState], DomainError | None]
Apply = Callable[[MemoryState], None]


class Staged:
    def __init__(self, state: MemoryState) -> None:
        self._state = state
        self.writes: list[tuple[Check, Apply]] = []

    def stage(self, check: Check, apply: Apply) -> None:
        self.writes.append((check, apply))


def page_of(
    keyed: Iterable[tuple[str, T]],
    cursor_key: str | None,
    limit: int,
    *,
    newest_first: bool = False,
) -> Page[T]:
    """One page of ``(sort key, item)`` pairs after the cursor's key, the way a
    DynamoDB Query pages: by sort key, ascending or (newest first) descending."""
    ordered = sorted(keyed, key=lambda pair: pair[0], reverse=newest_first)
    if cursor_key is not None:
        ordered = [
            (k, item) for k, item in ordered if (k < cursor_key if newest_first else k > cursor_key)
        ]
    page = ordered[:limit]
    more = len(ordered) > limit
    return Page([item for _, item in page], encode_cursor(page[-1][0]) if more else None)
