"""What every use case receives (settings, storage, clocks, the receipt key) and the
retry on conflict they share. ``chalicelib.wiring`` builds it for Lambda; tests
build it on either storage adapter (tests/support.py)."""

from __future__ import annotations

import random
import time
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
class Dependencies:
    """A use case's first argument, ``deps``: nothing else reaches outside the process."""

    settings: Settings
    unit_of_work: UnitOfWorkFactory
    clock: Callable[[], int]  # unix seconds
    # The key that signs settlement receipts (loaded lazily, on the first
    # settlement: chalicelib.wiring passes the configured one).
    receipt_key: Callable[[], SigningKey]
    # Unix ms, where the deployment has a finer clock than ``clock`` (mint times).
    clock_ms: Callable[[], int] | None = None

    def now_ms(self) -> int:
        return self.clock_ms() if self.clock_ms is not None else self.clock() * 1000

    def receipt_signing_key(self) -> SigningKey:
        return self.receipt_key()


# Before retry n (0, 1, 2, ...) a conflict waits a random time up to
# RETRY_BASE_SECONDS * 2**n ("full jitter"): 4 ms, then 8, then 16. Racing
# requests that retried at once would meet again; a few milliseconds apart,
# one of them wins.
RETRY_BASE_SECONDS = 0.004


def backoff_delay(retry: int) -> float:
    """Seconds to wait before retry ``retry`` (0-based) of a conflicted use case."""
    return random.uniform(0, RETRY_BASE_SECONDS * 2**retry)  # noqa: S311 (not a secret)


def retry_on_conflict(
    attempt: Callable[[], T],
    attempts: int = 4,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run a read-then-conditional-write use case again when another request
    changed the same records between our read and our write.

    Also the answer to DynamoDB's TransactionConflict, which cancels a
    transaction that raced another on the same item. Safe because a failed
    commit wrote nothing (not even the request's nonce) and every attempt
    reads afresh. Throttling (StorageBusy) is not a conflict and is not
    retried here: botocore has already retried it with its own backoff.
    """
    for retry in range(attempts - 1):
        try:
            return attempt()
        except ConcurrentUpdate:
            sleep(backoff_delay(retry))
    return attempt()
