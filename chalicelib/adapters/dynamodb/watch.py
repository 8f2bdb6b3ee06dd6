"""The fraud detectors' state: one item per meter, per peer cell and hour, per replay key.

All in the disputes table (the detectors feed it). A meter's state is
written with a version condition: two stream batches racing on one meter
retry rather than lose a reading. A peer histogram is a set of counters
updated with ADD, which commutes, so the meters of a cell never conflict.
Peer and replay items expire (TTL): nothing reads an hour's peers after a
few days, or a day curve after two months.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from chalicelib.adapters.dynamodb.codec import as_int, from_item, to_item
from chalicelib.adapters.dynamodb.layout import Tables, peers_key, replay_key, watch_key
from chalicelib.domain.errors import ConcurrentUpdate
from chalicelib.domain.fraud import (
    HOUR_MS,
    REPLAY_MEMORY_DAYS,
    DayCurve,
    PeerHistogram,
    WatchState,
    peer_bin,
)

if TYPE_CHECKING:
    from chalicelib.adapters.dynamodb.unit_of_work import Staged

# A peer hour is reviewed an hour after it closes; three days cover any
# redelivery or a stream that fell behind.
PEERS_RETENTION_SECONDS: Final = 3 * 86_400
DAY_SECONDS: Final = 86_400


class DynamoWatch:
    def __init__(self, client: Any, tables: Tables, staged: Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        found = self._client.get_item(
            TableName=self._tables.disputes,
            Key=key,
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        return from_item(found["Item"]) if "Item" in found else None

    def state(self, meter_address: str) -> tuple[WatchState, int]:
        found = self._get(watch_key(meter_address))
        if found is None:
            return WatchState(), 0
        # Kept as JSON text: a list of integers in a string costs less than a
        # DynamoDB list of numbers, and the state is read and written whole.
        return WatchState.from_dict(json.loads(found["state"])), as_int(found["version"])

    def save_state(self, meter_address: str, state: WatchState, expected_version: int) -> None:
        self._staged.put(
            self._tables.disputes,
            watch_key(meter_address)
            | to_item(
                {
                    "state": json.dumps(state.to_dict(), separators=(",", ":")),
                    "version": expected_version + 1,
                }
            ),
            "attribute_not_exists(pk)" if expected_version == 0 else "version = :version",
            lambda: ConcurrentUpdate("the meter's watch moved on; retry", meter=meter_address),
            **(
                {"ExpressionAttributeValues": to_item({":version": expected_version})}
                if expected_version
                else {}
            ),
        )

    def peers(self, key: str) -> PeerHistogram | None:
        found = self._get(peers_key(key))
        if found is None:
            return None
        bins = {name[1:]: count for name, count in found.items() if name.startswith("b")}
        return PeerHistogram.from_dict(bins)

    def add_to_peers(self, key: str, capacity_factor_bps: int) -> None:
        hour = int(key.rsplit("#", 1)[1])
        expires_at = hour * HOUR_MS // 1000 + PEERS_RETENTION_SECONDS
        self._staged.update(
            self._tables.disputes,
            peers_key(key),
            "ADD #bin :one SET expires_at = :expires",
            None,
            lambda: ConcurrentUpdate("the peer cell changed; retry"),
            ExpressionAttributeNames={"#bin": f"b{peer_bin(capacity_factor_bps)}"},
            ExpressionAttributeValues=to_item({":one": 1, ":expires": expires_at}),
        )

    def curves(self, key: str) -> tuple[tuple[DayCurve, ...], int]:
        found = self._get(replay_key(key))
        if found is None:
            return (), 0
        curves = tuple(DayCurve.from_dict(c) for c in json.loads(found["curves"]))
        return curves, as_int(found["version"])

    def save_curves(self, key: str, curves: Sequence[DayCurve], expected_version: int) -> None:
        newest = max(c.first_hour for c in curves) * HOUR_MS // 1000 if curves else 0
        self._staged.put(
            self._tables.disputes,
            replay_key(key)
            | to_item(
                {
                    "curves": json.dumps([c.to_dict() for c in curves], separators=(",", ":")),
                    "version": expected_version + 1,
                    "expires_at": newest + (REPLAY_MEMORY_DAYS + 1) * DAY_SECONDS,
                }
            ),
            "attribute_not_exists(pk)" if expected_version == 0 else "version = :version",
            lambda: ConcurrentUpdate("the replay index changed; retry", key=key),
            **(
                {"ExpressionAttributeValues": to_item({":version": expected_version})}
                if expected_version
                else {}
            ),
        )
