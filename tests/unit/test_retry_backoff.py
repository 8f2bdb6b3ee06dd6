"""A conflicted use case is retried after a short, growing, jittered wait."""

from __future__ import annotations

import pytest

from chalicelib.domain.errors import ConcurrentUpdate, StorageBusy
from chalicelib.services.dependencies import RETRY_BASE_SECONDS, retry_on_conflict


def test_conflicts_are_retried_after_growing_jittered_waits() -> None:
    waits: list[float] = []
    conflicts = [ConcurrentUpdate("raced"), ConcurrentUpdate("raced")]

    def attempt() -> str:
        if conflicts:
            raise conflicts.pop()
        return "done"

    assert retry_on_conflict(attempt, sleep=waits.append) == "done"
    assert len(waits) == 2
    for retry, wait in enumerate(waits):
        assert 0 <= wait <= RETRY_BASE_SECONDS * 2**retry


def test_persistent_conflicts_give_up_after_the_last_attempt() -> None:
    waits: list[float] = []
    calls = []

    def attempt() -> None:
        calls.append(1)
        raise ConcurrentUpdate("raced")

    with pytest.raises(ConcurrentUpdate):
        retry_on_conflict(attempt, attempts=4, sleep=waits.append)
    assert (len(calls), len(waits)) == (4, 3)


def test_throttling_is_not_retried_as_a_conflict() -> None:
    calls = []

    def attempt() -> None:
        calls.append(1)
        raise StorageBusy("throttled")

    with pytest.raises(StorageBusy):
        retry_on_conflict(attempt, sleep=lambda _: None)
    assert len(calls) == 1
