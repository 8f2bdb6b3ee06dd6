"""The fraud detectors' state in memory, with the DynamoDB adapter's conditions."""

from __future__ import annotations

from collections.abc import Sequence

from chalicelib.adapters.memory.state import MemoryState, Staged
from chalicelib.domain.errors import ConcurrentUpdate
from chalicelib.domain.fraud import DayCurve, PeerHistogram, WatchState


class MemoryWatch:
    def __init__(self, staged: Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def state(self, meter_address: str) -> tuple[WatchState, int]:
        return self._state.watch_states.get(meter_address, (WatchState(), 0))

    def save_state(self, meter_address: str, state: WatchState, expected_version: int) -> None:
        def check(s: MemoryState) -> ConcurrentUpdate | None:
            _, version = s.watch_states.get(meter_address, (None, 0))
            if version != expected_version:
                return ConcurrentUpdate("the meter's watch moved on; retry", meter=meter_address)
            return None

        def apply(s: MemoryState) -> None:
            s.watch_states[meter_address] = (state, expected_version + 1)

        self._staged.stage(check, apply)

    def peers(self, key: str) -> PeerHistogram | None:
        return self._state.peer_cells.get(key)

    def add_to_peers(self, key: str, capacity_factor_bps: int) -> None:
        def apply(s: MemoryState) -> None:
            s.peer_cells[key] = s.peer_cells.get(key, PeerHistogram()).adding(capacity_factor_bps)

        self._staged.stage(lambda s: None, apply)

    def curves(self, key: str) -> tuple[tuple[DayCurve, ...], int]:
        return self._state.replay_index.get(key, ((), 0))

    def save_curves(self, key: str, curves: Sequence[DayCurve], expected_version: int) -> None:
        def check(s: MemoryState) -> ConcurrentUpdate | None:
            _, version = s.replay_index.get(key, ((), 0))
            if version != expected_version:
                return ConcurrentUpdate("the replay index changed; retry", key=key)
            return None

        def apply(s: MemoryState) -> None:
            s.replay_index[key] = (tuple(curves), expected_version + 1)

        self._staged.stage(check, apply)
