"""Authenticating a signed call: who signed it, and that it is fresh."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from chalicelib.domain import signing
from chalicelib.domain.accounts import OPERATOR
from chalicelib.domain.errors import (
    DomainError,
    NotAuthenticated,
    NotAuthorised,
    ReplayedRequest,
    StaleRequest,
)
from chalicelib.services.dependencies import Dependencies
from chalicelib.services.ports import UnitOfWork

NONCE: Final = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Nonces are remembered a little longer than the window in which their
# request could still be accepted, then DynamoDB's TTL forgets them.
NONCE_GRACE_SECONDS: Final = 60


@dataclass(frozen=True)
class SignedCall:
    """A call as received: its method, parameters (without ``auth``) and envelope."""

    method: str
    params: Mapping[str, Any]
    account: str
    nonce: str
    timestamp: int
    signature: str


def authenticate(
    deps: Dependencies, uow: UnitOfWork, call: SignedCall, *, public_key: str | None = None
) -> str:
    """Verify ``call`` and stage the use of its nonce; return the signer's name.

    ``public_key`` is given only by ``createAccount``, whose signer proves that
    it holds the key it is registering. The nonce is consumed in the same
    commit as the call's own writes: a refused call leaves it unused.
    """
    settings = deps.settings
    now = deps.clock()
    if abs(now - call.timestamp) > settings.auth_window_seconds:
        raise StaleRequest(
            "request timestamp is outside the accepted window",
            server_time=now,
            window_seconds=settings.auth_window_seconds,
        )
    if public_key is None:
        public_key = _registered_key(deps, uow, call.account)
    message = signing.request_message(
        marketplace_id=settings.marketplace_id,
        method=call.method,
        params=call.params,
        account=call.account,
        nonce=call.nonce,
        timestamp=call.timestamp,
    )
    if not signing.verify(public_key, message, call.signature):
        raise NotAuthenticated("signature does not match the account's key", account=call.account)
    uow.nonces.consume(
        call.account,
        call.nonce,
        expires_at=call.timestamp + settings.auth_window_seconds + NONCE_GRACE_SECONDS,
    )
    return call.account


def refusal(uow: UnitOfWork, call: SignedCall, error: DomainError) -> DomainError:
    """What to answer a signed call refused for ``error``.

    A call that already succeeded may be refused now for what it did (a
    credit it retired is retired): its replay is answered as a replay.
    """
    if uow.nonces.seen(call.account, call.nonce):
        return ReplayedRequest("this request was already received", nonce=call.nonce)
    return error


def _registered_key(deps: Dependencies, uow: UnitOfWork, account: str) -> str:
    if account == OPERATOR:
        if not deps.settings.operator_public_key:
            raise NotAuthenticated("this deployment has no operator key", account=account)
        return deps.settings.operator_public_key
    found = uow.accounts.get(account)
    if found is None:
        # Same error as a bad signature: we do not reveal which names exist
        # to someone who cannot sign for them.
        raise NotAuthenticated("signature does not match the account's key", account=account)
    return found.public_key


def require_signer(signer: str, expected: str, action: str) -> None:
    if signer != expected:
        raise NotAuthorised(f"only {expected} may {action}", signer=signer, required=expected)


def require_operator(signer: str, action: str) -> None:
    require_signer(signer, OPERATOR, action)
