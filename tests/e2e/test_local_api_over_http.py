"""`make run`'s stack, started the same way, answering JSON-RPC over real HTTP."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from energy_client.rpc_client import MarketplaceClient, RpcError, Signer
from infra.local_stack import LocalStack, free_port
from tests.support import BLOCK, registration_params

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    state = tmp_path_factory.mktemp("local-stack")
    with (
        (state / "chalice.log").open("wb") as log,
        LocalStack(
            moto_port=0, api_port=free_port(), state_dir=state, chalice_output=log
        ) as running,
    ):
        yield running


def test_the_local_api_serves_the_marketplace(stack: LocalStack) -> None:
    api = MarketplaceClient.over_http(stack.rpc_url)
    assert api.marketplace_id == stack.stack_name
    operator_seed = Path(stack.operator_key_path).read_text().strip()
    operator = Signer.from_seed_hex("operator", operator_seed)

    alice = Signer.generate("alice.theblock")
    api.create_account(alice)
    api.deposit(operator, "alice.theblock", 12_000 * BLOCK, "0xlocal-http-1")
    provider = api.call("energy.registerProvider", registration_params("alice.theblock"), alice)
    listed = api.call("energy.listProviders", {"energy_type": "solar", "max_price": "0.10"})
    assert [p["provider_id"] for p in listed["providers"]] == [provider["provider_id"]]
    assert api.call("energy.getAccount", {"name": "alice.theblock"})["balance"] == (2_000 * BLOCK)
    with pytest.raises(RpcError) as refused:
        api.call(
            "energy.withdraw",
            {"amount_micro_block": 3_000 * BLOCK, "destination": "0xalice-wallet"},
            alice,
        )
    assert refused.value.reason == "insufficient_balance"


def test_the_openrpc_document_is_served_over_http(stack: LocalStack) -> None:
    with urllib.request.urlopen(f"{stack.api_url}/openrpc.json", timeout=10) as response:
        document = json.load(response)
    assert "energy.registerProvider" in {m["name"] for m in document["methods"]}


def test_stopping_the_stack_leaves_no_process(tmp_path: Path) -> None:
    with (tmp_path / "chalice.log").open("wb") as log:
        stack = LocalStack(
            moto_port=0,
            api_port=free_port(),
            state_dir=tmp_path,
            chalice_output=log,
            stack_name="energy-marketplace-e2e-stop",
        )
        with stack:
            pid = stack.chalice_pid
            assert pid is not None
            MarketplaceClient.over_http(stack.rpc_url)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
