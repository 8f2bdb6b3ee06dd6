"""Pushing to WebSocket clients through API Gateway's @connections API."""

from __future__ import annotations

from typing import Protocol

from botocore.exceptions import ClientError

from chalicelib.adapters.aws import connections_client
from chalicelib.domain.errors import StorageBusy


class Pusher(Protocol):
    def post(self, connection_id: str, data: bytes) -> bool:
        """Send one frame; False when the connection is gone (GoneException)."""


class ConnectionsApiPusher:
    def __init__(self, endpoint: str) -> None:
        self._endpoint = endpoint

    def post(self, connection_id: str, data: bytes) -> bool:
        try:
            connections_client(self._endpoint).post_to_connection(
                ConnectionId=connection_id, Data=data
            )
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "GoneException":
                return False  # closed (or never was): forget it
            if code in ("LimitExceededException", "TooManyRequestsException"):
                raise StorageBusy("the WebSocket API is busy; try again", error=code) from exc
            raise
        return True
