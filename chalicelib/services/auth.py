"""Authenticating a signed call: who signed it, that it is fresh, and its one answer."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
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
    StorageBusy,
)
from chalicelib.services.dependencies import Dependencies
from chalicelib.services.ports import UnitOfWork

NONCE: Final = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Nonces are remembered a little longer than the window in which their
# request could still be accepted, then DynamoDB's TTL forgets them.
NONCE_GRACE_SECONDS: Final = 60
# How long a retry waits for the answer of the first request with its nonce
# when that request has applied its effect but not yet kept its answer (the two
# are separate writes, see answer_once): the delays between consistent reads.
ANSWER_WAIT_DELAYS: Final = (0.05, 0.1, 0.2, 0.4, 0.8)

logger = logging.getLogger(__name__)


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
        request_hash=request_hash(call),
    )
    return call.account


def request_hash(call: SignedCall) -> str:
    """What makes two signed requests the same request: the method and the params
    as signed (canonical JSON, without ``auth``). The timestamp is left out: a
    client that signs its retry again, inside the window, is retrying."""
    signed = {
        "method": call.method,
        "params": {k: v for k, v in call.params.items() if k != "auth"},
    }
    return hashlib.sha256(signing.canonical_json(signed)).hexdigest()


def answer_once(
    deps: Dependencies,
    call: SignedCall,
    run: Callable[[], str],
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Run a signed call and answer it; answer a retry of it with the first answer.

    ``run`` performs the call (its use case consumes the nonce, with the request's
    hash, in the same commit as its effect) and returns the answer as JSON text.
    The answer is then kept with the nonce by a second, conditional write
    (``keep_answer``): several use cases only know their answer after their
    commit (a balance read back, a purchase a concurrent retry committed), so it
    cannot ride in the effect's own transaction. The condition (the nonce is
    this request's, and has no answer yet) makes the kept answer the one of
    the execution that applied the effect, and only that one.

    A call refused after authentication is looked up: its nonce used by the same
    request means it is a retry, answered with the kept answer (waiting briefly
    for it if the first execution is between its two writes); used by another
    request, it stays ``replayed_request``. A refusal of authentication itself
    (bad signature, stale) is answered as such: it proves nothing about the
    signer, and must reveal no answer.
    """
    try:
        answer = run()
    except (NotAuthenticated, StaleRequest):
        raise
    except DomainError as refused:
        return _first_answer(deps, call, refused, sleep)
    try:
        uow = deps.unit_of_work()
        uow.nonces.keep_answer(call.account, call.nonce, request_hash(call), answer)
        uow.commit()
    except ReplayedRequest:
        # The nonce was not consumed by this execution (a purchase answered from
        # its idempotency key commits nothing): there is no effect to answer for.
        pass
    except Exception:
        # The effect is committed: failing to keep its answer must not turn a
        # success into an error. A retry then finds no answer (see below).
        logger.exception("could not keep the answer of %s", call.method)
    return answer


def _first_answer(
    deps: Dependencies, call: SignedCall, refused: DomainError, sleep: Callable[[float], None]
) -> str:
    this_request = request_hash(call)
    read = False
    # Refused for throttling: one look, as more would only add to the load of
    # a throttled table (and make every refusal wait while it lasts).
    delays = (0.0,) if isinstance(refused, StorageBusy) else (0.0, *ANSWER_WAIT_DELAYS)
    for delay in delays:
        if delay:
            sleep(delay)
        try:
            used = deps.unit_of_work().nonces.used(call.account, call.nonce)
        except StorageBusy:
            continue  # throttled: whether the effect was applied is not known yet
        read = True
        if used is None:
            raise refused  # the nonce is unused: a genuine refusal
        if used.request_hash != this_request:
            raise ReplayedRequest("this request was already received", nonce=call.nonce)
        if used.answer is not None:
            return used.answer
    if not read:
        # Not "nothing changed", which storage_busy says otherwise: the effect
        # may be committed. The same request again gets its first answer.
        raise StorageBusy(
            "the database is busy, and whether this request was applied is not known;"
            " send the very same request again",
            applied="unknown",
        )
    raise ReplayedRequest(
        "this request was applied, but its answer is not available; read the result",
        nonce=call.nonce,
        applied=True,
    )


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
