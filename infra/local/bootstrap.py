"""What the local stack sets up before its processes: moto, its resources, the broker, keys."""

from __future__ import annotations

import contextlib
import logging
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from nacl.signing import SigningKey

from energy_client import keyfiles
from infra.emulation import (
    OFFLINE_ACCOUNT_ID,
    create_iot_resources,
    create_queues,
    create_tables,
)
from infra.local.errors import LocalStackError, PortInUseError
from infra.local.options import FAKE_CREDENTIALS, REGION
from infra.local.processes import ensure_port_free, free_port
from infra.moto_server import LocalMotoServer
from iot.broker import BRIDGE_IDENTITY, Broker
from iot.ca import CertificateAuthority

OPERATOR_KEY_FILE = "operator.key"
# The marketplace's receipt signing key (in AWS: an SSM SecureString).
RECEIPT_KEY_FILE = "receipt-signing.key"


def start_moto(host: str, port: int) -> LocalMotoServer:
    """A running moto server on host:port (0: any free port)."""
    if port != 0:
        ensure_port_free(host, port, "moto")
    # Chalice's own output stays; moto's per-request access log would drown it.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = LocalMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    if server.bind_error is not None:
        raise PortInUseError("moto", host, port, server.bind_error.strerror) from server.bind_error
    return server


def reset_moto(endpoint: str) -> None:
    """Empty moto's state (it lives in this process), so a stack started again begins anew."""
    with contextlib.suppress(OSError):
        request = urllib.request.Request(  # noqa: S310 - our own http:// URL
            f"{endpoint}/moto-api/reset", data=b"", method="POST"
        )
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            request, timeout=10
        ).close()


def aws_client(endpoint: str, service: str) -> Any:
    """A boto3 client for ``service`` in the moto at ``endpoint``."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def build_tables(endpoint: str, stack_name: str) -> tuple[dict[str, str], dict[str, str]]:
    """Create the template's tables; return their environment and the stream ARNs'."""
    dynamodb = aws_client(endpoint, "dynamodb")
    table_names = create_tables(dynamodb, stack_name)
    # What the template gives the functions in AWS (GetAtt LedgerTable.StreamArn).
    stream_arns = {
        variable: dynamodb.describe_table(TableName=table_names[table])["Table"]["LatestStreamArn"]
        for variable, table in (
            ("LEDGER_STREAM_ARN", "LEDGER_TABLE"),
            ("REGISTRY_STREAM_ARN", "REGISTRY_TABLE"),
            ("DISPUTES_STREAM_ARN", "DISPUTES_TABLE"),
        )
    }
    return table_names, stream_arns


def build_iot_and_queues(endpoint: str, stack_name: str) -> tuple[dict[str, str], dict[str, str]]:
    """Create the meter thing type and policy and the queues; return their names and URLs."""
    iot_names = create_iot_resources(
        aws_client(endpoint, "iot"), stack_name, REGION, OFFLINE_ACCOUNT_ID
    )
    return iot_names, create_queues(aws_client(endpoint, "sqs"), stack_name)


def prepare_broker(
    ca_dir: Path, broker_dir: Path, host: str, port: int
) -> tuple[Broker, CertificateAuthority, int]:
    """mosquitto with the local CA on host:port (0: a free port), not yet started.

    Returned unstarted so that the caller holds it, and stops it, even if its start fails.
    """
    if port == 0:
        port = free_port(host)
    else:
        ensure_port_free(host, port, "MQTT")
    ca = CertificateAuthority.load_or_create(ca_dir)
    # moto starts empty every time: readings queued for an old bridge session
    # would meet meters that no longer exist.
    shutil.rmtree(broker_dir / "data", ignore_errors=True)
    return Broker(broker_dir, ca, host=host, port=port), ca, port


def write_bridge_credentials(ca: CertificateAuthority, bridge_dir: Path) -> None:
    """The rules bridge's client certificate, key and CA certificate, in bridge_dir."""
    bridge_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca.issue_client(BRIDGE_IDENTITY).write(
        bridge_dir / "certificate.pem", bridge_dir / "private.key"
    )
    (bridge_dir / "ca.pem").write_bytes(ca.certificate_pem)


def load_or_create_operator_key(state_dir: Path) -> tuple[SigningKey, Path]:
    """Load the operator's Ed25519 key from state_dir, creating it (mode 0600) on first use."""
    return load_or_create_key(state_dir, OPERATOR_KEY_FILE)


def load_or_create_key(state_dir: Path, file_name: str) -> tuple[SigningKey, Path]:
    """Load an Ed25519 key (hex seed) from state_dir, creating it (mode 0600) on first use."""
    key_path = state_dir / file_name
    try:
        return keyfiles.load_or_create_key(key_path), key_path
    except keyfiles.NotASeed as exc:
        raise LocalStackError(str(exc)) from exc
