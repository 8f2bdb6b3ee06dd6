"""A retry of a signed request is answered with the first answer, never run twice.

The scenario per method is in test_authorisation.py; here: the moment between
a request's effect and its kept answer, and what a retry without the key sees.
"""

from __future__ import annotations

import threading

import pytest

from chalicelib.domain.errors import ReplayedRequest
from chalicelib.services.auth import SignedCall, answer_once, authenticate
from energy_client.rpc_client import RpcError, Signer, unwrap
from tests.support import BLOCK, MarketHarness


def _call(market: MarketHarness, signer: Signer) -> SignedCall:
    params = {"amount_micro_block": BLOCK, "destination": "0xwallet"}
    signed = market.client.signed_params("energy.withdraw", params, signer)
    auth = signed["auth"]
    return SignedCall(
        "energy.withdraw",
        signed,
        auth["account"],
        auth["nonce"],
        auth["timestamp"],
        auth["signature"],
    )


def _apply(market: MarketHarness, call: SignedCall) -> None:
    """What a use case does first: authenticate and commit, consuming the nonce."""
    uow = market.deps.unit_of_work()
    authenticate(market.deps, uow, call)
    uow.commit()


def test_a_retry_during_the_first_request_waits_for_its_answer(market: MarketHarness) -> None:
    alice = market.funded_account("alice.theblock", block=10)
    call = _call(market, alice)
    applied, release = threading.Event(), threading.Event()
    first: list[str] = []

    def first_run() -> str:
        _apply(market, call)  # the effect is committed ...
        applied.set()
        release.wait(10)  # ... and the answer not kept yet
        return '{"answer":"first"}'

    first_thread = threading.Thread(
        target=lambda: first.append(answer_once(market.deps, call, first_run))
    )
    first_thread.start()
    assert applied.wait(10)

    def retry_run() -> str:
        _apply(market, call)  # refused: the nonce is used
        return '{"answer":"second"}'

    def let_the_first_finish(_: float) -> None:
        release.set()
        first_thread.join(10)

    assert answer_once(market.deps, call, retry_run, sleep=let_the_first_finish) == (
        '{"answer":"first"}'
    )
    assert first == ['{"answer":"first"}']


def test_a_retry_whose_first_answer_was_never_kept_says_it_was_applied(
    market: MarketHarness,
) -> None:
    alice = market.funded_account("alice.theblock", block=10)
    call = _call(market, alice)
    _apply(market, call)  # the first request died between its effect and its answer

    def retry_run() -> str:
        _apply(market, call)
        return "{}"

    with pytest.raises(ReplayedRequest) as refused:
        answer_once(market.deps, call, retry_run, sleep=lambda _: None)
    assert refused.value.data["applied"] is True


def test_only_the_signer_gets_the_first_answer_again(market: MarketHarness) -> None:
    alice = market.funded_account("alice.theblock", block=10)
    params = {"amount_micro_block": BLOCK, "destination": "0xwallet"}
    request = market.client.request("energy.withdraw", params, alice)
    assert unwrap(market.client.send(request))["balance"] == 9 * BLOCK
    forged = Signer.generate("alice.theblock")  # the name, not the key
    copy = market.client.request("energy.withdraw", params, forged)
    copy["params"]["auth"]["nonce"] = request["params"]["auth"]["nonce"]
    with pytest.raises(RpcError) as refused:
        unwrap(market.client.send(copy))
    assert refused.value.reason == "not_authenticated"
