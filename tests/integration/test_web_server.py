"""The dashboard's origin (infra/web_server.py) over real sockets: the built files, and the
API and the WebSocket API passed through on the same origin, with a stand-in for each."""

from __future__ import annotations

import gzip
import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import Server, ServerConnection, serve

from infra.local_stack import free_port
from infra.web_server import CONTENT_SECURITY_POLICY, DashboardServer, Upstreams
from iot.lifecycle import read_status

INDEX = "<!doctype html><title>dashboard</title><script src='./assets/app-1a2b.js'></script>"
SCRIPT = "console.log('the dashboard');\n" * 200


class FakeApi(BaseHTTPRequestHandler):
    """Answers every POST with what it received, as JSON-RPC would answer."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        FakeApi.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        answer = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"echo": body.decode()}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "dist" / "assets").mkdir(parents=True)
    (tmp_path / "dist" / "index.html").write_text(INDEX)
    (tmp_path / "dist" / "assets" / "app-1a2b.js").write_text(SCRIPT)
    (tmp_path / "secret.txt").write_text("outside the build")
    return tmp_path / "dist"


@pytest.fixture
def api() -> Iterator[str]:
    FakeApi.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def websocket() -> Iterator[str]:
    """An echo server at /api that also says which path and query it was opened with."""

    def echo(connection: ServerConnection) -> None:
        assert connection.request is not None
        connection.send(f"opened {connection.request.path}")
        for message in connection:
            connection.send(f"echo {message!s}")

    server: Server = serve(echo, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/api"
    server.shutdown()


def _serve(dist: Path, api: str, websocket: str, tmp_path: Path) -> DashboardServer:
    return DashboardServer(
        dist,
        Upstreams.parse(api, websocket),
        port=0,
        status_path=tmp_path / "status.json",
    )


def _get(
    port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[http.client.HTTPResponse, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, headers=headers or {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body


def test_the_built_app_is_served_with_its_caching_and_security_headers(
    dist: Path, api: str, websocket: str, tmp_path: Path
) -> None:
    with _serve(dist, api, websocket, tmp_path) as server:
        page, body = _get(server.port, "/")
        asset, script = _get(server.port, "/assets/app-1a2b.js", {"Accept-Encoding": "gzip"})

    assert page.status == 200 and body.decode() == INDEX
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Cache-Control"] == "no-cache"  # a new build is seen at once
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "connect-src 'self'" in CONTENT_SECURITY_POLICY
    assert asset.status == 200
    assert asset.headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert asset.headers["Content-Encoding"] == "gzip"
    assert len(script) < len(SCRIPT) / 10
    assert gzip.decompress(script).decode() == SCRIPT


def test_nothing_outside_the_build_is_served(
    dist: Path, api: str, websocket: str, tmp_path: Path
) -> None:
    with _serve(dist, api, websocket, tmp_path) as server:
        statuses = [
            _get(server.port, path)[0].status
            for path in (
                "/../secret.txt",
                "/%2e%2e/secret.txt",
                "/assets/../../secret.txt",
                "/nope",
            )
        ]
        post, _ = _get(server.port, "/index.html", method="POST")

    assert statuses == [404, 404, 404, 404]
    assert post.status == 405


def test_without_a_build_the_page_says_what_to_run_and_the_api_still_passes(
    tmp_path: Path, api: str, websocket: str
) -> None:
    with _serve(tmp_path / "no-dist", api, websocket, tmp_path) as server:
        page, body = _get(server.port, "/")
        status = read_status(tmp_path / "status.json")

    assert page.status == 503
    assert "make web" in body.decode()
    assert status["listening"] is True and status["built"] is False


def test_rpc_calls_pass_to_the_api_and_its_answer_comes_back(
    dist: Path, api: str, websocket: str, tmp_path: Path
) -> None:
    request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "energy.getMarketStats"})
    with _serve(dist, api, websocket, tmp_path) as server:
        port = server.port
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        # Two calls on one keep-alive connection, as a browser sends them.
        answers = []
        for _ in range(2):
            connection.request(
                "POST", "/rpc", body=request, headers={"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            answers.append((response.status, json.loads(response.read())))
        connection.close()
        server.write_status()
        status = read_status(tmp_path / "status.json")

    assert answers == [(200, {"jsonrpc": "2.0", "id": 1, "result": {"echo": request}})] * 2
    assert [seen["path"] for seen in FakeApi.seen] == ["/rpc", "/rpc"]
    headers = FakeApi.seen[0]["headers"]
    assert headers["X-Forwarded-For"] == "127.0.0.1"
    assert headers["X-Forwarded-Host"] == f"127.0.0.1:{port}"
    assert status["rpc"] == 2 and status["rpc_failed"] == 0


def test_an_api_that_does_not_answer_gives_502(dist: Path, websocket: str, tmp_path: Path) -> None:
    closed_port = free_port()
    with _serve(dist, f"http://127.0.0.1:{closed_port}", websocket, tmp_path) as server:
        response, body = _get(server.port, "/openrpc.json")

    assert response.status == 502
    assert b"did not answer" in body


def test_a_websocket_at_ws_reaches_the_gateways_stage_with_its_query(
    dist: Path, api: str, websocket: str, tmp_path: Path
) -> None:
    with (
        _serve(dist, api, websocket, tmp_path) as server,
        ws_connect(f"ws://127.0.0.1:{server.port}/ws?token=abc", proxy=None) as client,
    ):
        opened = client.recv(timeout=5)
        client.send("ping")
        echoed = client.recv(timeout=5)
        client.send("x" * 100_000)  # frames bigger than one read pass whole
        large = client.recv(timeout=5)

    assert opened == "opened /api?token=abc"
    assert echoed == "echo ping"
    assert large == "echo " + "x" * 100_000


def test_a_plain_get_of_ws_is_told_to_upgrade(
    dist: Path, api: str, websocket: str, tmp_path: Path
) -> None:
    with _serve(dist, api, websocket, tmp_path) as server:
        response, _ = _get(server.port, "/ws")

    assert response.status == 426
    assert response.headers["Upgrade"] == "websocket"
