"""Whatever a call holds, every method answers it as JSON-RPC, without an internal error.

Anyone can post to the API. Hypothesis sends every registered method
parameters made of its own parameter names and strangers, holding any JSON
(numbers beyond 64 bits, non-finite numbers, lone surrogates, nesting), and an
``auth`` that is garbage or a real account's signature over those very
parameters. Each call gets a complete JSON-RPC answer that is never -32603
(which would be a bug of ours, however well hidden its details), and a call
that is refused changes nothing stored. On both storage adapters.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import simplejson
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from chalicelib.rpc.methods.common import registry
from energy_client.rpc_client import Signer
from tests.hostile import JSON_VALUES, any_text, mostly
from tests.support import MarketHarness

SPECS = {spec.name: spec for spec in registry}
# What a caller writes: the parameters' names on the wire (a model's aliases).
WIRE_NAMES = {
    name: sorted((field.alias or member) for member, field in spec.params.model_fields.items())
    for name, spec in SPECS.items()
}
INTERNAL_ERROR = -32603


SHARED_MARKET = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# Values that pass validation for a parameter of that name, so that calls get
# past it to the use case, mixed with anything at all.
NAMES = ("mallory.theblock", "alice.theblock", "nobody.theblock")
AMOUNTS = (0, 1, 1_000_000, 10**15, 10**30)
DECIMALS = ("0.08", "1", "0", "1767225600.5", 1_767_225_600)
IDS = ("0" * 64, "f" * 32, "cert-0")
CURSORS = ("", "e30", "eyJ4IjoxfQ")
COUNTS = (0, 1, 100, 10**6)
PLAUSIBLE: dict[str, tuple[Any, ...]] = {
    **dict.fromkeys(
        ("account", "owner", "name", "buyer", "flagger", "validator", "beneficiary"), NAMES
    ),
    **dict.fromkeys(
        ("amount_micro_block", "stake", "wh", "capacity_kwh", "min_available_wh", "min_capacity"),
        AMOUNTS,
    ),
    **dict.fromkeys(
        ("price_per_kwh", "max_price", "max_price_per_kwh", "kwh_reading", "timestamp"), DECIMALS
    ),
    **dict.fromkeys(
        ("transaction_id", "dispute_id", "certificate_id", "credit_id", "reading_hash"), IDS
    ),
    **dict.fromkeys(("cursor", "history_cursor", "holdings_cursor"), CURSORS),
    **dict.fromkeys(("limit", "history_limit", "holdings_limit", "hours"), COUNTS),
    "energy_type": ("solar", "wind", "hydro", "battery"),
    "jurisdiction": ("US_CA", "DE"),
    "role": ("validator", "operator"),
    "verdict": ("guilty", "innocent"),
    "severity": ("minor", "major"),
    "window": ("24h", "7d"),
    "public_key": ("00" * 32,),
    "meter_public_key": ("11" * 32,),
    "signature": ("00" * 64,),
    "chain_tx": ("0xabc",),
    "idempotency_key": ("k1",),
    "credit_ids": (("0" * 64,), ()),
    "updates": ({"price_per_kwh": "0.1"}, {"display_name": "x"}, {}),
}


@pytest.fixture
def caller(market: MarketHarness) -> tuple[MarketHarness, Signer]:
    mallory = market.funded_account("mallory.theblock", block=30_000)
    provider = market.provider(mallory)  # theirs to update, stake and sell from
    PLAUSIBLE["provider_id"] = (provider["provider_id"], "energy-0x0000000000000000")
    PLAUSIBLE["meter_address"] = (provider["meter_address"], "unknown_meter")
    return market, mallory


def params_for(method: str) -> st.SearchStrategy[dict[str, Any]]:
    """Each of the method's parameters, most often with a plausible value (so
    that the call gets past validation to the use case), else with anything;
    now and then a stranger beside them."""

    def value(name: str) -> st.SearchStrategy[Any]:
        return mostly(st.sampled_from(PLAUSIBLE.get(name, (None,))))

    known = st.fixed_dictionaries({}, optional={name: value(name) for name in WIRE_NAMES[method]})
    strangers = st.dictionaries(any_text(max_size=10), JSON_VALUES, max_size=1)
    return st.tuples(known, mostly(st.just({}), strangers, odds=2)).map(
        lambda both: {**both[1], **both[0]}
    )


def answer_of(market: MarketHarness, body: bytes) -> dict[str, Any]:
    raw = market.dispatcher.handle(body)
    assert raw is not None
    answer: dict[str, Any] = json.loads(raw)
    assert ("result" in answer) != ("error" in answer), answer
    # NaN and Infinity make the body other than JSON: a parse error, whose id
    # is null since the call's could not be read.
    parse_error = answer.get("error", {}).get("code") == -32700
    assert answer["jsonrpc"] == "2.0" and answer["id"] == (None if parse_error else 1), answer
    if "error" in answer:
        assert answer["error"]["code"] != INTERNAL_ERROR, answer
        event(f"{answer['error']['code']}")
    else:
        event("result")
    return answer


def body_of(method: str, params: Any) -> bytes:
    call = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return simplejson.dumps(call, allow_nan=True).encode()


@SHARED_MARKET
@given(method=st.sampled_from(sorted(SPECS)), data=st.data())
def test_any_params_with_a_forged_auth_are_answered_and_change_nothing(
    caller: tuple[MarketHarness, Signer], method: str, data: st.DataObject
) -> None:
    market, _ = caller
    params = data.draw(params_for(method), label="params")
    if SPECS[method].signed:
        params["auth"] = data.draw(
            JSON_VALUES
            | st.fixed_dictionaries(
                {"account": st.just("mallory.theblock")},
                optional={"nonce": JSON_VALUES, "timestamp": JSON_VALUES, "signature": JSON_VALUES},
            ),
            label="auth",
        )
    before = market.snapshot()
    answer = answer_of(market, body_of(method, params))
    if SPECS[method].signed:
        assert "error" in answer, answer
    if method != "energy.submitReading":  # it keeps what it refuses (getRejections)
        assert market.snapshot() == before or "result" in answer


@SHARED_MARKET
@given(
    method=st.sampled_from(sorted(name for name, spec in SPECS.items() if spec.signed)),
    data=st.data(),
)
def test_any_params_signed_by_a_real_account_are_answered_as_json_rpc(
    caller: tuple[MarketHarness, Signer], method: str, data: st.DataObject
) -> None:
    """The signature holds, so the call reaches validation and, when its
    parameters pass, the use case: which may refuse it, never fail on it."""
    market, mallory = caller
    params = data.draw(params_for(method), label="params")
    params.pop("auth", None)
    try:
        request = market.client.request(method, params, mallory)
    except (UnicodeEncodeError, ValueError, TypeError):
        assume(False)  # what the client itself cannot sign (a lone surrogate, NaN)
    before = market.snapshot()
    answer = answer_of(market, body_of(method, request["params"]))
    if "error" in answer:
        assert market.snapshot() == before, answer
