"""JSON-RPC 2.0 as the specification says, on raw bytes."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.rpc.methods import registry
from chalicelib.rpc.protocol import Dispatcher
from energy_client.rpc_client import Signer
from tests.support import BLOCK, MarketHarness, registration_params


def rpc(market: MarketHarness, body: bytes | str | Any) -> Any:
    if not isinstance(body, bytes | str):
        body = json.dumps(body)
    raw = body.encode() if isinstance(body, str) else body
    answer = market.dispatcher.handle(raw)
    return None if answer is None else json.loads(answer, parse_float=Decimal)


def test_a_call_answers_with_its_id(market: MarketHarness) -> None:
    answer = rpc(market, {"jsonrpc": "2.0", "id": "abc", "method": "energy.getMarketInfo"})
    assert answer["id"] == "abc"
    assert answer["result"]["min_stake"] == 1_000 * BLOCK
    assert "error" not in answer


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"",
        b"\xff\xfe",
        b'{"jsonrpc": "2.0", "method": "x", "id": NaN}',
        b'[{"jsonrpc": "2.0", "method": "energy.getMarketInfo", "id": 1}, {"jsonrpc": "2.0"',
        b"x" * (1_048_577),
    ],
)
def test_malformed_json_is_a_parse_error(market: MarketHarness, body: bytes) -> None:
    before = market.snapshot()
    answer = rpc(market, body)
    assert answer == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": "Parse error", "data": answer["error"]["data"]},
    }
    assert market.snapshot() == before


@pytest.mark.parametrize(
    ("request_object", "reason"),
    [
        (1, "not_an_object"),
        ('"text"', "not_an_object"),  # raw body: a JSON string
        ({"method": "energy.getMarketInfo", "id": 1}, "jsonrpc_must_be_2.0"),
        ({"jsonrpc": "1.0", "method": "energy.getMarketInfo", "id": 1}, "jsonrpc_must_be_2.0"),
        ({"jsonrpc": "2.0", "method": 5, "id": 1}, "method_must_be_a_string"),
        ({"jsonrpc": "2.0", "id": 1}, "method_must_be_a_string"),
        (
            {"jsonrpc": "2.0", "method": "energy.getMarketInfo", "id": {"a": 1}},
            "id_must_be_string_integer_or_null",
        ),
        (
            {"jsonrpc": "2.0", "method": "energy.getMarketInfo", "id": True},
            "id_must_be_string_integer_or_null",
        ),
        (
            {"jsonrpc": "2.0", "method": "energy.getMarketInfo", "params": "x", "id": 1},
            "params_must_be_object_or_array",
        ),
    ],
)
def test_invalid_requests(market: MarketHarness, request_object: Any, reason: str) -> None:
    answer = rpc(market, request_object)
    assert answer["error"]["code"] == -32600
    assert answer["error"]["data"]["reason"] == reason
    # The request's id is echoed when it is a valid id, else null (JSON-RPC 2.0 §5).
    echoed = request_object.get("id") if isinstance(request_object, dict) else None
    assert answer["id"] == (echoed if isinstance(echoed, int) and echoed is not True else None)


def test_empty_and_oversized_batches_are_invalid(market: MarketHarness) -> None:
    assert rpc(market, [])["error"]["code"] == -32600
    call = {"jsonrpc": "2.0", "method": "energy.getMarketInfo", "id": 1}
    assert rpc(market, [call] * 51)["error"]["data"]["reason"] == "batch_too_large"


def test_whole_body_errors_are_complete_error_objects_with_a_null_id(
    market: MarketHarness,
) -> None:
    call = {"jsonrpc": "2.0", "method": "energy.getMarketInfo", "id": 1}
    assert rpc(market, []) == {
        "jsonrpc": "2.0",
        "error": {"code": -32600, "message": "Invalid Request", "data": {"reason": "empty_batch"}},
        "id": None,
    }
    assert rpc(market, [call] * 51) == {
        "jsonrpc": "2.0",
        "error": {
            "code": -32600,
            "message": "Invalid Request",
            "data": {"reason": "batch_too_large", "max_batch": 50},
        },
        "id": None,
    }
    assert rpc(market, b"{") == {
        "jsonrpc": "2.0",
        "error": {
            "code": -32700,
            "message": "Parse error",
            "data": {"reason": "parse_error", "detail": "request body is not valid JSON"},
        },
        "id": None,
    }


def test_too_many_positional_params_name_the_limit(market: MarketHarness) -> None:
    answer = rpc(
        market,
        {"jsonrpc": "2.0", "method": "energy.getMeter", "params": ["m", 1], "id": 4},
    )
    assert answer["error"] == {
        "code": -32602,
        "message": "Invalid params",
        "data": {
            "reason": "invalid_params",
            "errors": [{"field": "", "message": "at most 1 positional params"}],
        },
    }


def test_unknown_method(market: MarketHarness) -> None:
    answer = rpc(market, {"jsonrpc": "2.0", "method": "energy.mintMoney", "id": 9})
    assert answer["error"]["code"] == -32601
    assert answer["id"] == 9


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"provider_id": 12}, "provider_id"),
        ({"provider_id": "not-an-id"}, "provider_id"),
        ({}, "provider_id"),
        ({"provider_id": "energy-0x0000000000000000", "extra": 1}, "extra"),
    ],
)
def test_wrong_parameter_types_are_invalid_params(
    market: MarketHarness, params: dict[str, Any], field: str
) -> None:
    answer = rpc(
        market, {"jsonrpc": "2.0", "method": "energy.getProvider", "params": params, "id": 1}
    )
    assert answer["error"]["code"] == -32602
    assert field in [e["field"] for e in answer["error"]["data"]["errors"]]


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("price_per_kwh", "0.0000001"),  # finer than a micro-BLOCK
        ("price_per_kwh", -0.08),
        ("price_per_kwh", True),
        ("price_per_kwh", 10_000),  # absurd: 10,000 BLOCK per kWh
        ("capacity_kwh", 0.0005),  # half a Wh
        ("capacity_kwh", "1e400"),
        ("capacity_kwh", "NaN"),
        ("capacity_kwh", "Infinity"),
        ("stake", 1000.5),  # micro-BLOCK are whole
        ("stake", 10**16),
        ("latitude", 91),
        ("longitude", "east"),
    ],
)
def test_bad_numbers_are_invalid_params_and_change_nothing(
    market: MarketHarness, member: str, value: Any
) -> None:
    alice = market.funded_account("alice.theblock", block=20_000)
    params = registration_params("alice.theblock", **{member: value})
    request = market.client.request("energy.registerProvider", params, alice)
    before = market.snapshot()
    answer = rpc(market, request)
    assert answer["error"]["code"] == -32602
    assert [e["field"] for e in answer["error"]["data"]["errors"]] == [member]
    assert market.snapshot() == before


def test_raw_nan_and_huge_exponents_in_json(market: MarketHarness) -> None:
    body = (
        '{"jsonrpc":"2.0","id":1,"method":"energy.listProviders","params":{"max_price":1e999999}}'
    )
    answer = rpc(market, body)
    assert answer["error"]["code"] == -32602


def test_positional_params_for_unsigned_methods(market: MarketHarness) -> None:
    alice = market.funded_account("alice.theblock", block=20_000)
    pid = market.provider(alice)["provider_id"]
    answer = rpc(
        market, {"jsonrpc": "2.0", "method": "energy.getProvider", "params": [pid], "id": 2}
    )
    assert answer["result"]["provider_id"] == pid
    too_many = rpc(
        market, {"jsonrpc": "2.0", "method": "energy.getProvider", "params": [pid, 1], "id": 3}
    )
    assert too_many["error"]["code"] == -32602


def test_a_notification_is_executed_and_not_answered(market: MarketHarness) -> None:
    bob = market.funded_account("bob.theblock")
    notification = market.client.request(
        "energy.deposit",
        {"account": "bob.theblock", "amount_micro_block": BLOCK, "chain_tx": "0xnotified"},
        market.operator,
        notify=True,
    )
    assert rpc(market, notification) is None
    assert market.client.call("energy.getAccount", {"name": bob.account})["balance"] == BLOCK
    # A notification for an unknown method is not answered either.
    assert rpc(market, {"jsonrpc": "2.0", "method": "energy.nothing"}) is None


def test_a_batch_mixing_good_and_bad_calls(market: MarketHarness) -> None:
    carol = Signer.generate("carol.theblock")
    batch: list[Any] = [
        market.client.request(
            "energy.createAccount", {"name": carol.account, "public_key": carol.public_key}, carol
        ),
        {
            "jsonrpc": "2.0",
            "method": "energy.getAccount",
            "params": {"name": "carol.theblock"},
            "id": "read",
        },
        {"jsonrpc": "2.0", "method": "energy.nope", "id": "missing"},
        {
            "jsonrpc": "2.0",
            "method": "energy.getProvider",
            "params": {"provider_id": 1},
            "id": "typed",
        },
        {"jsonrpc": "2.0", "method": "energy.getMarketInfo"},  # notification: no answer
        42,
        market.client.request(
            "energy.deposit",
            {"account": "carol.theblock", "amount_micro_block": 7, "chain_tx": "0xbatch"},
            market.operator,
        ),
    ]
    answers = rpc(market, batch)
    assert len(answers) == 6
    by_id: dict[Any, Any] = {a["id"]: a for a in answers if a["id"] is not None}
    assert by_id[batch[0]["id"]]["result"]["name"] == "carol.theblock"
    assert by_id["read"]["result"]["balance"] == 0  # calls run in order
    assert by_id["missing"]["error"]["code"] == -32601
    assert by_id["typed"]["error"]["code"] == -32602
    assert by_id[batch[6]["id"]]["result"]["balance"] == 7
    assert [a["error"]["code"] for a in answers if a["id"] is None] == [-32600]


def test_a_batch_of_notifications_gets_no_answer(market: MarketHarness) -> None:
    note = {"jsonrpc": "2.0", "method": "energy.getMarketInfo"}
    assert rpc(market, [note, note]) is None


def test_an_internal_failure_hides_its_details(
    market: MarketHarness, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_clock() -> int:
        raise RuntimeError("secret table name energy-registry-prod")

    broken = Dispatcher(registry, replace(market.deps, clock=broken_clock))
    raw = broken.handle(b'{"jsonrpc":"2.0","id":1,"method":"energy.listProviders"}')
    assert raw is not None
    assert json.loads(raw)["error"] == {
        "code": -32603,
        "message": "Internal error",
        "data": {"reason": "internal_error"},
    }
    assert b"secret" not in raw and b"Traceback" not in raw
    assert "secret table name" in caplog.text  # ...but the operator can see it
