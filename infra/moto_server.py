"""The moto server the offline stack and the tests run: atomic requests, clear bind errors.

DynamoDB applies each request atomically: a TransactWriteItems is all or
nothing, and no other request sees or overwrites half of it. moto implements
a transaction by copying the tables it touches and restoring the copy when a
condition fails; two transactions at once can therefore restore over each
other's writes (a concurrent test saw stake top-ups lost this way). Serving
one request at a time gives back the atomicity the real service has, while
clients still race between their reads and their conditional writes, which
is the interleaving the product must survive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

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


class LocalMotoServer(ThreadedMotoServer):
    """A moto server whose requests are atomic and whose failed bind is reported."""

    bind_error: OSError | None = None

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
