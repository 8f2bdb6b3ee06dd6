"""Receipt chains in memory."""

from __future__ import annotations

from collections.abc import Callable

from chalicelib.adapters.dynamodb.layout import (
    decode_issued_cursor,
    decode_receipt_cursor,
    issued_key,
    receipt_sort_key,
)
from chalicelib.adapters.memory.state import MemoryState, Staged, page_of
from chalicelib.domain.errors import (
    ConcurrentUpdate,
    DomainError,
)
from chalicelib.domain.receipts import ChainHead, Receipt, SlashReceipt
from chalicelib.services.ports import Page


class MemoryReceipts:
    def __init__(self, staged: Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def head(self, chain: str) -> ChainHead | None:
        return self._state.heads.get(chain)

    def get(self, chain: str, sequence: int) -> Receipt | None:
        return self._state.receipts.get((chain, sequence))

    def append(self, receipt: Receipt) -> None:
        def apply(s: MemoryState) -> None:
            s.receipts[(receipt.chain, receipt.sequence)] = receipt

        self._append(ChainHead(receipt.chain, receipt.sequence, receipt.receipt_hash), apply)

    def append_slash(self, receipt: SlashReceipt) -> None:
        def apply(s: MemoryState) -> None:
            s.slash_receipts[(receipt.chain, receipt.sequence)] = receipt

        self._append(ChainHead(receipt.chain, receipt.sequence, receipt.receipt_hash), apply)

    def slash_receipt(self, chain: str, sequence: int) -> SlashReceipt | None:
        return self._state.slash_receipts.get((chain, sequence))

    def slash_receipts(self, chain: str, limit: int, cursor: str | None) -> Page[SlashReceipt]:
        keyed = (
            (receipt_sort_key(n), r)
            for (c, n), r in self._state.slash_receipts.items()
            if c == chain
        )
        return page_of(keyed, decode_receipt_cursor(cursor) if cursor else None, limit)

    def _append(self, head: ChainHead, store: Callable[[MemoryState], None]) -> None:
        def check(s: MemoryState) -> DomainError | None:
            now = s.heads.get(head.chain)
            if (now.sequence if now else 0) != head.sequence - 1:
                return ConcurrentUpdate("the receipt chain moved on; retry", chain=head.chain)
            return None

        def apply(s: MemoryState) -> None:
            store(s)
            s.heads[head.chain] = head

        self._staged.stage(check, apply)

    def by_chain(self, chain: str, limit: int, cursor: str | None) -> Page[Receipt]:
        keyed = (
            (receipt_sort_key(n), r) for (c, n), r in self._state.receipts.items() if c == chain
        )
        return page_of(keyed, decode_receipt_cursor(cursor) if cursor else None, limit)

    def by_buyer(self, buyer: str, limit: int, cursor: str | None) -> Page[Receipt]:
        keyed = ((issued_key(r), r) for r in self._state.receipts.values() if r.buyer == buyer)
        return page_of(
            keyed, decode_issued_cursor(cursor) if cursor else None, limit, newest_first=True
        )
