"""`make run` passes relative paths (`.local`); the broker must still find its files."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.local_stack import free_port
from iot.broker import Broker
from iot.ca import CertificateAuthority

pytestmark = pytest.mark.e2e


def test_the_broker_starts_from_a_relative_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ca = CertificateAuthority.load_or_create(Path(".local/ca"))
    broker = Broker(Path(".local/broker"), ca, port=free_port())
    with broker:  # raises BrokerError if mosquitto cannot open its files
        assert broker.directory.is_absolute()
