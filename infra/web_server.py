"""The local stand-in for CloudFront in front of the dashboard: one origin that serves the
built single-page app (``web/dist``, as S3 would) and passes ``/rpc`` to the JSON-RPC API and
``/ws`` to the WebSocket API, so the page reaches both from its own origin.

- ``GET /`` and the files under ``web/dist``: ``index.html`` is never cached (a new build is
  seen at once); Vite's content-hashed ``assets/`` are cached for a year. Text is sent
  gzip-compressed to clients that accept it, as CloudFront's automatic compression does.
  Every page carries a Content-Security-Policy that allows scripts, styles and connections
  to this origin only.
- ``POST /rpc`` and ``GET /openrpc.json``: passed to the API (``chalice local``) with
  ``X-Forwarded-For`` and ``X-Forwarded-Host``; its answer comes back as it is. An API
  that does not answer gives 502, as CloudFront gives.
- ``GET /ws`` with ``Upgrade: websocket``: the handshake goes to the WebSocket gateway at
  ``/{stage}`` (the query string, which may carry a token, kept), then the bytes of both
  directions are copied until either side closes.

Without a build (no ``index.html``) the pages answer 503 with what to run (``make web``);
the API and the WebSocket still pass. Counters go to ``--status-file``.

    python -m infra.web_server --port 8080 --dist web/dist --api http://127.0.0.1:8000 \
        --websocket ws://127.0.0.1:8001/api --status-file .local/web/status.json
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import io
import logging
import mimetypes
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from iot.lifecycle import StartStop, set_on_signals, write_status

logger = logging.getLogger("infra.web_server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
RPC_PATHS = ("/rpc", "/openrpc.json")
WEBSOCKET_PATH = "/ws"
# The largest request body passed to the API: its own limit is 1 MiB (docs/api.md).
MAX_BODY_BYTES = 1024 * 1024 + 1
UPSTREAM_TIMEOUT_SECONDS = 30.0
KEEPALIVE_SECONDS = 60.0
STATUS_SECONDS = 2.0
COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml")
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
NOT_BUILT = (
    "The dashboard is not built: there is no index.html in {dist}.\n"
    "Run `make web` (npm ci and npm run build in web/), then reload this page.\n"
)
# Headers that describe one hop, never passed on (RFC 9110, section 7.6.1).
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
}


@dataclass(frozen=True)
class Upstreams:
    """Where ``/rpc`` and ``/ws`` go: the API's base URL and the WebSocket API's URL."""

    api: urllib.parse.SplitResult
    websocket: urllib.parse.SplitResult

    @classmethod
    def parse(cls, api_url: str, websocket_url: str) -> Upstreams:
        api = urllib.parse.urlsplit(api_url)
        websocket = urllib.parse.urlsplit(websocket_url)
        if api.scheme != "http" or api.hostname is None:
            raise ValueError(f"the API URL must be http://host:port, not {api_url!r}")
        if websocket.scheme != "ws" or websocket.hostname is None:
            raise ValueError(
                f"the WebSocket URL must be ws://host:port/stage, not {websocket_url!r}"
            )
        return cls(api, websocket)


@dataclass
class Counters:
    """What the server has done, for the status file (every field is read under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    files: int = 0
    not_found: int = 0
    rpc: int = 0
    rpc_failed: int = 0
    websockets_opened: int = 0
    websockets_open: int = 0
    websockets_failed: int = 0

    def add(self, **changes: int) -> None:
        with self.lock:
            for name, change in changes.items():
                setattr(self, name, getattr(self, name) + change)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {
                name: getattr(self, name)
                for name in (
                    "files",
                    "not_found",
                    "rpc",
                    "rpc_failed",
                    "websockets_opened",
                    "websockets_open",
                    "websockets_failed",
                )
            }


class StaticFiles:
    """The built app's files, and their gzip form made once per file version."""

    def __init__(self, dist: Path) -> None:
        self.dist = dist.resolve()
        self._gzipped: dict[tuple[Path, int], bytes] = {}
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return (self.dist / "index.html").is_file()

    def find(self, url_path: str) -> Path | None:
        """The file a URL path names inside the build, or None (never a path outside it)."""
        relative = urllib.parse.unquote(url_path).lstrip("/") or "index.html"
        candidate = (self.dist / relative).resolve()
        if not candidate.is_relative_to(self.dist) or not candidate.is_file():
            return None
        return candidate

    def gzipped(self, path: Path) -> bytes:
        version = (path, path.stat().st_mtime_ns)
        with self._lock:
            cached = self._gzipped.get(version)
        if cached is None:
            cached = gzip.compress(path.read_bytes(), compresslevel=9, mtime=0)
            with self._lock:
                self._gzipped[version] = cached
        return cached


def content_type(path: Path) -> str:
    if path.suffix in (".js", ".mjs"):
        return "application/javascript; charset=utf-8"
    guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


class DashboardHandler(BaseHTTPRequestHandler):
    """One connection: static files, the API passed through, or a WebSocket tunnel."""

    protocol_version = "HTTP/1.1"
    server_version = "EnergyMarketplaceWeb/1"
    # An idle keep-alive connection is closed after this long (a tunnel lifts it).
    timeout = KEEPALIVE_SECONDS
    # Set on the subclass each server makes.
    files: ClassVar[StaticFiles]
    upstreams: ClassVar[Upstreams]
    counters: ClassVar[Counters]

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    # --- routing ---------------------------------------------------------------------

    def _path(self) -> str:
        return urllib.parse.urlsplit(self.path).path

    def do_GET(self) -> None:
        path = self._path()
        if path == WEBSOCKET_PATH or path.startswith(WEBSOCKET_PATH + "/"):
            self._tunnel_websocket()
        elif path in RPC_PATHS:
            self._pass_to_api()
        else:
            self._serve_file(path, head=False)

    def do_HEAD(self) -> None:
        self._serve_file(self._path(), head=True)

    def do_POST(self) -> None:
        if self._path() in RPC_PATHS:
            self._pass_to_api()
        else:
            self._answer(
                HTTPStatus.METHOD_NOT_ALLOWED, b"only /rpc takes POST\n", allow="GET, HEAD"
            )

    # --- answers ---------------------------------------------------------------------

    def _answer(
        self,
        status: HTTPStatus,
        body: bytes,
        *,
        content_type: str = "text/plain; charset=utf-8",
        head: bool = False,
        **headers: str,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-").title(), value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _serve_file(self, url_path: str, *, head: bool) -> None:
        if not self.files.built:
            self.counters.add(not_found=1)
            body = NOT_BUILT.format(dist=self.files.dist).encode()
            self._answer(HTTPStatus.SERVICE_UNAVAILABLE, body, head=head, cache_control="no-store")
            return
        path = self.files.find(url_path)
        if path is None:
            self.counters.add(not_found=1)
            self._answer(HTTPStatus.NOT_FOUND, b"not found\n", head=head)
            return
        kind = content_type(path)
        accepts_gzip = "gzip" in (self.headers.get("Accept-Encoding") or "")
        compress = accepts_gzip and kind.startswith(COMPRESSIBLE)
        body = self.files.gzipped(path) if compress else path.read_bytes()
        # Vite names assets by content hash: a new build is a new name.
        immutable = path.parent.name == "assets"
        headers = {
            "cache_control": "public, max-age=31536000, immutable" if immutable else "no-cache",
            "vary": "Accept-Encoding",
            "x_content_type_options": "nosniff",
            "referrer_policy": "no-referrer",
        }
        if compress:
            headers["content_encoding"] = "gzip"
        if path.suffix == ".html":
            headers["content_security_policy"] = CONTENT_SECURITY_POLICY
        self.counters.add(files=1)
        self._answer(HTTPStatus.OK, body, content_type=kind, head=head, **headers)

    # --- the API ---------------------------------------------------------------------

    def _pass_to_api(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            # Read nothing more: the connection closes after this answer.
            self.close_connection = True
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"request body too large\n")
            return
        body = self.rfile.read(length) if length else None
        api = self.upstreams.api
        headers = {
            name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP
        }
        headers["X-Forwarded-For"] = self.client_address[0]
        headers["X-Forwarded-Host"] = self.headers.get("Host", "")
        headers["X-Forwarded-Proto"] = "http"
        connection = http.client.HTTPConnection(
            api.hostname or DEFAULT_HOST, api.port or 80, timeout=UPSTREAM_TIMEOUT_SECONDS
        )
        try:
            connection.request(self.command, api.path.rstrip("/") + self.path, body, headers)
            upstream = connection.getresponse()
            answer = upstream.read()
        except (OSError, http.client.HTTPException) as exc:
            self.counters.add(rpc_failed=1)
            logger.warning("the API at %s did not answer: %s", api.geturl(), exc)
            self._answer(
                HTTPStatus.BAD_GATEWAY,
                f"the marketplace API did not answer ({type(exc).__name__})\n".encode(),
            )
            return
        finally:
            connection.close()
        self.counters.add(rpc=1)
        self.send_response(upstream.status, upstream.reason)
        for name, value in upstream.getheaders():
            if name.lower() not in _HOP_BY_HOP and name.lower() not in ("server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(answer)

    # --- the WebSocket API -------------------------------------------------------------

    def _tunnel_websocket(self) -> None:
        """Pass the handshake to the gateway, then copy bytes both ways until one side ends."""
        self.close_connection = True  # after a tunnel, this connection carries nothing else
        if "websocket" not in (self.headers.get("Upgrade") or "").lower():
            self._answer(
                HTTPStatus.UPGRADE_REQUIRED, b"/ws is the WebSocket API\n", upgrade="websocket"
            )
            return
        target = self.upstreams.websocket
        query = urllib.parse.urlsplit(self.path).query
        path = (target.path or "/") + (f"?{query}" if query else "")
        try:
            upstream = socket.create_connection(
                (target.hostname or DEFAULT_HOST, target.port or 80), timeout=10
            )
        except OSError as exc:
            self.counters.add(websockets_failed=1)
            logger.warning("the WebSocket gateway at %s did not answer: %s", target.geturl(), exc)
            self._answer(HTTPStatus.BAD_GATEWAY, b"the WebSocket API did not answer\n")
            return
        head = [f"GET {path} HTTP/1.1", f"Host: {target.netloc}"]
        for name, value in self.headers.items():
            if name.lower() != "host":
                head.append(f"{name}: {value}")
        head.append(f"X-Forwarded-For: {self.client_address[0]}")
        # A WebSocket stays open while idle (API Gateway allows 10 minutes without a message).
        upstream.settimeout(None)
        self.connection.settimeout(None)
        self.counters.add(websockets_opened=1, websockets_open=1)
        try:
            upstream.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            self.wfile.flush()
            _splice(self.connection, self.rfile, upstream)
        except OSError as exc:
            logger.debug("a WebSocket tunnel ended: %s", exc)
        finally:
            self.counters.add(websockets_open=-1)
            with contextlib.suppress(OSError):
                upstream.close()


def _splice(
    client: socket.socket, client_reader: io.BufferedIOBase, upstream: socket.socket
) -> None:
    """Copy bytes between the client and the upstream until either side closes.

    The client's bytes are read through ``client_reader`` (``read1``), which first hands
    over what the request parser already buffered. Two threads, one per direction; the
    first to finish shuts both sockets down, which ends the other.
    """

    def close_both() -> None:
        for end in (client, upstream):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def client_to_upstream() -> None:
        try:
            while data := client_reader.read1(65536):
                upstream.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            close_both()

    forward = threading.Thread(target=client_to_upstream, name="ws-tunnel-in", daemon=True)
    forward.start()
    try:
        while data := upstream.recv(65536):
            client.sendall(data)
    except OSError:
        pass
    finally:
        close_both()
        forward.join(timeout=5)


class DashboardServer(StartStop):
    """The static server and proxy on ``host:port`` (port 0: a free one), in threads."""

    def __init__(
        self,
        dist: Path,
        upstreams: Upstreams,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        status_path: Path | None = None,
    ) -> None:
        self.files = StaticFiles(dist)
        self.upstreams = upstreams
        self.host = host
        self.requested_port = port
        self.status_path = status_path
        self.counters = Counters()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the web server is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def status(self) -> dict[str, Any]:
        return {
            "listening": self._server is not None,
            "url": self.url if self._server is not None else None,
            "dist": str(self.files.dist),
            "built": self.files.built,
            "api": self.upstreams.api.geturl(),
            "websocket": self.upstreams.websocket.geturl(),
            **self.counters.snapshot(),
        }

    def write_status(self) -> None:
        if self.status_path is not None:
            write_status(self.status_path, self.status())

    def start(self) -> None:
        handler = type(
            "BoundDashboardHandler",
            (DashboardHandler,),
            {"files": self.files, "upstreams": self.upstreams, "counters": self.counters},
        )
        server = ThreadingHTTPServer((self.host, self.requested_port), handler)
        server.daemon_threads = True
        self._server = server
        self._stopping.clear()
        self._threads = [
            threading.Thread(target=server.serve_forever, name="web-server", daemon=True),
            threading.Thread(target=self._report, name="web-status", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.write_status()

    def _report(self) -> None:
        while not self._stopping.wait(STATUS_SECONDS):
            self.write_status()

    def stop(self) -> None:
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m infra.web_server", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--dist", type=Path, required=True, help="the built app (web/dist)")
    parser.add_argument("--api", required=True, help="the API's base URL: http://HOST:PORT")
    parser.add_argument(
        "--websocket", required=True, help="the WebSocket API: ws://HOST:PORT/STAGE"
    )
    parser.add_argument("--status-file", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        upstreams = Upstreams.parse(args.api, args.websocket)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = DashboardServer(
        args.dist, upstreams, host=args.host, port=args.port, status_path=args.status_file
    )
    stopping = threading.Event()
    set_on_signals(stopping)
    try:
        server.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    if not server.files.built:
        logger.warning("no build in %s: pages answer 503 until `make web` builds it", args.dist)
    logger.info("serving %s (/rpc -> %s, /ws -> %s)", server.url, args.api, args.websocket)
    started = time.monotonic()
    while not stopping.wait(1.0):
        pass
    logger.info("stopping after %.0f s", time.monotonic() - started)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
