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

Both stay inside the server. moto keeps its state, and its classes, in this
process, shared with any ``mock_aws()`` running beside the server (the tests'
session-wide server does). The rollback patch is therefore put in place by
``LocalMotoServer.start()`` and taken out by ``stop()`` (when the last server
stops), and while in place it acts only on requests the server is serving:
everything else in the process sees stock moto. A script that owns its process
and runs moto in it directly can opt in everywhere with
``install_item_level_rollback()``.
"""

from __future__ import annotations

import contextvars
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

# True while a LocalMotoServer serves a request (in that request's thread).
_serving_a_request: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "serving_a_local_moto_request", default=False
)


class OneRequestAtATime:
    """WSGI middleware: each request runs to completion before the next starts."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            serving = _serving_a_request.set(True)
            try:
                return list(self._app(environ, start_response))
            finally:
                _serving_a_request.reset(serving)


class _TablesByReference:
    """Stands in for the ``copy`` module inside moto's DynamoDB backend: the
    whole-table backup its transactions take becomes a reference (the
    rollback below restores the items instead); everything else is copied."""

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(value, Table) and _rollback_applies():
            return value
        return copy.deepcopy(value, memo)


class _RollbackPatch:
    """moto's DynamoDB backend with item-level rollback, for as long as someone holds it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._stock: tuple[Any, Any] | None = None
        self.everywhere = False

    def acquire(self) -> None:
        with self._lock:
            self._holders += 1
            if self._stock is None:
                stock_transact = DynamoDBBackend.transact_write_items
                self._stock = (stock_transact, dynamodb_models.copy)  # type: ignore[attr-defined]
                patched = _item_level_rollback(stock_transact)
                DynamoDBBackend.transact_write_items = patched  # type: ignore[method-assign]
                dynamodb_models.copy = _TablesByReference  # type: ignore[attr-defined, assignment]

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._stock is not None:
                stock_transact, stock_copy = self._stock
                DynamoDBBackend.transact_write_items = stock_transact  # type: ignore[method-assign]
                dynamodb_models.copy = stock_copy  # type: ignore[attr-defined]
                self._stock = None


_ROLLBACK = _RollbackPatch()


def _rollback_applies() -> bool:
    return _ROLLBACK.everywhere or _serving_a_request.get()


def install_item_level_rollback() -> None:
    """Make moto's TransactWriteItems roll back item by item, everywhere in this process, for good.

    For a script that owns its process and calls moto in it (``mock_aws``), one
    request at a time (bench/settlement.py). The local server does not need it.
    """
    if not _ROLLBACK.everywhere:
        _ROLLBACK.acquire()
        _ROLLBACK.everywhere = True


def _item_level_rollback(original: Callable[..., None]) -> Callable[..., None]:
    """moto's transact_write_items, undoing only the items it names when it fails.

    Safe only where requests run one at a time (``OneRequestAtATime``): the
    undo log is taken before the transaction and applied if it fails.
    """

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        if not _rollback_applies():
            return original(self, transact_items)
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

    return transact_write_items


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
    """A moto server whose requests are atomic and whose failed bind is reported.

    Its requests, and only they, roll transactions back item by item while it runs.
    """

    bind_error: OSError | None = None
    _holds_rollback = False

    def start(self) -> None:
        if not self._holds_rollback:
            _ROLLBACK.acquire()
            self._holds_rollback = True
        super().start()
        if self.bind_error is not None:
            self._release_rollback()

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self._release_rollback()

    def _release_rollback(self) -> None:
        if self._holds_rollback:
            self._holds_rollback = False
            _ROLLBACK.release()

    def _server_entry(self) -> None:
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
