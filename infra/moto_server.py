"""The moto server the offline stack and the tests run: atomic requests, clear bind errors.

Two departures from stock moto, both to behave more like DynamoDB:

DynamoDB applies each request atomically: a TransactWriteItems is all or
nothing, and no other request sees or overwrites half of it. moto implements
a transaction by copying the tables it touches and restoring the copy when a
condition fails; two transactions at once can therefore restore over each
other's writes (a concurrent test saw stake top-ups lost this way). Serving
one request at a time gives back the atomicity the real service has, while
clients still race between their reads and their conditional writes, which
is the interleaving the product must survive.

The table copy also makes every transaction cost as much as the tables it
touches are large: a local market slowed down as its credits piled up.
``install_item_level_rollback`` keeps moto's transaction logic but makes
its rollback undo only the items the transaction names (and the stream
records it wrote), so a transaction costs the same at 100 items or 100,000.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable
from typing import Any

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class OneRequestAtATime:
    """WSGI middleware: each request runs to completion before the next starts."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            return list(self._app(environ, start_response))


class _TablesByReference:
    """Stands in for the ``copy`` module inside moto's DynamoDB backend: the
    whole-table backup its transactions take becomes a reference (the
    rollback below restores the items instead); everything else is copied."""

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def install_item_level_rollback() -> None:
    """Make moto's TransactWriteItems roll back item by item (idempotent).

    Safe only where requests run one at a time (``OneRequestAtATime``): the
    undo log is taken before the transaction and applied if it fails.
    """
    if getattr(DynamoDBBackend, "_item_level_rollback", False):
        return
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        undo = _undo_log(self, transact_items)
        shards = {
            id(shard): (shard, len(shard.items))
            for shard in (self.tables[name].stream_shard for name, _, _ in undo)
            if shard is not None
        }
        try:
            original(self, transact_items)
        except Exception:
            for table_name, key, attributes in reversed(undo):
                if attributes is not None:
                    self.put_item(table_name, attributes)
                elif self.get_item(table_name, key) is not None:
                    self.delete_item(table_name, key)
            for shard, length in shards.values():
                del shard.items[length:]  # a cancelled write leaves no stream record
            raise

    dynamodb_models.copy = _TablesByReference  # type: ignore[attr-defined, assignment]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    DynamoDBBackend._item_level_rollback = True  # type: ignore[attr-defined]


def _undo_log(
    backend: DynamoDBBackend, transact_items: list[dict[str, Any]]
) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(table, key, the item as it is now or None) for every item a transaction names."""
    log = []
    for entry in transact_items:
        try:
            ((_, operation),) = entry.items()
            table_name = operation["TableName"]
            table = backend.get_table(table_name)
            key = operation.get("Key") or {
                name: operation["Item"][name]
                for name in (table.hash_key_attr, table.range_key_attr)
                if name is not None
            }
            current = backend.get_item(table_name, key)
        except Exception:  # noqa: BLE001, S112 - malformed: moto itself refuses it whole
            continue
        log.append((table_name, key, current.to_json()["Attributes"] if current else None))
    return log


class LocalMotoServer(ThreadedMotoServer):
    """A moto server whose requests are atomic and whose failed bind is reported."""

    bind_error: OSError | None = None

    def _server_entry(self) -> None:
        install_item_level_rollback()
        try:
            app = OneRequestAtATime(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
        except (OSError, SystemExit) as exc:
            # start() waits for the ready event, which the base class sets only
            # after binding; record the error and release the wait. Werkzeug
            # turns a failed bind into SystemExit, with the OSError as context.
            cause = exc if isinstance(exc, OSError) else exc.__context__
            self.bind_error = cause if isinstance(cause, OSError) else OSError(str(exc))
            self._server_ready_event.set()
            return
        self._server_ready_event.set()
        self._server.serve_forever()
