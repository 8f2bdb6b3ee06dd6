"""The dependencies every use case receives: settings, storage and the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from chalicelib.config import Settings
from chalicelib.domain.errors import ConcurrentUpdate
from chalicelib.services.ports import UnitOfWorkFactory

if TYPE_CHECKING:
    from nacl.signing import SigningKey

T = TypeVar("T")


@dataclass(frozen=True)
class Market:
    settings: Settings
    unit_of_work: UnitOfWorkFactory
    clock: Callable[[], int]  # unix seconds
    # The key that signs settlement receipts; None: the one configured in
    # settings (RECEIPT_SIGNING_KEY or the SSM parameter it names).
    receipt_key: Callable[[], SigningKey] | None = None
    # Unix ms, where the deployment has a finer clock than ``clock`` (mint times).
    clock_ms: Callable[[], int] | None = None

    def now_ms(self) -> int:
        return self.clock_ms() if self.clock_ms is not None else self.clock() * 1000

    def receipt_signing_key(self) -> SigningKey:
        if self.receipt_key is not None:
            return self.receipt_key()
        from chalicelib.adapters.receipt_key import receipt_signing_key

        return receipt_signing_key(self.settings)


def retry_on_conflict(attempt: Callable[[], T], attempts: int = 4) -> T:
    """Run a read-then-conditional-write use case again when another request
    changed the same records between our read and our write.

    Also the answer to DynamoDB's TransactionConflict, which cancels a
    transaction that raced another on the same item. Safe because a failed
    commit wrote nothing (not even the request's nonce) and every attempt
    reads afresh.
    """
    for _ in range(attempts - 1):
        try:
            return attempt()
        except ConcurrentUpdate:
            continue
    return attempt()
