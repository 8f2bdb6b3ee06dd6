"""The registry every method group registers on, and what signed methods share."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from chalicelib.domain import signing
from chalicelib.domain.errors import (
    ConcurrentUpdate,
    NotAuthenticated,
    NotAuthorised,
    ReplayedRequest,
    StaleRequest,
)
from chalicelib.rpc.methods.fields import SignedParams
from chalicelib.rpc.openrpc import openrpc_document
from chalicelib.rpc.registry import CallContext, Registry
from chalicelib.services.auth import SignedCall

API_VERSION = "1.0.0"

registry = Registry()

# Every signed method can fail authentication in these ways.
AUTH_ERRORS = (NotAuthenticated, ReplayedRequest, StaleRequest, NotAuthorised, ConcurrentUpdate)


def signed_call(context: CallContext, params: SignedParams) -> SignedCall:
    auth = params.auth
    return SignedCall(
        method=context.method,
        params=context.raw_params,
        account=auth.account,
        nonce=auth.nonce,
        timestamp=auth.timestamp,
        signature=signing.normalise_hex(auth.signature),
    )


@lru_cache(maxsize=1)
def openrpc() -> dict[str, Any]:
    """The document of every registered method (all groups are registered by the
    time anything can call this: importing this module imports the package)."""
    return openrpc_document(registry, API_VERSION)
