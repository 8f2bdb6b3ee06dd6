"""Scheduled jobs' watermarks in memory (in hours, as DynamoDB keeps them)."""

from __future__ import annotations

from chalicelib.adapters.dynamodb.layout import (
    HOUR_MS,
)
from chalicelib.adapters.memory.state import MemoryState, Staged
from chalicelib.domain.errors import (
    ConcurrentUpdate,
)


class MemoryJobs:
    def __init__(self, staged: Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def caught_up_to(self, job: str) -> int | None:
        hour = self._state.watermarks.get(job)
        return hour * HOUR_MS if hour is not None else None

    def advance(self, job: str, to_ms: int) -> None:
        self.advance_hour(job, to_ms // HOUR_MS)

    def advance_hour(self, job: str, hour: int) -> None:
        self._staged.stage(
            lambda s: (
                ConcurrentUpdate("another run moved the watermark", job=job)
                if s.watermarks.get(job, -1) >= hour
                else None
            ),
            lambda s: s.watermarks.__setitem__(job, hour),
        )
