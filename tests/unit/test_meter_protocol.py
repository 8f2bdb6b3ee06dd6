"""The meter protocol's documented test vectors, reproduced by the implementation."""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from chalicelib.domain import readings, signing
from chalicelib.services.ingest import Status, record_payload
from tests.support import NOW, memory_market, registration_params

PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "meter-protocol.md"


def documented_vectors() -> list[dict[str, Any]]:
    block = re.search(r"```json meter-vectors\n(.*?)\n```", PROTOCOL_DOC.read_text(), re.S)
    assert block, "docs/meter-protocol.md lost its test vectors"
    vectors: list[dict[str, Any]] = json.loads(block.group(1))
    return vectors


@pytest.mark.parametrize("vector", documented_vectors(), ids=lambda v: str(v["counter_wh"]))
def test_vectors_reproduce_message_hash_and_signature(vector: dict[str, Any]) -> None:
    key = SigningKey(bytes.fromhex(vector["seed_hex"]))
    assert bytes(key.verify_key).hex() == vector["public_key_hex"]
    message = readings.reading_message(
        vector["provider_id"], vector["meter_address"], vector["counter_wh"], vector["timestamp_ms"]
    )
    assert message.hex() == vector["message_hex"]
    assert hashlib.sha256(message).hexdigest() == vector["reading_hash"]
    assert signing.sign(key, message) == vector["signature"]
    reading = readings.parse_payload(json.loads(vector["payload"], parse_float=Decimal))
    assert (reading.counter_wh, reading.timestamp_ms) == (
        vector["counter_wh"],
        vector["timestamp_ms"],
    )
    assert reading.reading_hash == vector["reading_hash"]


def test_the_marketplace_accepts_the_vector_payloads() -> None:
    vectors = documented_vectors()
    market = memory_market()
    alice = market.funded_account("alice.theblock", block=20_000)
    params = registration_params(
        "alice.theblock",
        meter_address=vectors[0]["meter_address"],
        meter_public_key=vectors[0]["public_key_hex"],
    )
    provider = market.client.call("energy.registerProvider", params, alice)
    assert provider["provider_id"] == vectors[0]["provider_id"]
    market.clock.now = NOW + 1_000
    outcomes = [
        record_payload(
            market.deps,
            v["payload"].encode(),
            topic_meter_address=v["meter_address"],
            received_at_ms=NOW * 1000,
        )
        for v in vectors
    ]
    assert [o.status for o in outcomes] == [Status.ACCEPTED, Status.ACCEPTED]
    assert outcomes[1].credit is not None
    assert outcomes[1].credit.wh == vectors[1]["counter_wh"] - vectors[0]["counter_wh"]
    assert outcomes[1].credit.credit_id == vectors[1]["reading_hash"]


def test_the_documented_plausibility_example() -> None:
    assert readings.plausible_increase_wh(10_000, 15 * 60_000) == 2_626


def test_the_topic_is_the_documented_one() -> None:
    assert readings.topic_for("solar_meter_001") == "energy/meters/solar_meter_001/readings"
    assert "energy/meters/<meter_address>/readings" in PROTOCOL_DOC.read_text()


def test_every_rejection_reason_is_documented() -> None:
    text = PROTOCOL_DOC.read_text()
    assert [r for r in readings.Rejection if f"`{r}`" not in text] == []
