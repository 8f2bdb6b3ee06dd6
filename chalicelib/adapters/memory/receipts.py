"""Receipt chains in memory."""

from __future__ import annotations

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
from chalicelib.domain.receipts import ChainHead, Receipt
from chalicelib.services.ports import Page


class MemoryReceipts:
    def __init__(self, staged: Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def head(self, chain: str) -> ChainHead | None:
        return self._state.heads.get(chain)

    def get(self, chain: str, sequence: int) -> Receipt | None:
        return self._state.receipts.get((chain, sequence))

    def append(self, receipt: Receipt) -> None:
        def check(s: MemoryState) -> DomainError | None:
            head = s.heads.get(receipt.chain)
            if (head.sequence if head else 0) != receipt.sequence - 1:
                return ConcurrentUpdate("the receipt chain moved on; retry", chain=receipt.chain)
            return None

        def apply(s: MemoryState) -> None:
            s.receipts[(receipt.chain, receipt.sequence)] = receipt
            s.heads[receipt.chain] = ChainHead(
                receipt.chain, receipt.sequence, receipt.receipt_hash
            )

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
