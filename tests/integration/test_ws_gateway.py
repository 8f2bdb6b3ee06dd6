"""The local stand-in for API Gateway's WebSocket API, over real sockets.

A small Chalice app defined here has its own WebSocket handlers; the echo
pushes back through a real boto3 ``apigatewaymanagementapi`` client pointed
at the gateway, as the marketplace's fan-out does.
"""

from __future__ import annotations

import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from chalice import Chalice
from chalice.app import WebsocketEvent
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from infra.local_stack import free_port
from infra.ws_gateway import (
    FRAME_LIMIT_BYTES,
    MESSAGE_LIMIT_BYTES,
    Limits,
    WebSocketGateway,
    point_chalice_at,
    websocket_routes,
)
from iot.lifecycle import read_status

app = Chalice(app_name="ws-gateway-test")
app.experimental_feature_flags.update({"WEBSOCKETS"})
app.websocket_api.session = boto3.session.Session(
    aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
)

# API Gateway's ids: 11 random bytes in base64 (16 characters, one "=").
CONNECTION_ID = re.compile(r"^[A-Za-z0-9+/]{15}=$")


class Recorder:
    """The events the handlers received and what they saw, from the gateway's threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.early_posts: list[str] = []
        self.management: Any = None

    def add(self, event: dict[str, Any]) -> None:
        with self.lock:
            self.events.append(event)

    def routed(self, route_key: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e["requestContext"]["routeKey"] == route_key]

    def wait_for(
        self, route_key: str, count: int = 1, timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.routed(route_key)) < count:
            assert time.monotonic() < deadline, (route_key, self.events)
            time.sleep(0.01)
        return self.routed(route_key)


RECORDER = Recorder()


@app.on_ws_connect()
def connect(event: WebsocketEvent) -> dict[str, Any]:
    RECORDER.add(event.to_dict())
    parameters = event.to_dict()["queryStringParameters"] or {}
    if "refuse" in parameters:
        return {"statusCode": int(parameters["refuse"]), "body": "not you"}
    if "crash" in parameters:
        raise RuntimeError("the $connect function failed")
    if "early" in parameters:
        try:  # API Gateway refuses pushes before $connect has returned
            RECORDER.management.post_to_connection(ConnectionId=event.connection_id, Data=b"x")
        except ClientError as exc:
            RECORDER.early_posts.append(exc.response["Error"]["Code"])
    return {"statusCode": 200}


@app.on_ws_message()
def message(event: WebsocketEvent) -> None:
    RECORDER.add(event.to_dict())
    if event.body == "boom":
        raise RuntimeError("the $default function failed")
    if event.body.startswith("chalice:"):
        app.websocket_api.send(event.connection_id, "via chalice")
        return
    RECORDER.management.post_to_connection(
        ConnectionId=event.connection_id, Data=f"echo:{event.body}".encode()
    )


@app.on_ws_disconnect()
def disconnect(event: WebsocketEvent) -> None:
    RECORDER.add(event.to_dict())


def management_client(endpoint: str) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


GatewayFactory = Callable[..., WebSocketGateway]


@pytest.fixture
def start_gateway(aws_credentials: None) -> Iterator[GatewayFactory]:
    """Start gateways serving this module's app; each is stopped at the end of the test."""
    started: list[WebSocketGateway] = []
    module = sys.modules[__name__]

    def start(**options: Any) -> WebSocketGateway:
        gateway = WebSocketGateway(websocket_routes(module), port=options.pop("port", 0), **options)
        gateway.start()
        started.append(gateway)
        point_chalice_at(module, gateway.management_endpoint)
        RECORDER.management = management_client(gateway.management_endpoint)
        return gateway

    with RECORDER.lock:
        RECORDER.events.clear()
        RECORDER.early_posts.clear()
    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def gateway(start_gateway: GatewayFactory) -> WebSocketGateway:
    return start_gateway()


def open_client(url: str, **options: Any) -> ClientConnection:
    return ws_connect(url, proxy=None, open_timeout=5, **options)


def connection_id_of(route_key: str = "$connect", index: int = -1) -> str:
    connection_id: str = RECORDER.wait_for(route_key)[index]["requestContext"]["connectionId"]
    return connection_id


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    code: str = exc.value.response["Error"]["Code"]
    return code


def close_code(client: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=5)
    return None if closed.value.rcvd is None else closed.value.rcvd.code


def keep_talking(client: ClientConnection) -> None:
    """Send and receive until the gateway closes the connection."""
    while True:
        client.send("busy")
        client.recv(timeout=5)
        time.sleep(0.05)


# --- connecting ----------------------------------------------------------------------------


def test_connect_invokes_the_handler_with_an_api_gateway_event(gateway: WebSocketGateway) -> None:
    with open_client(
        f"{gateway.websocket_url}?token=abc&topic=a&topic=b",
        additional_headers={"X-Client": "test"},
        user_agent_header="watcher/1.0",
    ):
        (event,) = RECORDER.wait_for("$connect")

    context = event["requestContext"]
    assert CONNECTION_ID.match(context["connectionId"]), context["connectionId"]
    assert {k: context[k] for k in ("routeKey", "eventType", "messageDirection", "stage")} == {
        "routeKey": "$connect",
        "eventType": "CONNECT",
        "messageDirection": "IN",
        "stage": "api",
    }
    assert context["apiId"] == gateway.api_id
    assert context["domainName"] == f"127.0.0.1:{gateway.port}"
    assert context["connectedAt"] == context["requestTimeEpoch"]
    assert abs(context["connectedAt"] - time.time() * 1000) < 10_000
    assert context["requestId"] != context["extendedRequestId"]
    assert context["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "watcher/1.0"}
    assert event["queryStringParameters"] == {"token": "abc", "topic": "b"}
    assert event["multiValueQueryStringParameters"] == {"token": ["abc"], "topic": ["a", "b"]}
    assert event["headers"]["X-Client"] == "test"
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["isBase64Encoded"] is False


def test_a_url_without_a_query_string_gives_null_parameters(gateway: WebSocketGateway) -> None:
    # Both the stage path and the bare root are served.
    with open_client(f"ws://127.0.0.1:{gateway.port}/"):
        (event,) = RECORDER.wait_for("$connect")
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None


def test_each_connection_gets_its_own_id(gateway: WebSocketGateway) -> None:
    with open_client(gateway.websocket_url), open_client(gateway.websocket_url):
        events = RECORDER.wait_for("$connect", 2)
    assert len({e["requestContext"]["connectionId"] for e in events}) == 2


def test_a_push_during_connect_is_gone_as_in_aws(gateway: WebSocketGateway) -> None:
    with open_client(f"{gateway.websocket_url}?early=1"):
        RECORDER.wait_for("$connect")
    assert RECORDER.early_posts == ["GoneException"]


@pytest.mark.parametrize(("query", "status"), [("refuse=403", 403), ("refuse=401", 401)])
def test_a_connect_handler_that_refuses_refuses_the_upgrade(
    gateway: WebSocketGateway, query: str, status: int
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        open_client(f"{gateway.websocket_url}?{query}")

    assert refused.value.response.status_code == status
    assert refused.value.response.body == b"not you"
    assert gateway.status()["connections_refused"] == 1
    assert gateway.status()["connections_open"] == 0
    time.sleep(0.1)
    assert RECORDER.routed("$disconnect") == []  # it never connected


def test_a_connect_handler_that_raises_refuses_with_500_and_the_gateway_goes_on(
    gateway: WebSocketGateway,
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        open_client(f"{gateway.websocket_url}?crash=1")
    assert refused.value.response.status_code == 500
    assert gateway.status()["handler_errors"]["$connect"] == 1

    with open_client(gateway.websocket_url) as client:
        client.send("still here")
        assert client.recv(timeout=5) == "echo:still here"


def test_another_path_than_the_stage_is_forbidden(gateway: WebSocketGateway) -> None:
    with pytest.raises(InvalidStatus) as refused:
        open_client(f"ws://127.0.0.1:{gateway.port}/elsewhere")
    assert refused.value.response.status_code == 403
    assert RECORDER.routed("$connect") == []


# --- messages ------------------------------------------------------------------------------


def test_messages_reach_the_default_handler_in_order_and_echo_back(
    gateway: WebSocketGateway,
) -> None:
    with open_client(gateway.websocket_url) as first, open_client(gateway.websocket_url) as second:
        for n in range(20):
            first.send(f"a{n}")
            second.send(f"b{n}")
        assert [first.recv(timeout=5) for _ in range(20)] == [f"echo:a{n}" for n in range(20)]
        assert [second.recv(timeout=5) for _ in range(20)] == [f"echo:b{n}" for n in range(20)]

    messages = RECORDER.routed("$default")
    first_id = connection_id_of(index=0)
    assert [m["body"] for m in messages if m["requestContext"]["connectionId"] == first_id] == [
        f"a{n}" for n in range(20)
    ]
    context = messages[0]["requestContext"]
    assert (context["routeKey"], context["eventType"]) == ("$default", "MESSAGE")
    assert CONNECTION_ID.match(context["messageId"])
    assert messages[0]["isBase64Encoded"] is False
    assert gateway.status()["messages_in"] == 40
    assert gateway.status()["messages_out"] == 40


def test_a_failing_message_handler_sends_nothing_and_the_connection_goes_on(
    gateway: WebSocketGateway,
) -> None:
    with open_client(gateway.websocket_url) as client:
        client.send("boom")
        client.send("after")
        assert client.recv(timeout=5) == "echo:after"
    assert gateway.status()["handler_errors"]["$default"] == 1
    assert "RuntimeError: the $default function failed" in gateway.status()["last_error"]


def test_chalices_own_websocket_api_sends_through_the_gateway(gateway: WebSocketGateway) -> None:
    with open_client(gateway.websocket_url) as client:
        client.send("chalice:hello")
        assert client.recv(timeout=5) == "via chalice"


# --- the management API --------------------------------------------------------------------


def test_get_connection_answers_when_and_from_where(gateway: WebSocketGateway) -> None:
    management = management_client(gateway.management_endpoint)
    with open_client(gateway.websocket_url, user_agent_header="watcher/1.0") as client:
        connection_id = connection_id_of()
        before = management.get_connection(ConnectionId=connection_id)
        time.sleep(0.05)
        client.send("ping")
        client.recv(timeout=5)
        after = management.get_connection(ConnectionId=connection_id)

    assert before["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "watcher/1.0"}
    assert before["ConnectedAt"] == before["LastActiveAt"] == after["ConnectedAt"]
    assert after["LastActiveAt"] > before["LastActiveAt"]


def test_a_large_push_arrives_whole_and_a_too_large_one_is_refused(
    gateway: WebSocketGateway,
) -> None:
    management = management_client(gateway.management_endpoint)
    with open_client(gateway.websocket_url) as client:
        connection_id = connection_id_of()
        management.post_to_connection(ConnectionId=connection_id, Data=b"x" * MESSAGE_LIMIT_BYTES)
        assert client.recv(timeout=5) == "x" * MESSAGE_LIMIT_BYTES

        with pytest.raises(ClientError) as refused:
            management.post_to_connection(
                ConnectionId=connection_id, Data=b"x" * (MESSAGE_LIMIT_BYTES + 1)
            )
        assert error_code(refused) == "PayloadTooLargeException"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def test_delete_connection_closes_the_client_and_it_is_gone_after(
    gateway: WebSocketGateway,
) -> None:
    management = management_client(gateway.management_endpoint)
    with open_client(gateway.websocket_url) as client:
        connection_id = connection_id_of()
        answer = management.delete_connection(ConnectionId=connection_id)
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 204
        assert close_code(client) == 1000

    for call in (management.post_to_connection, management.get_connection):
        kwargs = {"Data": b"late"} if call == management.post_to_connection else {}
        with pytest.raises(ClientError) as gone:
            call(ConnectionId=connection_id, **kwargs)
        assert error_code(gone) == "GoneException"
        assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    (event,) = RECORDER.wait_for("$disconnect")
    assert event["requestContext"]["connectionId"] == connection_id
    assert event["requestContext"]["disconnectStatusCode"] == 1000
    assert gateway.status()["deleted"] == 1


def test_an_unknown_connection_is_gone(gateway: WebSocketGateway) -> None:
    management = management_client(gateway.management_endpoint)
    for call, kwargs in (
        (management.post_to_connection, {"Data": b"hello"}),
        (management.get_connection, {}),
        (management.delete_connection, {}),
    ):
        with pytest.raises(ClientError) as gone:
            call(ConnectionId="AAAAAAAAAAAAAAA=", **kwargs)
        assert error_code(gone) == "GoneException"
    assert gateway.status()["gone"] == 3
    assert gateway.status()["pushes"] == 1


def test_a_push_after_the_client_closed_is_gone(gateway: WebSocketGateway) -> None:
    management = management_client(gateway.management_endpoint)
    with open_client(gateway.websocket_url):
        connection_id = connection_id_of()
    RECORDER.wait_for("$disconnect")
    with pytest.raises(ClientError) as gone:
        management.post_to_connection(ConnectionId=connection_id, Data=b"too late")
    assert error_code(gone) == "GoneException"


def test_another_stage_of_the_management_api_is_forbidden(gateway: WebSocketGateway) -> None:
    management = management_client(f"http://127.0.0.1:{gateway.port}/other")
    with open_client(gateway.websocket_url):
        connection_id = connection_id_of()
        with pytest.raises(ClientError) as forbidden:
            management.get_connection(ConnectionId=connection_id)
    assert error_code(forbidden) == "ForbiddenException"


# --- disconnecting and API Gateway's limits ------------------------------------------------


def test_a_client_that_closes_gets_its_disconnect_with_its_code(gateway: WebSocketGateway) -> None:
    with open_client(gateway.websocket_url) as client:
        connection_id = connection_id_of()
        client.close(code=4000, reason="bye")

    (event,) = RECORDER.wait_for("$disconnect")
    context = event["requestContext"]
    assert (context["connectionId"], context["eventType"]) == (connection_id, "DISCONNECT")
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (4000, "bye")
    assert gateway.status()["connections_open"] == 0


def test_a_client_that_drops_gets_its_disconnect(gateway: WebSocketGateway) -> None:
    with open_client(gateway.websocket_url) as client:
        connection_id = connection_id_of()
        # Gone without a close frame, as a killed process or a lost network leaves it.
        client.socket.shutdown(socket.SHUT_RDWR)

    (event,) = RECORDER.wait_for("$disconnect")
    assert event["requestContext"]["connectionId"] == connection_id
    assert event["requestContext"]["disconnectStatusCode"] == 1006


def test_an_idle_connection_is_closed_and_a_message_keeps_it_open(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway(limits=Limits(idle_timeout=0.5))
    with open_client(gateway.websocket_url) as client:
        for n in range(6):  # 0.6 s and more in all, each message well within the idle timeout
            time.sleep(0.1)
            client.send(f"keep {n}")
            assert client.recv(timeout=5) == f"echo:keep {n}"
        assert close_code(client) == 1001

    (event,) = RECORDER.wait_for("$disconnect")
    assert event["requestContext"]["disconnectStatusCode"] == 1001
    assert gateway.status()["closed_idle"] == 1


def test_a_connection_is_closed_at_its_maximum_duration(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(limits=Limits(max_duration=0.4))
    started = time.monotonic()
    with open_client(gateway.websocket_url) as client, pytest.raises(ConnectionClosed) as closed:
        keep_talking(client)  # never idle
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert 0.3 < time.monotonic() - started < 3
    assert gateway.status()["closed_max_duration"] == 1


def test_frames_and_messages_beyond_api_gateways_limits_close_the_connection(
    gateway: WebSocketGateway,
) -> None:
    # A message of several frames, each within the frame limit, is one message.
    with open_client(gateway.websocket_url) as client:
        fragments = ["y" * FRAME_LIMIT_BYTES] * 3
        client.send(fragments)
        assert client.recv(timeout=5) == "echo:" + "".join(fragments)

    with open_client(gateway.websocket_url) as client:
        client.send("z" * (FRAME_LIMIT_BYTES + 1))  # one frame over the limit
        assert close_code(client) == 1009

    with open_client(gateway.websocket_url) as client:
        client.send(["z" * FRAME_LIMIT_BYTES] * 5)  # every frame fits, the message does not
        assert close_code(client) == 1009

    with open_client(gateway.websocket_url) as client:
        client.send(b"\x00binary")  # API Gateway takes text frames only
        assert close_code(client) == 1003

    events = RECORDER.wait_for("$disconnect", 4)
    assert [e["requestContext"]["disconnectStatusCode"] for e in events[1:]] == [1009, 1009, 1003]


# --- the gateway itself --------------------------------------------------------------------


def test_clients_reconnect_to_a_restarted_gateway_on_the_same_port(
    start_gateway: GatewayFactory,
) -> None:
    port = free_port()
    first = start_gateway(port=port)
    with open_client(first.websocket_url) as client:
        old_id = connection_id_of()
        first.stop()
        assert close_code(client) == 1001  # going away
    (event,) = RECORDER.wait_for("$disconnect")
    assert event["requestContext"]["connectionId"] == old_id

    second = start_gateway(port=port)
    with open_client(second.websocket_url) as client:
        new_id = connection_id_of()
        client.send("again")
        assert client.recv(timeout=5) == "echo:again"
        with pytest.raises(ClientError) as gone:
            management_client(second.management_endpoint).post_to_connection(
                ConnectionId=old_id, Data=b"from before"
            )
    assert error_code(gone) == "GoneException"
    assert new_id != old_id


def test_a_busy_port_fails_the_start(start_gateway: GatewayFactory) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        with pytest.raises(OSError, match="address already in use"):
            start_gateway(port=squatter.getsockname()[1])


def test_counters_reach_the_status_file(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    status_path = tmp_path / "status.json"
    gateway = start_gateway(status_path=status_path)
    assert read_status(status_path)["listening"] is True
    with open_client(gateway.websocket_url) as client:
        client.send("counted")
        client.recv(timeout=5)
    RECORDER.wait_for("$disconnect")
    gateway.stop()

    status = read_status(status_path)
    assert status["listening"] is False
    assert {
        k: status[k] for k in ("connections_open", "messages_in", "messages_out", "pushes")
    } == {
        "connections_open": 0,
        "messages_in": 1,
        "messages_out": 1,
        "pushes": 1,
    }
    assert status["websocket_url"] == gateway.websocket_url
    assert status["routes"] == ["$connect", "$default", "$disconnect"]
