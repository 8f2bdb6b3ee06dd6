"""The local stand-in for API Gateway's WebSocket API and its ``@connections`` management API.

In AWS, API Gateway holds the clients' WebSocket connections and invokes the
Lambda functions Chalice registers with ``@app.on_ws_connect()``,
``@app.on_ws_message()`` and ``@app.on_ws_disconnect()`` (routes ``$connect``,
``$default``, ``$disconnect``); the application pushes to a client through the
management API at ``https://{api-id}.execute-api.{region}.amazonaws.com/{stage}``
(boto3 ``apigatewaymanagementapi``). Offline, this process imports ``app``,
finds the same functions (Chalice keeps them in ``app.app.websocket_handlers``)
and serves both on one port, as API Gateway serves both on one host:

- ``ws://HOST:PORT/{stage}`` (or ``/``): a client's upgrade request gets a
  connection id shaped like API Gateway's and a ``$connect`` invocation with
  an API Gateway-shaped event; a ``statusCode`` outside 2xx refuses the
  upgrade with that status (403 if it is no error status), a handler that
  raises refuses it with 500, as a failed integration does. Each text message
  is a ``$default`` invocation with ``body``; the close, whoever closes, is a
  ``$disconnect`` invocation with the close code and reason. Handlers are
  synchronous, like Lambda: they run in a thread pool, and one connection's
  invocations run one at a time, in order. A handler that raises is logged
  with its traceback (as Lambda logs it) and counted; the client gets nothing.
- ``http://HOST:PORT/{stage}/@connections/{id}``: ``POST`` sends the body to
  the client as a text message (200), ``GET`` answers
  ``{"connectedAt", "identity": {"sourceIp", "userAgent"}, "lastActiveAt"}``
  (the wire names of boto3's ``ConnectedAt``, ``Identity``, ``LastActiveAt``),
  ``DELETE`` closes the connection (204). A connection that is unknown,
  closed, or still in its ``$connect`` answers 410 ``GoneException``, as in
  AWS. Point boto3 at it with
  ``boto3.client("apigatewaymanagementapi", endpoint_url="http://HOST:PORT/{stage}")``
  and any credentials.

API Gateway's limits (its quotas page, "WebSocket APIs"), emulated because
clients must cope with them:

- idle timeout, 10 minutes: a connection from which no message has come for
  that long is closed (1001 "Going away"). Only the client's data frames
  count: pings do not, nor do pushes to it. That is the conservative reading
  of AWS's rule, so a client that works here keeps working there; clients
  send an application-level ping;
- connection duration, 2 hours: then the connection is closed (1001);
- frames of at most 32 KB and messages of at most 128 KB (KiB here: 32,768
  and 131,072 bytes, the ``Data`` maximum in botocore's model): a larger
  frame or message from a client closes the connection with 1009, a
  binary frame with 1003 (API Gateway accepts only text frames). A push over
  128 KB answers 413 ``PayloadTooLargeException``; a push over 32 KB is sent
  in 32 KB fragments of one text message, as API Gateway splits it.

Both timeouts can be set shorter (``--idle-timeout``, ``--max-duration``) for
tests. Counters (connections open, messages in and out, pushes, gone) go to
``--status-file``.

Not emulated: SigV4 on the management API (any credentials pass); route
selection beyond ``$default`` (Chalice routes every message there); route
responses (the ``$default`` handler's return value is dropped, as without a
route response); authorizers; subprotocol negotiation; ``LimitExceededException``
(throttling, a full client buffer: a push to a slow client waits instead);
permessage-deflate. Messages are delivered in order per connection; in AWS,
``$default`` invocations of one connection may overlap.

    python -m infra.ws_gateway --port 8001 --stage api --status-file .local/websockets/status.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import datetime
import http
import importlib
import json
import logging
import secrets
import sys
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import SERVER, Request, Response
from websockets.protocol import State

from iot.lifecycle import StartStop, set_on_signals, write_status

logger = logging.getLogger("infra.ws_gateway")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001
# Chalice's default API Gateway stage; the local stack passes the one in .chalice/config.json.
DEFAULT_STAGE = "api"
# API Gateway API ids are ten lowercase letters and digits.
DEFAULT_API_ID = "localwsapi"
DEFAULT_WORKERS = 16

IDLE_TIMEOUT_SECONDS = 10 * 60.0
MAX_CONNECTION_SECONDS = 2 * 3600.0
FRAME_LIMIT_BYTES = 32 * 1024
MESSAGE_LIMIT_BYTES = 128 * 1024
# The integration timeout: a $connect that takes longer fails the handshake.
CONNECT_TIMEOUT_SECONDS = 29.0
# How long a management caller may keep an idle HTTP connection open.
MANAGEMENT_KEEPALIVE_SECONDS = 60.0
MAX_HEAD_BYTES = 16 * 1024
STATUS_SECONDS = 2.0
SHUTDOWN_SECONDS = 5.0

CONNECT, MESSAGE, DISCONNECT = "$connect", "$default", "$disconnect"
_EVENT_TYPES = {CONNECT: "CONNECT", MESSAGE: "MESSAGE", DISCONNECT: "DISCONNECT"}
# What API Gateway tells $disconnect when the close frame gave no reason.
_DISCONNECT_REASONS: dict[int, str] = {
    CloseCode.NORMAL_CLOSURE: "Normal closure",
    CloseCode.GOING_AWAY: "Going away",
    CloseCode.NO_STATUS_RCVD: "Client-side close frame status not set",
    CloseCode.ABNORMAL_CLOSURE: "Connection closed abnormally",
    CloseCode.UNSUPPORTED_DATA: "Binary frames are not supported",
    CloseCode.MESSAGE_TOO_BIG: "Message too big",
}

LambdaHandler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class Limits:
    """API Gateway's limits on a connection (seconds and bytes)."""

    idle_timeout: float = IDLE_TIMEOUT_SECONDS
    max_duration: float = MAX_CONNECTION_SECONDS
    frame_bytes: int = FRAME_LIMIT_BYTES
    message_bytes: int = MESSAGE_LIMIT_BYTES
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS


def mint_id() -> str:
    """An id shaped like API Gateway's connection and request ids (``L0SM9cOFvHcCIhw=``)."""
    return base64.b64encode(secrets.token_bytes(11)).decode("ascii")


def _epoch_ms() -> int:
    return time.time_ns() // 1_000_000


def _iso8601(epoch_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(epoch_ms / 1000, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _request_time(epoch_ms: int) -> str:
    """API Gateway's ``requestTime``: 09/Feb/2019:18:30:03 +0000."""
    moment = datetime.datetime.fromtimestamp(epoch_ms / 1000, datetime.UTC)
    return moment.strftime("%d/%b/%Y:%H:%M:%S +0000")


def websocket_routes(module: Any) -> dict[str, LambdaHandler]:
    """Route key -> the Lambda entry point of every ``@app.on_ws_*`` function of an app module."""
    return {
        route_key: getattr(module, config.handler_string.split(".")[-1])
        for route_key, config in module.app.websocket_handlers.items()
    }


def point_chalice_at(module: Any, management_endpoint: str) -> None:
    """Send the app's own ``app.websocket_api.send/close/info`` to this gateway.

    Chalice builds ``https://{apiId}.execute-api.{region}.amazonaws.com/{stage}``
    from the first event unless an endpoint is set, and its public
    ``configure()`` can only make https URLs; so the endpoint is set directly.
    """
    websocket_api = getattr(module.app, "websocket_api", None)
    if websocket_api is not None:
        websocket_api._endpoint = management_endpoint
        websocket_api._client = None  # a client made for another endpoint


# --- the events API Gateway sends ------------------------------------------------------


@dataclass
class ClientInfo:
    """What API Gateway knows of a connection, and what its events repeat."""

    connection_id: str
    source_ip: str
    user_agent: str | None
    connected_at_ms: int
    last_active_ms: int
    headers: dict[str, str] = field(default_factory=dict)


def request_context(
    route_key: str,
    client: ClientInfo,
    *,
    stage: str,
    api_id: str,
    domain_name: str,
    now_ms: int,
) -> dict[str, Any]:
    return {
        "routeKey": route_key,
        "eventType": _EVENT_TYPES[route_key],
        "extendedRequestId": mint_id(),
        "requestTime": _request_time(now_ms),
        "messageDirection": "IN",
        "stage": stage,
        "connectedAt": client.connected_at_ms,
        "requestTimeEpoch": now_ms,
        "identity": {"sourceIp": client.source_ip, "userAgent": client.user_agent},
        "requestId": mint_id(),
        "domainName": domain_name,
        "connectionId": client.connection_id,
        "apiId": api_id,
    }


def connect_event(
    client: ClientInfo,
    raw_headers: Sequence[tuple[str, str]],
    query: str,
    context: dict[str, Any],
) -> dict[str, Any]:
    """The ``$connect`` event: the upgrade request's headers and query string."""
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in raw_headers:
        multi_headers.setdefault(name, []).append(value)
        headers[name] = ",".join(multi_headers[name])
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    parameters: dict[str, str] = {}
    multi_parameters: dict[str, list[str]] = {}
    for name, value in pairs:
        parameters[name] = value  # the last one, as API Gateway keeps it
        multi_parameters.setdefault(name, []).append(value)
    return {
        "headers": headers,
        "multiValueHeaders": multi_headers,
        # API Gateway sends null, not {}, when the URL has no query string.
        "queryStringParameters": parameters or None,
        "multiValueQueryStringParameters": multi_parameters or None,
        "requestContext": context,
        "isBase64Encoded": False,
    }


def message_event(body: str, context: dict[str, Any]) -> dict[str, Any]:
    """The ``$default`` event: one text message."""
    return {
        "requestContext": {**context, "messageId": mint_id()},
        "body": body,
        "isBase64Encoded": False,
    }


def disconnect_event(
    client: ClientInfo, code: int, reason: str, context: dict[str, Any]
) -> dict[str, Any]:
    """The ``$disconnect`` event: the close code and reason, whoever closed."""
    headers = {
        "Host": client.headers.get("Host", ""),
        "X-Forwarded-For": client.source_ip,
        "x-api-key": "",
        "x-restapi": "",
    }
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": {
            **context,
            "disconnectStatusCode": code,
            "disconnectReason": reason or _DISCONNECT_REASONS.get(code, ""),
        },
        "isBase64Encoded": False,
    }


# --- one TCP connection: a WebSocket client or a management API caller --------------------


class GatewayConnection(ServerConnection):
    """A connection to the gateway's port, and the API Gateway connection it may become.

    API Gateway serves the WebSocket API and ``@connections`` on one host. The
    websockets library parses only upgrade requests (a GET without a body), so
    the head of the first request decides: an upgrade goes on to websockets'
    handshake; anything else is a management API call, and this connection
    hands its bytes to the gateway's HTTP handling instead, for as long as the
    caller keeps it open.
    """

    # Set on the subclass each gateway makes (WebSocketGateway._connection_class).
    gateway: WebSocketGateway

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head = bytearray()
        self._routed: asyncio.Future[None] = self.loop.create_future()
        self.management: asyncio.StreamReader | None = None
        self.client: ClientInfo | None = None
        self.accepted = False
        self.opened_at = 0.0  # loop time
        self.last_message_at = 0.0  # loop time

    def data_received(self, data: bytes) -> None:
        if self.management is not None:
            self.management.feed_data(data)
            return
        if self._routed.done():
            super().data_received(data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end == -1 and len(self._head) <= MAX_HEAD_BYTES:
            return  # the head is not complete yet
        head = bytes(self._head)
        self._head.clear()
        if end != -1 and not _is_upgrade(head[:end]):
            self.management = asyncio.StreamReader(limit=MAX_HEAD_BYTES)
            self.management.feed_data(head)
        self._routed.set_result(None)
        if self.management is None:
            super().data_received(head)  # websockets parses (or refuses) it

    def eof_received(self) -> None:
        if self.management is not None:
            # asyncio closes the transport now: a caller that half-closes gets no answer
            # to its last request. HTTP/1.1 callers (botocore's urllib3) do not.
            self.management.feed_eof()
            return
        super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.management is not None:
            self.management.feed_eof()
        super().connection_lost(exc)

    async def handshake(
        self,
        process_request: (
            Callable[[ServerConnection, Request], Awaitable[Response | None] | Response | None]
            | None
        ) = None,
        process_response: (
            Callable[
                [ServerConnection, Request, Response], Awaitable[Response | None] | Response | None
            ]
            | None
        ) = None,
        server_header: str | None = SERVER,
    ) -> None:
        # serve() runs without its open_timeout (a management caller's keep-alive
        # connection lives longer than a handshake may take), so the timeouts are here.
        limits = self.gateway.limits
        async with asyncio.timeout(limits.connect_timeout):
            await asyncio.wait(
                [self._routed, self.connection_lost_waiter],
                return_when=asyncio.FIRST_COMPLETED,
            )
        if self.management is not None:
            await self.gateway.serve_management(self.management, self)
            return
        try:
            async with asyncio.timeout(limits.connect_timeout + 1.0):
                await super().handshake(process_request, process_response, server_header)
        finally:
            if self.accepted and self.protocol.state is not State.OPEN:
                # $connect accepted it, but the client left before the 101 went out:
                # the app holds a record of it, and API Gateway would still say $disconnect.
                await self.gateway.disconnected(self, CloseCode.ABNORMAL_CLOSURE, "")


def _is_upgrade(head: bytes) -> bool:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


@dataclass(frozen=True)
class _Answer:
    """An HTTP answer of the management API."""

    status: int
    body: bytes = b""
    error_type: str | None = None

    @classmethod
    def error(cls, status: int, error_type: str, message: str | None) -> _Answer:
        return cls(status, json.dumps({"message": message}).encode(), error_type)


GONE = _Answer.error(410, "GoneException", None)
FORBIDDEN = _Answer.error(403, "ForbiddenException", "Forbidden")


# --- the gateway ------------------------------------------------------------------------


@dataclass
class Counters:
    connections_accepted: int = 0
    connections_refused: int = 0
    messages_in: int = 0
    messages_out: int = 0
    pushes: int = 0
    gone: int = 0
    deleted: int = 0
    closed_idle: int = 0
    closed_max_duration: int = 0
    # Every route's key is there from the start: status() copies it from another thread.
    handler_errors: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys((CONNECT, MESSAGE, DISCONNECT), 0)
    )
    last_error: str | None = None


class WebSocketGateway(StartStop):
    """The WebSocket API and its management API on ``host:port``, in a thread of its own.

    ``routes`` maps route keys (``$connect``, ``$default``, ``$disconnect``) to
    Lambda entry points (``websocket_routes(app_module)``). Port 0 picks a free
    port; read ``port`` once started. ``with WebSocketGateway(...) as gateway:``
    """

    def __init__(
        self,
        routes: Mapping[str, LambdaHandler],
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        stage: str = DEFAULT_STAGE,
        api_id: str = DEFAULT_API_ID,
        limits: Limits | None = None,
        workers: int = DEFAULT_WORKERS,
        status_path: Path | None = None,
    ) -> None:
        self.routes = dict(routes)
        self.host = host
        self.port = port
        self.stage = stage
        self.api_id = api_id
        self.limits = limits or Limits()
        self.workers = workers
        self.status_path = status_path
        self.counters = Counters()
        self._connections: dict[str, GatewayConnection] = {}
        self._management_callers: set[asyncio.StreamReader] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        # Resolved by the gateway's thread once it listens (or failed to).
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._listening = False

    # Where it is.

    @property
    def domain_name(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def websocket_url(self) -> str:
        return f"ws://{self.domain_name}/{self.stage}"

    @property
    def management_endpoint(self) -> str:
        """The ``endpoint_url`` of an ``apigatewaymanagementapi`` client for this gateway."""
        return f"http://{self.domain_name}/{self.stage}"

    def status(self) -> dict[str, Any]:
        counters = self.counters
        return {
            "listening": self._listening,
            "websocket_url": self.websocket_url,
            "management_endpoint": self.management_endpoint,
            "routes": sorted(self.routes),
            "connections_open": len(self._connections),
            "connections_accepted": counters.connections_accepted,
            "connections_refused": counters.connections_refused,
            "messages_in": counters.messages_in,
            "messages_out": counters.messages_out,
            "pushes": counters.pushes,
            "gone": counters.gone,
            "deleted": counters.deleted,
            "closed_idle": counters.closed_idle,
            "closed_max_duration": counters.closed_max_duration,
            "handler_errors": dict(counters.handler_errors),
            "last_error": counters.last_error,
        }

    def write_status(self) -> None:
        if self.status_path is not None:
            write_status(self.status_path, self.status())

    # Starting and stopping (from any thread).

    def start(self) -> None:
        """Listen, in a thread of its own; raise OSError if the port cannot be bound."""
        if self._thread is not None:
            return
        self._ready = concurrent.futures.Future()
        thread = threading.Thread(target=self._serve_in_thread, name="ws-gateway", daemon=True)
        thread.start()
        try:
            self._ready.result()
        except BaseException:
            thread.join()
            raise
        self._thread = thread

    def stop(self) -> None:
        """Close every connection (1001, with ``$disconnect``), stop listening, end the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stop_requested = self._loop, self._stop_requested
        if loop is not None and stop_requested is not None:
            loop.call_soon_threadsafe(stop_requested.set)
        thread.join(SHUTDOWN_SECONDS + 5.0)

    def _serve_in_thread(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            if self._ready.done():
                logger.exception("the gateway's event loop failed")
            else:
                self._ready.set_exception(exc)
        finally:
            if not self._ready.done():  # start() must never wait for ever
                self._ready.set_exception(RuntimeError("the gateway stopped before it listened"))

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        # Lambda's concurrency: invocations of different connections run side by side.
        pool = self._pool = concurrent.futures.ThreadPoolExecutor(
            self.workers, thread_name_prefix="ws-lambda"
        )
        try:
            server = await serve(
                self._converse,
                self.host,
                self.port,
                process_request=self._connect,
                create_connection=self._connection_class(),
                compression=None,
                open_timeout=None,  # GatewayConnection.handshake applies its own
                # API Gateway sends no pings of its own; its idle timeout finds the dead.
                ping_interval=None,
                close_timeout=3.0,
                max_size=(self.limits.message_bytes, self.limits.frame_bytes),
            )
        except BaseException:
            pool.shutdown(wait=False)
            raise  # to start(), through _serve_in_thread
        self.port = server.sockets[0].getsockname()[1]
        self._listening = True
        self.write_status()
        self._ready.set_result(None)
        reporter = asyncio.create_task(self._report())
        try:
            await self._stop_requested.wait()
        finally:
            self._listening = False
            await self._shut_down(server)
            reporter.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            self.write_status()

    async def _shut_down(self, server: Server) -> None:
        server.close()  # 1001 to every client; their $disconnect runs in _converse
        for caller in list(self._management_callers):
            caller.feed_eof()  # idle keep-alive callers: their loops end
        try:
            async with asyncio.timeout(SHUTDOWN_SECONDS):
                await server.wait_closed()
        except TimeoutError:
            logger.warning("connections still open after %ss; leaving them", SHUTDOWN_SECONDS)

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(STATUS_SECONDS)
            self.write_status()

    def _connection_class(self) -> type[GatewayConnection]:
        class Connection(GatewayConnection):
            pass

        Connection.gateway = self
        return Connection

    # Invoking the handlers (Lambda).

    async def _invoke(self, route_key: str, event: dict[str, Any]) -> tuple[bool, Any]:
        """Call the route's handler off the event loop: (whether it returned, what it returned)."""
        handler = self.routes.get(route_key)
        if handler is None:
            return True, None
        loop = asyncio.get_running_loop()
        connection_id = event["requestContext"]["connectionId"]
        try:
            return True, await loop.run_in_executor(self._pool, handler, event, None)
        except Exception as exc:  # a failed invocation: logged as Lambda would, never fatal
            self.counters.handler_errors[route_key] += 1
            self.counters.last_error = f"{route_key}: {type(exc).__name__}: {exc}"
            logger.exception("%s handler failed for connection %s", route_key, connection_id)
            return False, None

    def _context(
        self, route_key: str, client: ClientInfo, now_ms: int | None = None
    ) -> dict[str, Any]:
        return request_context(
            route_key,
            client,
            stage=self.stage,
            api_id=self.api_id,
            domain_name=self.domain_name,
            now_ms=_epoch_ms() if now_ms is None else now_ms,
        )

    # The WebSocket side.

    async def _connect(self, websocket: ServerConnection, request: Request) -> Response | None:
        """The upgrade request: ``$connect`` decides (None accepts, a Response refuses)."""
        if not isinstance(websocket, GatewayConnection):
            raise TypeError("the gateway serves only its own connections")
        path, _, query = request.path.partition("?")
        if path.rstrip("/") not in ("", f"/{self.stage}"):
            self.counters.connections_refused += 1
            return websocket.respond(http.HTTPStatus.FORBIDDEN, "Forbidden\n")
        now_ms = _epoch_ms()
        remote = websocket.remote_address
        client = ClientInfo(
            connection_id=mint_id(),
            source_ip=str(remote[0]) if remote else "",
            user_agent=request.headers.get("User-Agent"),
            connected_at_ms=now_ms,
            last_active_ms=now_ms,
            headers=dict(request.headers.raw_items()),
        )
        websocket.client = client
        raw_headers = list(request.headers.raw_items())
        # API Gateway adds these in front of the function, as a load balancer would.
        raw_headers += [
            ("X-Forwarded-For", client.source_ip),
            ("X-Forwarded-Port", str(self.port)),
            ("X-Forwarded-Proto", "http"),
        ]
        # API Gateway's $connect request is the connection's first moment: its
        # requestTimeEpoch is connectedAt, read from one clock reading.
        context = self._context(CONNECT, client, now_ms=now_ms)
        event = connect_event(client, raw_headers, query, context)
        returned, result = await self._invoke(CONNECT, event)
        status = _connect_status(result) if returned else http.HTTPStatus.INTERNAL_SERVER_ERROR
        if 200 <= status < 300:
            websocket.accepted = True
            return None
        self.counters.connections_refused += 1
        body = result.get("body") if isinstance(result, dict) else None
        text = body if isinstance(body, str) else f"{http.HTTPStatus(status).phrase}\n"
        return websocket.respond(status, text)

    async def _converse(self, websocket: ServerConnection) -> None:
        """An open connection: its messages to ``$default`` in order, then ``$disconnect``."""
        if not isinstance(websocket, GatewayConnection) or websocket.client is None:
            return
        client = websocket.client
        loop = asyncio.get_running_loop()
        websocket.opened_at = websocket.last_message_at = loop.time()
        self._connections[client.connection_id] = websocket
        self.counters.connections_accepted += 1
        try:
            await self._relay(websocket, client)
        finally:
            # Gone for the management API from now, before $disconnect runs, as in AWS.
            self._connections.pop(client.connection_id, None)
        await websocket.wait_closed()
        await self.disconnected(websocket, *_closed_by(websocket))

    async def _relay(self, websocket: GatewayConnection, client: ClientInfo) -> None:
        limits = self.limits
        while True:
            idle_at = websocket.last_message_at + limits.idle_timeout
            ends_at = websocket.opened_at + limits.max_duration
            try:
                # recv() may be cancelled safely: no message is lost.
                async with asyncio.timeout_at(min(idle_at, ends_at)):
                    message = await websocket.recv()
            except TimeoutError:
                if idle_at <= ends_at:
                    self.counters.closed_idle += 1
                else:
                    self.counters.closed_max_duration += 1
                await websocket.close(CloseCode.GOING_AWAY, "Going away")
                return
            except ConnectionClosed:
                return
            if isinstance(message, bytes):
                await websocket.close(CloseCode.UNSUPPORTED_DATA, "Binary frames are not supported")
                return
            websocket.last_message_at = asyncio.get_running_loop().time()
            client.last_active_ms = _epoch_ms()
            self.counters.messages_in += 1
            context = self._context(MESSAGE, client)
            if MESSAGE not in self.routes:
                # No route matches: API Gateway answers the client itself.
                await _send_quietly(websocket, _no_route(client, context))
                continue
            await self._invoke(MESSAGE, message_event(message, context))

    async def disconnected(self, websocket: GatewayConnection, code: int, reason: str) -> None:
        """Tell the app a connection is gone (``$disconnect``), once."""
        client = websocket.client
        if client is None or not websocket.accepted:
            return
        websocket.accepted = False
        await self._invoke(
            DISCONNECT,
            disconnect_event(client, code, reason, self._context(DISCONNECT, client)),
        )

    # The management API (@connections).

    async def serve_management(
        self, reader: asyncio.StreamReader, caller: ServerConnection
    ) -> None:
        """Answer one caller's HTTP/1.1 requests, in turn, until it closes or idles out."""
        self._management_callers.add(reader)
        transport = caller.transport
        try:
            while True:
                try:
                    async with asyncio.timeout(MANAGEMENT_KEEPALIVE_SECONDS):
                        head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                    return
                request = _parse_head(head)
                if request is None:
                    _write_answer(transport, _Answer.error(400, "BadRequestException", None), False)
                    return
                method, target, headers, keep_alive = request
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    # botocore always sends a Content-Length.
                    _write_answer(transport, _Answer.error(411, "BadRequestException", None), False)
                    return
                try:
                    length = int(headers.get("content-length", "0"))
                    body = await reader.readexactly(length)
                except (ValueError, asyncio.IncompleteReadError):
                    return
                answer = await self._manage(method, target, body)
                _write_answer(transport, answer, keep_alive)
                if not keep_alive:
                    return
        finally:
            self._management_callers.discard(reader)
            transport.close()

    async def _manage(self, method: str, target: str, body: bytes) -> _Answer:
        path = urllib.parse.urlsplit(target).path
        parts = path.split("/")
        if (
            len(parts) != 4
            or parts[0] != ""
            or urllib.parse.unquote(parts[1]) != self.stage
            or urllib.parse.unquote(parts[2]) != "@connections"
        ):
            return FORBIDDEN
        connection_id = urllib.parse.unquote(parts[3])
        if method == "POST":
            self.counters.pushes += 1
        websocket = self._connections.get(connection_id)
        if websocket is None or websocket.client is None:
            self.counters.gone += 1
            return GONE
        if method == "POST":
            return await self._push(websocket, body)
        if method == "GET":
            client = websocket.client
            return _Answer(
                200,
                json.dumps(
                    {
                        "connectedAt": _iso8601(client.connected_at_ms),
                        "identity": {"sourceIp": client.source_ip, "userAgent": client.user_agent},
                        "lastActiveAt": _iso8601(client.last_active_ms),
                    }
                ).encode(),
            )
        if method == "DELETE":
            # Gone at once for the management API; the close handshake goes on meanwhile.
            self._connections.pop(connection_id, None)
            self.counters.deleted += 1
            closing = asyncio.get_running_loop().create_task(
                websocket.close(CloseCode.NORMAL_CLOSURE)
            )
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
            return _Answer(204)
        return FORBIDDEN

    async def _push(self, websocket: GatewayConnection, data: bytes) -> _Answer:
        if len(data) > self.limits.message_bytes:
            return _Answer.error(413, "PayloadTooLargeException", "Message too long")
        frame = self.limits.frame_bytes
        try:
            if len(data) <= frame:
                await websocket.send(data, text=True)
            else:
                # One text message in fragments of at most a frame, as API Gateway sends it.
                await websocket.send(
                    [data[i : i + frame] for i in range(0, len(data), frame)], text=True
                )
        except ConnectionClosed:
            self.counters.gone += 1
            return GONE
        self.counters.messages_out += 1
        return _Answer(200)


def _closed_by(websocket: ServerConnection) -> tuple[int, str]:
    """The code and reason of the close frame that ended a connection, whichever side sent it first.

    What ``$disconnect`` reports: the client's code when the client closed,
    the gateway's when the gateway did (idle, DELETE, a frame too large), 1006
    when no close frame came at all.
    """
    closed = websocket.protocol.close_exc
    if closed.rcvd is not None and (closed.sent is None or closed.rcvd_then_sent):
        return closed.rcvd.code, closed.rcvd.reason
    if closed.sent is not None:  # answered or not
        return closed.sent.code, closed.sent.reason
    return CloseCode.ABNORMAL_CLOSURE, ""


def _connect_status(result: Any) -> int:
    """The status a $connect handler's answer asks for (Chalice always gives a statusCode)."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return 200
    status = result["statusCode"]
    if isinstance(status, int) and (200 <= status < 300 or 400 <= status < 600):
        return status
    return 403


def _no_route(client: ClientInfo, context: dict[str, Any]) -> str:
    return json.dumps(
        {
            "message": "Forbidden",
            "connectionId": client.connection_id,
            "requestId": context["requestId"],
        }
    )


async def _send_quietly(websocket: ServerConnection, message: str) -> None:
    with contextlib.suppress(ConnectionClosed):
        await websocket.send(message)


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str], bool] | None:
    """(method, target, lower-cased headers, keep-alive) of an HTTP/1.x request head."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
    return method, target, headers, keep_alive


def _write_answer(transport: asyncio.Transport, answer: _Answer, keep_alive: bool) -> None:
    status = http.HTTPStatus(answer.status)
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"x-amzn-RequestId: {mint_id()}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    if answer.error_type is not None:
        lines.append(f"x-amzn-ErrorType: {answer.error_type}")
    if status != http.HTTPStatus.NO_CONTENT:  # a 204 carries no Content-Length
        lines += ["Content-Type: application/json", f"Content-Length: {len(answer.body)}"]
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + answer.body)


# --- the command ------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m infra.ws_gateway", description=__doc__)
    parser.add_argument("--app", default="app", help="module holding the Chalice app")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--stage", default=DEFAULT_STAGE, help="API Gateway stage (the URL path)")
    parser.add_argument("--api-id", default=DEFAULT_API_ID)
    parser.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_SECONDS)
    parser.add_argument("--max-duration", type=float, default=MAX_CONNECTION_SECONDS)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--status-file", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    module = importlib.import_module(args.app)
    gateway = WebSocketGateway(
        websocket_routes(module),
        host=args.host,
        port=args.port,
        stage=args.stage,
        api_id=args.api_id,
        limits=Limits(idle_timeout=args.idle_timeout, max_duration=args.max_duration),
        workers=args.workers,
        status_path=args.status_file,
    )
    stopping = threading.Event()
    set_on_signals(stopping)
    try:
        gateway.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    point_chalice_at(module, gateway.management_endpoint)
    logger.info(
        "serving %s (routes %s); @connections at %s",
        gateway.websocket_url,
        ", ".join(sorted(gateway.routes)) or "none",
        gateway.management_endpoint,
    )
    while not stopping.wait(1.0):
        pass
    gateway.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
