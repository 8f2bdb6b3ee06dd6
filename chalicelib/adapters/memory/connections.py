"""Live connections in memory, with the DynamoDB adapter's behaviour (lanes aside)."""

from __future__ import annotations

from collections.abc import Sequence

from chalicelib.adapters.memory.state import MemoryState, Staged
from chalicelib.domain.errors import AlreadyExists
from chalicelib.domain.events import Connection


class MemoryConnections:
    def __init__(self, staged: Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def open(self, connection: Connection) -> None:
        def check(s: MemoryState) -> AlreadyExists | None:
            if connection.connection_id in s.connections:
                return AlreadyExists("this connection is open", connection=connection.connection_id)
            return None

        def apply(s: MemoryState) -> None:
            s.connections[connection.connection_id] = connection

        self._staged.stage(check, apply)

    def get(self, connection_id: str) -> Connection | None:
        return self._state.connections.get(connection_id)

    def topics(self, connection_id: str) -> list[str]:
        return sorted(t for c, t in self._state.subscriptions if c == connection_id)

    def subscribe(self, connection: Connection, topic: str) -> None:
        self._staged.stage(
            lambda s: None,
            lambda s: s.subscriptions.add((connection.connection_id, topic)),
        )

    def unsubscribe(self, connection_id: str, topic: str) -> None:
        self._staged.stage(
            lambda s: None, lambda s: s.subscriptions.discard((connection_id, topic))
        )

    def close(self, connection_id: str) -> int:
        with self._state.lock:
            gone = [(c, t) for c, t in self._state.subscriptions if c == connection_id]
            for pair in gone:
                self._state.subscriptions.discard(pair)
            found = self._state.connections.pop(connection_id, None)
            return len(gone) + (found is not None)

    def subscribers(self, topics: Sequence[str]) -> dict[str, list[str]]:
        return {
            topic: sorted(c for c, t in self._state.subscriptions if t == topic) for topic in topics
        }

    def subscribed_any(self, topics: Sequence[str]) -> bool:
        return any(t in topics for _, t in self._state.subscriptions)
