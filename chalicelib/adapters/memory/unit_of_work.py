"""The in-memory unit of work: checks every staged condition, then applies all, under a lock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from chalicelib.adapters.dynamodb.unit_of_work import MAX_TRANSACTION_WRITES, built_once
from chalicelib.adapters.memory.accounts import MemoryAccounts, MemoryNonces
from chalicelib.adapters.memory.analytics import MemoryAnalytics
from chalicelib.adapters.memory.connections import MemoryConnections
from chalicelib.adapters.memory.credits import MemoryCredits
from chalicelib.adapters.memory.disputes import MemoryDisputes, MemoryValidators
from chalicelib.adapters.memory.jobs import MemoryJobs
from chalicelib.adapters.memory.ledger import MemoryLedger
from chalicelib.adapters.memory.meters import MemoryMeters
from chalicelib.adapters.memory.providers import MemoryProviders
from chalicelib.adapters.memory.purchases import MemoryPurchases
from chalicelib.adapters.memory.receipts import MemoryReceipts
from chalicelib.adapters.memory.state import MemoryState, Staged
from chalicelib.adapters.memory.watch import MemoryWatch
from chalicelib.domain.errors import TransactionTooLarge


class _Watermarks:
    """The jobs' watermarks for the due-work scans: each move is a commit of its own."""

    def __init__(self, state: MemoryState) -> None:
        self._state = state

    def hour(self, job: str) -> int | None:
        return self._state.watermarks.get(job)

    def advance_alone(self, job: str, hour: int) -> None:
        uow = MemoryUnitOfWork(self._state)
        uow.jobs.advance_hour(job, hour)
        uow.commit()


class MemoryUnitOfWork:
    # DynamoDB's limit, mirrored: both adapters refuse the same commits.
    max_writes: Final = MAX_TRANSACTION_WRITES

    def __init__(self, state: MemoryState) -> None:
        self._state = state
        self._staged = Staged(state)

    # Each repository is built on first use: a use case touches two or three of
    # them, and building all fourteen cost more than ingesting a reading.
    @built_once
    def accounts(self) -> MemoryAccounts:
        return MemoryAccounts(self._staged, self._state)

    @built_once
    def nonces(self) -> MemoryNonces:
        return MemoryNonces(self._staged, self._state)

    @built_once
    def ledger(self) -> MemoryLedger:
        return MemoryLedger(self._staged, self._state)

    @built_once
    def providers(self) -> MemoryProviders:
        return MemoryProviders(self._staged, self._state)

    @built_once
    def meters(self) -> MemoryMeters:
        return MemoryMeters(self._staged, self._state)

    @built_once
    def credits(self) -> MemoryCredits:
        return MemoryCredits(self._staged, self._state, _Watermarks(self._state))

    @built_once
    def purchases(self) -> MemoryPurchases:
        return MemoryPurchases(self._staged, self._state, _Watermarks(self._state))

    @built_once
    def receipts(self) -> MemoryReceipts:
        return MemoryReceipts(self._staged, self._state)

    @built_once
    def jobs(self) -> MemoryJobs:
        return MemoryJobs(self._staged, self._state)

    @built_once
    def disputes(self) -> MemoryDisputes:
        return MemoryDisputes(self._staged, self._state, _Watermarks(self._state))

    @built_once
    def validators(self) -> MemoryValidators:
        return MemoryValidators(self._staged, self._state)

    @built_once
    def watch(self) -> MemoryWatch:
        return MemoryWatch(self._staged, self._state)

    @built_once
    def analytics(self) -> MemoryAnalytics:
        return MemoryAnalytics(self._staged, self._state)

    @built_once
    def connections(self) -> MemoryConnections:
        return MemoryConnections(self._staged, self._state)

    def commit(self) -> None:
        writes, self._staged.writes = self._staged.writes, []
        if len(writes) > self.max_writes:
            raise TransactionTooLarge(
                "the request would change more records than one atomic write holds",
                writes=len(writes),
                max_writes=self.max_writes,
            )
        with self._state.lock:
            for check, _ in writes:
                error = check(self._state)
                if error is not None:
                    raise error
            for _, apply in writes:
                apply(self._state)

    def commit_in_order(self) -> None:
        # In memory nothing is lost between two writes: applied whole, as commit.
        self.commit()


def memory_unit_of_work_factory(state: MemoryState) -> Callable[[], MemoryUnitOfWork]:
    return lambda: MemoryUnitOfWork(state)
