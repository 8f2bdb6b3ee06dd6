"""The ledger in memory: balances, entries, the treasury, what accounts bought."""

from __future__ import annotations

from chalicelib.adapters.dynamodb.layout import (
    decode_entry_cursor,
    entry_key,
)
from chalicelib.adapters.memory.state import MemoryState, Staged, page_of
from chalicelib.domain.carbon import Bought
from chalicelib.domain.errors import (
    AlreadyExists,
    InsufficientBalance,
    NotFound,
)
from chalicelib.domain.ledger import LedgerEntry
from chalicelib.services.ports import Page


class MemoryLedger:
    def __init__(self, staged: Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def balance(self, account: str) -> int:
        return self._state.balances.get(account, 0)

    def treasury(self) -> int:
        return sum(self._state.treasury.values())

    def entries(self, account: str, limit: int, cursor: str | None) -> Page[LedgerEntry]:
        keyed = (
            (entry_key(e.at, e.kind, e.entry_id), e)
            for e in self._state.entries.values()
            if e.account == account
        )
        return page_of(keyed, decode_entry_cursor(cursor) if cursor else None, limit)

    def open_account(self, account: str) -> None:
        self._staged.stage(
            lambda s: (
                AlreadyExists("account already exists", account=account)
                if account in s.balances
                else None
            ),
            lambda s: s.balances.__setitem__(account, 0),
        )

    def credit(self, account: str, micro_block: int) -> None:
        self._staged.stage(
            lambda s: (
                None if account in s.balances else NotFound("no such account", account=account)
            ),
            lambda s: s.balances.__setitem__(account, s.balances[account] + micro_block),
        )

    def debit(self, account: str, micro_block: int, *, bought_at_ms: int | None = None) -> None:
        # The purchase time stamped on the balance only feeds the stream's
        # analytics, which the in-memory store has no stream for.
        self._staged.stage(
            lambda s: (
                None
                if s.balances.get(account, -1) >= micro_block
                else InsufficientBalance("the balance does not cover this", account=account)
            ),
            lambda s: s.balances.__setitem__(account, s.balances[account] - micro_block),
        )

    def record(self, entry: LedgerEntry) -> None:
        key = (entry.kind, entry.entry_id)
        self._staged.stage(
            lambda s: (
                AlreadyExists(f"this {entry.kind} was already recorded", entry_id=entry.entry_id)
                if key in s.entries
                else None
            ),
            lambda s: s.entries.__setitem__(key, entry),
        )

    def credit_treasury(self, shard: int, micro_block: int) -> None:
        self._staged.stage(
            lambda s: None,
            lambda s: s.treasury.__setitem__(shard, s.treasury.get(shard, 0) + micro_block),
        )

    def bought(self, account: str) -> Bought:
        return Bought(
            dict(self._state.bought.get(account, {})),
            dict(self._state.bought_from.get(account, {})),
        )

    def record_bought(
        self,
        account: str,
        energy_type: str,
        jurisdiction: str,
        wh: int,
        *,
        at_ms: int | None = None,
    ) -> None:
        def apply(s: MemoryState) -> None:
            by_type = s.bought.setdefault(account, {})
            by_type[energy_type] = by_type.get(energy_type, 0) + wh
            by_origin = s.bought_from.setdefault(account, {})
            origin = (energy_type, jurisdiction)
            by_origin[origin] = by_origin.get(origin, 0) + wh

        self._staged.stage(lambda s: None, apply)
