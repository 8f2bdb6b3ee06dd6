"""``LocalStack``: moto, its resources, mosquitto, the bridge, the jobs, the stream poller,
``chalice local``, the WebSocket gateway, the dashboard's web server and the demo fleet,
started in that order and stopped in reverse."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO, Any

from nacl.signing import SigningKey

from infra.emulation import INGEST_DEAD_LETTER_QUEUE_ID
from infra.local import bootstrap, processes, report
from infra.local.errors import LocalStackError
from infra.local.options import (
    DEFAULT_API_PORT,
    DEFAULT_HOST,
    DEFAULT_JOBS_INTERVAL_SECONDS,
    DEFAULT_MOTO_PORT,
    DEFAULT_STACK_NAME,
    DEFAULT_STATE_DIR,
    PROJECT_DIR,
    WEB_DIST_DIR,
    DemoOptions,
    api_gateway_stage,
    application_environment,
)
from infra.moto_server import LocalMotoServer
from iot import rules_bridge
from iot.broker import Broker
from iot.ca import CertificateAuthority
from iot.lifecycle import StartStop


class LocalStack(report.StateFiles, StartStop):
    """moto + resources from the template + mosquitto + rules bridge + `chalice local`.

    Use it as a context manager. Pass port 0 for moto and MQTT and free_port() for
    the API to run beside another instance (tests do); ``mqtt=False`` leaves out the
    broker and the bridge.
    """

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        moto_port: int = DEFAULT_MOTO_PORT,
        api_port: int = DEFAULT_API_PORT,
        # 0: a free port (read it from mqtt_port once started). `make run` passes 8883;
        # tests that predate MQTT start stacks side by side without naming a port.
        mqtt_port: int = 0,
        mqtt: bool = True,
        # 0: a free port, as for MQTT. `make run` passes 8001 (--ws-port).
        ws_port: int = 0,
        state_dir: Path = DEFAULT_STATE_DIR,
        project_dir: Path = PROJECT_DIR,
        stack_name: str = DEFAULT_STACK_NAME,
        stage: str = "local",
        autoreload: bool = False,
        chalice_output: IO[Any] | None = None,
        bridge_output: IO[Any] | None = None,
        startup_timeout: float = 60.0,
        jobs: bool = True,
        jobs_interval: float = DEFAULT_JOBS_INTERVAL_SECONDS,
        demo: DemoOptions | None = None,
        settings: dict[str, str] | None = None,
        # The dashboard's origin (infra/web_server.py): 0, a free port; `make run` passes 8080.
        web: bool = True,
        web_port: int = 0,
        web_dist: Path = WEB_DIST_DIR,
    ) -> None:
        # Absolute: the broker runs in its own directory, the bridge and chalice
        # in theirs, and every path handed to them must mean the same file.
        super().__init__(state_dir.resolve())
        self.host = host
        self.api_port = api_port
        self.project_dir = project_dir
        self.stack_name = stack_name
        self.stage = stage
        self.autoreload = autoreload
        # None lets chalice write to our stdout/stderr; tests pass a file.
        self.chalice_output = chalice_output
        # The bridge writes where chalice does unless told otherwise.
        self.bridge_output = bridge_output if bridge_output is not None else chalice_output
        self.mqtt = mqtt
        self._requested_mqtt_port = mqtt_port
        self.mqtt_port: int | None = None
        self.startup_timeout = startup_timeout
        self._requested_moto_port = moto_port
        self._moto: LocalMotoServer | None = None
        self._moto_port: int | None = None
        self._chalice: subprocess.Popen[bytes] | None = None
        self._broker: Broker | None = None
        self._bridge: subprocess.Popen[bytes] | None = None
        self.ca: CertificateAuthority | None = None
        self.table_names: dict[str, str] = {}
        self.stream_arns: dict[str, str] = {}
        self.iot_names: dict[str, str] = {}
        self.queue_urls: dict[str, str] = {}
        self.failed_component: str | None = None
        self.operator_key: SigningKey | None = None
        self.operator_key_path = state_dir / bootstrap.OPERATOR_KEY_FILE
        self.receipt_key: SigningKey | None = None
        self.jobs = jobs
        self.jobs_interval = jobs_interval
        self._scheduler: subprocess.Popen[bytes] | None = None
        self._stream_poller: subprocess.Popen[bytes] | None = None
        self._requested_ws_port = ws_port
        self.ws_port: int | None = None
        # The WebSocket API's stage in AWS is the REST API's (api_gateway_stage).
        self.websocket_stage = api_gateway_stage(project_dir, stage)
        self._ws_gateway: subprocess.Popen[bytes] | None = None
        self.web = web
        self._requested_web_port = web_port
        self.web_port: int | None = None
        self.web_dist = web_dist.resolve()
        self._web_server: subprocess.Popen[bytes] | None = None
        self.demo = demo
        self._demo: subprocess.Popen[bytes] | None = None
        # Application settings (environment variables) beyond the stack's own.
        self.settings = dict(settings or {})

    @property
    def moto_endpoint(self) -> str:
        if self._moto_port is None:
            raise LocalStackError("the local stack is not running")
        return f"http://{self.host}:{self._moto_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def rpc_url(self) -> str:
        return f"{self.api_url}/rpc"

    @property
    def websocket_url(self) -> str:
        """Where WebSocket clients connect (in AWS: wss://{api-id}.execute-api.{region}...)."""
        if self.ws_port is None:
            raise LocalStackError("the local stack is not running")
        return f"ws://{self.host}:{self.ws_port}/{self.websocket_stage}"

    @property
    def websocket_management_endpoint(self) -> str:
        """The ``endpoint_url`` of an ``apigatewaymanagementapi`` client (@connections)."""
        if self.ws_port is None:
            raise LocalStackError("the local stack is not running")
        return f"http://{self.host}:{self.ws_port}/{self.websocket_stage}"

    @property
    def dashboard_url(self) -> str:
        """The dashboard, whose origin also serves /rpc and /ws (CloudFront's role in AWS)."""
        if self.web_port is None:
            raise LocalStackError("the dashboard is not being served")
        return f"http://{self.host}:{self.web_port}/"

    @property
    def environment(self) -> dict[str, str]:
        """The settings the application reads, pointing at this local stack."""
        if self.operator_key is None:
            raise LocalStackError("the local stack is not running")
        return {
            **self.table_names,
            **application_environment(
                moto_endpoint=self.moto_endpoint,
                stack_name=self.stack_name,
                operator_key=self.operator_key,
                receipt_key=self.receipt_key,
                websocket_management_endpoint=(
                    None if self.ws_port is None else self.websocket_management_endpoint
                ),
            ),
            **self.stream_arns,
            **self.settings,
        }

    def child_environment(self) -> dict[str, str]:
        """The environment of the stack's processes: ours, less AWS settings, plus the stack's."""
        return processes.child_environment(self.environment, self.host)

    @property
    def chalice_pid(self) -> int | None:
        return None if self._chalice is None else self._chalice.pid

    @property
    def broker_pid(self) -> int | None:
        return None if self._broker is None else self._broker.pid

    @property
    def bridge_pid(self) -> int | None:
        return None if self._bridge is None else self._bridge.pid

    @property
    def scheduler_pid(self) -> int | None:
        return None if self._scheduler is None else self._scheduler.pid

    @property
    def stream_poller_pid(self) -> int | None:
        return None if self._stream_poller is None else self._stream_poller.pid

    @property
    def ws_gateway_pid(self) -> int | None:
        return None if self._ws_gateway is None else self._ws_gateway.pid

    @property
    def web_server_pid(self) -> int | None:
        return None if self._web_server is None else self._web_server.pid

    @property
    def demo_pid(self) -> int | None:
        return None if self._demo is None else self._demo.pid

    @property
    def dead_letter_queue_url(self) -> str:
        try:
            return self.queue_urls[INGEST_DEAD_LETTER_QUEUE_ID]
        except KeyError:
            raise LocalStackError("the local stack is not running") from None

    def aws_client(self, service: str) -> Any:
        """A boto3 client for ``service`` in this stack's moto."""
        return bootstrap.aws_client(self.moto_endpoint, service)

    def describe(self) -> str:
        """What is running where, for a person at a terminal."""
        return report.describe(self)

    def start(self) -> None:
        """Start moto, create the resources, the broker, the bridge, the jobs, the stream
        poller, chalice local, the WebSocket gateway, the dashboard and the demo."""
        try:
            self._start_moto()
            # Chosen now: every process gets the management endpoint in its environment.
            self._reserve_ws_port()
            self.table_names, self.stream_arns = bootstrap.build_tables(
                self.moto_endpoint, self.stack_name
            )
            self.iot_names, self.queue_urls = bootstrap.build_iot_and_queues(
                self.moto_endpoint, self.stack_name
            )
            self.operator_key, self.operator_key_path = bootstrap.load_or_create_operator_key(
                self.state_dir
            )
            self.receipt_key, _ = bootstrap.load_or_create_key(
                self.state_dir, bootstrap.RECEIPT_KEY_FILE
            )
            if self.mqtt:
                self._start_broker()
                self._start_bridge()
            if self.jobs:
                self._start_scheduler()
            self._start_stream_poller()
            self._start_chalice()
            processes.wait_until_serving(
                self._chalice_process(), self.rpc_url, self.startup_timeout
            )
            self._start_ws_gateway()
            if self.web:
                self._start_web_server()
            if self.demo is not None and self.mqtt:
                self._start_demo(self.demo)
        except BaseException:
            self.stop()
            raise

    def _start_web_server(self) -> None:
        """The dashboard's origin: web/dist, /rpc -> the API, /ws -> the WebSocket API."""
        if self._requested_web_port == 0:
            port = processes.free_port(self.host)
        else:
            processes.ensure_port_free(self.host, self._requested_web_port, "web")
            port = self._requested_web_port
        self.web_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.web_status_path.unlink(missing_ok=True)
        self._web_server = self._spawn_python(
            "infra.web_server",
            "--host",
            self.host,
            "--port",
            str(port),
            "--dist",
            str(self.web_dist),
            "--api",
            self.api_url,
            "--websocket",
            self.websocket_url,
            "--status-file",
            str(self.web_status_path),
        )
        self.web_port = port
        processes.wait_until_reported(
            self._web_server,
            self.web_status_path,
            "listening",
            "the dashboard's web server",
            self.startup_timeout,
        )

    def _start_moto(self) -> None:
        self._moto = bootstrap.start_moto(self.host, self._requested_moto_port)
        self._moto_port = self._moto.get_host_and_port()[1]

    def _reserve_ws_port(self) -> None:
        if self._requested_ws_port == 0:
            self.ws_port = processes.free_port(self.host)
        else:
            processes.ensure_port_free(self.host, self._requested_ws_port, "WebSocket")
            self.ws_port = self._requested_ws_port

    def _start_broker(self) -> None:
        self._broker, self.ca, port = bootstrap.prepare_broker(
            self.ca_dir, self.broker_dir, self.host, self._requested_mqtt_port
        )
        self._broker.start()
        self.mqtt_port = port

    def _start_bridge(self) -> None:
        if self.ca is None or self.mqtt_port is None:
            raise LocalStackError("the broker is not running")
        bootstrap.write_bridge_credentials(self.ca, self.bridge_dir)
        self._bridge = rules_bridge.spawn(
            host=self.host,
            port=self.mqtt_port,
            tls_dir=self.bridge_dir,
            stack_name=self.stack_name,
            status_path=self.bridge_status_path,
            environment=self.child_environment(),
            cwd=self.project_dir,
            output=self.bridge_output,
        )
        try:
            rules_bridge.wait_until_subscribed(
                self._bridge, self.bridge_status_path, self.startup_timeout
            )
        except rules_bridge.BridgeError as exc:
            raise LocalStackError(str(exc)) from exc

    def _start_scheduler(self) -> None:
        self.jobs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.jobs_status_path.unlink(missing_ok=True)
        self._scheduler = self._spawn_python(
            "infra.scheduler",
            "--interval",
            str(self.jobs_interval),
            "--status-file",
            str(self.jobs_status_path),
        )

    def _start_stream_poller(self) -> None:
        self.streams_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.streams_status_path.unlink(missing_ok=True)
        self._stream_poller = self._spawn_python(
            "infra.stream_poller",
            "--status-file",
            str(self.streams_status_path),
            # Its on-failure queue (StreamFailuresQueue), made by bootstrap with the others.
            "--stack-name",
            self.stack_name,
        )

    def _start_chalice(self) -> None:
        processes.ensure_port_free(self.host, self.api_port, "API")
        environment = self.child_environment()
        self._chalice = processes.spawn(
            processes.chalice_command(
                self.project_dir, self.host, self.api_port, self.stage, autoreload=self.autoreload
            ),
            cwd=self.project_dir,
            environment=environment,
            output=self.chalice_output,
        )

    def _start_ws_gateway(self) -> None:
        """The stand-in for API Gateway's WebSocket API (infra/ws_gateway.py), the app's handlers."""
        if self.ws_port is None:
            raise LocalStackError("no port was reserved for the WebSocket gateway")
        self.websockets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.websockets_status_path.unlink(missing_ok=True)
        self._ws_gateway = self._spawn_python(
            "infra.ws_gateway",
            "--host",
            self.host,
            "--port",
            str(self.ws_port),
            "--stage",
            self.websocket_stage,
            "--status-file",
            str(self.websockets_status_path),
        )
        processes.wait_until_reported(
            self._ws_gateway,
            self.websockets_status_path,
            "listening",
            "the WebSocket gateway",
            self.startup_timeout,
        )

    def restart_ws_gateway(self, *, crash: bool = False) -> None:
        """Stop the WebSocket gateway (its clients are dropped, as a deployment or a
        network change drops them in AWS) and start a new one on the same port.

        ``crash``: kill it outright, so that no ``$disconnect`` reaches the app
        (API Gateway does not promise one either).
        """
        gateway, self._ws_gateway = self._ws_gateway, None
        if gateway is not None:
            processes.stop_process_group(gateway, grace=0.0 if crash else 10.0)
        self._start_ws_gateway()

    def _start_demo(self, demo: DemoOptions) -> None:
        if self.mqtt_port is None:
            raise LocalStackError("the demo needs the MQTT broker")
        self.demo_status_path.unlink(missing_ok=True)  # a previous run's counters
        self._demo = self._spawn_python(
            "iot.demo.fleet",
            "--rpc-url",
            self.rpc_url,
            "--state-dir",
            str(self.state_dir),
            "--stack-name",
            self.stack_name,
            "--mqtt-port",
            str(self.mqtt_port),
            *demo.arguments(),
        )

    def _spawn_python(self, module: str, *arguments: str) -> subprocess.Popen[bytes]:
        """A ``python -m`` child with the stack's environment, in its own process group."""
        return processes.spawn(
            processes.python_command(module, *arguments),
            cwd=self.project_dir,
            environment=self.child_environment(),
            output=self.bridge_output,
        )

    def _chalice_process(self) -> subprocess.Popen[bytes]:
        if self._chalice is None:
            raise LocalStackError("chalice local was not started")
        return self._chalice

    def wait(self) -> int:
        """Block until chalice local, the bridge or the broker exits; return its exit code.

        ``failed_component`` names which one it was.
        """
        if self._chalice is None:
            raise LocalStackError("the local stack is not running")
        self.failed_component, code = processes.first_exited(
            lambda: [
                ("chalice local", self._chalice),
                ("the rules bridge", self._bridge),
                ("the job scheduler", self._scheduler),
                ("the stream poller", self._stream_poller),
                ("the WebSocket gateway", self._ws_gateway),
                ("the dashboard's web server", self._web_server),
                ("the demo fleet", self._demo),
                ("mosquitto", self._broker.process if self._broker is not None else None),
            ]
        )
        return code

    def stop_demo(self) -> None:
        """Stop the demo fleet alone (its meters and buyers), leaving the market running."""
        demo, self._demo = self._demo, None
        if demo is not None:
            processes.stop_process_group(demo)

    def stop(self) -> None:
        """Stop the demo, the dashboard's web server, the WebSocket gateway, chalice local,
        the jobs, the bridge, the broker and moto.

        Safe to call twice. The gateway goes before moto: it closes its clients
        and calls ``$disconnect`` for each, which may write to the tables.
        """
        self.stop_demo()
        web_server, self._web_server = self._web_server, None
        if web_server is not None:
            processes.stop_process_group(web_server)
        self.web_port = None
        gateway, self._ws_gateway = self._ws_gateway, None
        if gateway is not None:
            processes.stop_process_group(gateway)
        chalice, self._chalice = self._chalice, None
        if chalice is not None:
            processes.stop_process_group(chalice)
        bridge, self._bridge = self._bridge, None
        if bridge is not None:
            processes.stop_process_group(bridge)
        jobs, self._scheduler = self._scheduler, None
        if jobs is not None:
            processes.stop_process_group(jobs)
        poller, self._stream_poller = self._stream_poller, None
        if poller is not None:
            processes.stop_process_group(poller)
        broker, self._broker = self._broker, None
        if broker is not None:
            broker.stop()
        self.mqtt_port = None
        self.ws_port = None
        server, self._moto = self._moto, None
        if server is not None:
            bootstrap.reset_moto(self.moto_endpoint)
            server.stop()
        self._moto_port = None
