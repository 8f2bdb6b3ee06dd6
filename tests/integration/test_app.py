"""The deployed entry points: app.py's routes through chalice.test.Client on moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib.adapters.aws import dynamodb_client
from chalicelib.config import get_settings
from chalicelib.rpc.methods import openrpc, registry
from chalicelib.rpc.protocol import wire_names
from chalicelib.wiring import dispatcher, ingest_dependencies
from energy_client.rpc_client import MarketplaceClient, Signer
from tests.support import BLOCK, registration_params


@pytest.fixture
def operator() -> Signer:
    return Signer.generate("operator")


@pytest.fixture
def chalice_client(
    dynamodb: Any, operator: Signer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Client]:
    monkeypatch.setenv("MARKETPLACE_ID", "energy-marketplace-app-test")
    monkeypatch.setenv("OPERATOR_PUBLIC_KEY", operator.public_key)
    for cache in (get_settings, dispatcher, ingest_dependencies, dynamodb_client):
        cache.cache_clear()
    with Client(app) as client:
        yield client
    for cache in (get_settings, dispatcher, ingest_dependencies, dynamodb_client):
        cache.cache_clear()


def _only_notifications(body: bytes) -> bool:
    """Whether a JSON-RPC body holds only notifications (requests without an id)."""
    requests = json.loads(body)
    return all("id" not in r for r in (requests if isinstance(requests, list) else [requests]))


@pytest.fixture
def api(chalice_client: Client) -> MarketplaceClient:
    def transport(body: bytes) -> bytes | None:
        response = chalice_client.http.post(
            "/rpc", headers={"Content-Type": "application/json"}, body=body
        )
        if _only_notifications(body):
            assert (response.status_code, response.body) == (204, b"")
            return None
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        return bytes(response.body)

    return MarketplaceClient(transport, "energy-marketplace-app-test")


@pytest.fixture
def dynamodb_calls() -> Iterator[list[str]]:
    """The names of the DynamoDB operations the app makes, in order."""
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    client = dynamodb_client()
    client.meta.events.register("before-call.dynamodb", record)
    yield calls
    client.meta.events.unregister("before-call.dynamodb", record)


def test_every_method_works_through_the_deployed_route(
    api: MarketplaceClient, operator: Signer
) -> None:
    alice, bob = Signer.generate("alice.theblock"), Signer.generate("bob.theblock")
    api.create_account(alice)
    api.create_account(bob)
    api.deposit(operator, "alice.theblock", 30_000 * BLOCK, "0xapp-1")
    api.call(
        "energy.withdraw", {"amount_micro_block": BLOCK, "destination": "0xalice-wallet"}, alice
    )
    provider = api.call("energy.registerProvider", registration_params("alice.theblock"), alice)
    pid = provider["provider_id"]
    api.call(
        "energy.updateProvider", {"provider_id": pid, "updates": {"price_per_kwh": 0.07}}, alice
    )
    api.call("energy.topUpStake", {"provider_id": pid, "amount_micro_block": BLOCK}, alice)
    api.call("energy.withdrawStake", {"provider_id": pid, "amount_micro_block": BLOCK}, alice)
    assert api.call("energy.getProvider", {"provider_id": pid})["price_per_kwh"] == Decimal("0.07")
    listed = api.call("energy.listProviders", {"energy_type": "solar", "max_price": 0.1})
    assert [p["provider_id"] for p in listed["providers"]] == [pid]
    account = api.call("energy.getAccount", {"name": "alice.theblock"})
    assert account["balance"] == (30_000 - 1 - 10_000) * BLOCK
    entries = api.call("energy.getLedgerEntries", {"account": "alice.theblock"})["entries"]
    # Entries are ordered by time (whole seconds), then kind: all of these share a second.
    assert sorted(e["kind"] for e in entries) == [
        "deposit",
        "stake",
        "stake",
        "unstake",
        "withdrawal",
    ]
    info = api.call("energy.getMarketInfo")
    assert info["operator_public_key"] == operator.public_key
    discovered = api.call("rpc.discover")
    assert {m["name"] for m in discovered["methods"]} == {m.name for m in registry}


def test_list_providers_reads_keys_and_indexes_and_never_scans(
    api: MarketplaceClient, operator: Signer, dynamodb_calls: list[str]
) -> None:
    alice = Signer.generate("alice.theblock")
    api.create_account(alice)
    api.deposit(operator, "alice.theblock", 10_000 * BLOCK, "0xapp-2")
    for n, energy_type in enumerate(["solar", "wind", "hydro"]):
        params = registration_params(
            "alice.theblock",
            energy_type=energy_type,
            stake=1_000 * BLOCK,
            meter_address=f"scan_meter_{n}",
        )
        api.call("energy.registerProvider", params, alice)
    dynamodb_calls.clear()
    for filters in (
        {},
        {"energy_type": "wind"},
        {"jurisdiction": "US_CA", "max_price": 1},
        {"min_capacity": 10, "limit": 1},
    ):
        assert api.call("energy.listProviders", filters)["providers"]
    # Index queries, then the page's providers read whole by key.
    assert dynamodb_calls and set(dynamodb_calls) == {"Query", "BatchGetItem"}
    dynamodb_calls.clear()
    api.call("energy.getAccount", {"name": "alice.theblock"})
    assert "Scan" not in dynamodb_calls


def test_a_notification_gets_http_204(chalice_client: Client) -> None:
    response = chalice_client.http.post(
        "/rpc",
        headers={"Content-Type": "application/json"},
        body=json.dumps({"jsonrpc": "2.0", "method": "energy.getMarketInfo"}),
    )
    assert response.status_code == 204
    assert response.body == b""


def test_garbage_gets_a_parse_error_not_a_stack_trace(chalice_client: Client) -> None:
    response = chalice_client.http.post(
        "/rpc", headers={"Content-Type": "application/json"}, body=b"{not json"
    )
    assert response.status_code == 200
    assert json.loads(response.body)["error"]["code"] == -32700
    assert b"Traceback" not in response.body


def test_the_openrpc_document_lists_every_method_with_schemas(chalice_client: Client) -> None:
    response = chalice_client.http.get("/openrpc.json")
    assert response.status_code == 200
    document = json.loads(response.body)
    assert document == json.loads(json.dumps(openrpc(), default=str))
    assert document["openrpc"].startswith("1.")
    methods = {m["name"]: m for m in document["methods"]}
    assert set(methods) == {m.name for m in registry}
    schemas = document["components"]["schemas"]
    for spec in registry:
        method = methods[spec.name]
        declared = set(wire_names(spec.params))
        assert {p["name"] for p in method["params"]} == declared
        assert method["result"]["schema"]["$ref"].rsplit("/", 1)[1] in schemas
        assert method["x-signed"] == spec.signed
        if spec.signed:
            assert "auth" in declared
        for error in method["errors"]:
            assert error["$ref"].rsplit("/", 1)[1] in document["components"]["errors"]
    register = methods["energy.registerProvider"]
    assert {p["name"] for p in register["params"] if p["required"]} >= {
        "capacity_kwh",
        "price_per_kwh",
        "meter_address",
        "jurisdiction",
        "stake",
        "owner",
        "energy_type",
    }
    assert register["x-original-name"] == "registerProvider"
