"""Request signing: canonical JSON and the documented test vector."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from chalicelib.domain import signing

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def documented_vector() -> dict[str, Any]:
    block = re.search(r"```json signing-vector\n(.*?)\n```", API_DOC.read_text(), re.S)
    assert block, "docs/api.md lost its signing vector"
    vector: dict[str, Any] = json.loads(block.group(1), parse_float=Decimal)
    return vector


def test_documented_vector_reproduces_exactly() -> None:
    vector = documented_vector()
    key = SigningKey(bytes.fromhex(vector["seed_hex"]))
    assert bytes(key.verify_key).hex() == vector["public_key_hex"]
    message = signing.request_message(
        marketplace_id=vector["marketplace_id"],
        method=vector["method"],
        params=vector["params"],
        account=vector["account"],
        nonce=vector["nonce"],
        timestamp=vector["timestamp"],
    )
    assert message == vector["message"].encode()
    assert message.hex() == vector["message_hex"]
    assert signing.sign(key, message) == vector["signature"]
    assert signing.verify(vector["public_key_hex"], message, vector["signature"])


def test_any_change_to_the_signed_message_breaks_the_signature() -> None:
    vector = documented_vector()
    message = bytearray(bytes.fromhex(vector["message_hex"]))
    message[-5] ^= 1
    assert not signing.verify(vector["public_key_hex"], bytes(message), vector["signature"])


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ({"b": 1, "a": [True, None, "x"]}, b'{"a":[true,null,"x"],"b":1}'),
        (Decimal("0.080"), b"0.08"),
        (Decimal("15000.0"), b"15000"),
        (Decimal("1E+3"), b"1000"),
        (Decimal("-0.5"), b"-0.5"),
        (0.08, b"0.08"),
        ('é\n"\\\u0001', '"é\\n\\"\\\\\\u0001"'.encode()),
        ({"\u00e9": 1, "z": 2, "a": 3}, '{"a":3,"z":2,"é":1}'.encode()),
    ],
)
def test_canonical_json_follows_rfc_8785(value: object, canonical: bytes) -> None:
    assert signing.canonical_json(value) == canonical


def test_canonical_json_refuses_values_json_cannot_hold() -> None:
    with pytest.raises(signing.CanonicalisationError):
        signing.canonical_json({"x": {1, 2}})
    with pytest.raises(signing.CanonicalisationError):
        signing.canonical_json(Decimal("NaN"))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**15), 10**15)
    | st.text(max_size=20)
    | st.decimals(min_value=-(10**9), max_value=10**9, places=6, allow_nan=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_canonical_json_is_stable_under_a_json_round_trip(value: object) -> None:
    """What a client signs is what the server recomputes from the parsed body."""
    once = signing.canonical_json(value)
    reparsed = json.loads(once, parse_float=Decimal)
    assert signing.canonical_json(reparsed) == once


def test_malformed_keys_and_signatures_do_not_verify() -> None:
    key = SigningKey.generate()
    public = bytes(key.verify_key).hex()
    signature = signing.sign(key, b"m")
    assert signing.verify(public, b"m", signature)
    assert signing.verify("0x" + public.upper(), b"m", "0x" + signature)
    assert not signing.verify(public, b"m", signature[:-2])
    assert not signing.verify(public[:-2], b"m", signature)
    assert not signing.verify(public, b"m", "zz" * 64)
