"""Python client of the marketplace API: builds, signs and sends JSON-RPC calls.

Used by the simulator, the tests and anyone scripting the market::

    alice = Signer.generate("alice.theblock")
    api = MarketplaceClient.over_http("http://127.0.0.1:8000/rpc")
    api.create_account(alice)
    api.call("energy.getAccount", {"name": "alice.theblock"})
"""

from __future__ import annotations

import itertools
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import simplejson
from nacl.signing import SigningKey

from chalicelib.domain import signing

Transport = Callable[[bytes], bytes | None]


class RpcError(Exception):
    """A JSON-RPC error object returned by the marketplace."""

    def __init__(self, code: int, message: str, data: Mapping[str, Any] | None) -> None:
        super().__init__(f"{code} {message}: {dict(data or {})}")
        self.code = code
        self.message = message
        self.data: Mapping[str, Any] = data or {}

    @property
    def reason(self) -> str | None:
        reason = self.data.get("reason")
        return reason if isinstance(reason, str) else None


@dataclass(frozen=True)
class Signer:
    """An account name and the Ed25519 key that signs for it."""

    account: str
    key: SigningKey

    @classmethod
    def generate(cls, account: str) -> Signer:
        return cls(account, SigningKey.generate())

    @classmethod
    def from_seed_hex(cls, account: str, seed_hex: str) -> Signer:
        return cls(account, SigningKey(bytes.fromhex(seed_hex)))

    @property
    def public_key(self) -> str:
        return bytes(self.key.verify_key).hex()

    @property
    def seed_hex(self) -> str:
        return bytes(self.key).hex()


def http_transport(url: str, timeout: float = 10.0) -> Transport:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")

    def send(body: bytes) -> bytes | None:
        # The scheme was checked above: http(s) only, never file:.
        request = urllib.request.Request(  # noqa: S310
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                payload: bytes = response.read()
        except urllib.error.HTTPError as exc:
            payload = exc.read()
        return payload or None

    return send


class MarketplaceClient:
    def __init__(
        self, transport: Transport, marketplace_id: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._transport = transport
        self.marketplace_id = marketplace_id
        self._clock = clock
        self._ids = itertools.count(1)

    @classmethod
    def over_http(cls, url: str, marketplace_id: str | None = None) -> MarketplaceClient:
        client = cls(http_transport(url), marketplace_id or "")
        if marketplace_id is None:
            client.marketplace_id = client.call("energy.getMarketInfo")["marketplace_id"]
        return client

    # -- building requests ---------------------------------------------------

    def signed_params(
        self,
        method: str,
        params: Mapping[str, Any],
        signer: Signer,
        *,
        nonce: str | None = None,
        timestamp: int | None = None,
    ) -> dict[str, Any]:
        """``params`` plus the ``auth`` member that authorises this one call."""
        nonce = nonce or secrets.token_urlsafe(18)
        timestamp = int(self._clock()) if timestamp is None else timestamp
        message = signing.request_message(
            marketplace_id=self.marketplace_id,
            method=method,
            params=params,
            account=signer.account,
            nonce=nonce,
            timestamp=timestamp,
        )
        auth = {
            "account": signer.account,
            "nonce": nonce,
            "timestamp": timestamp,
            "signature": signing.sign(signer.key, message),
        }
        return {**params, "auth": auth}

    def request(
        self,
        method: str,
        params: Mapping[str, Any] | Sequence[Any] | None = None,
        signer: Signer | None = None,
        *,
        notify: bool = False,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if signer is not None:
            if not isinstance(params, Mapping | None):
                raise TypeError("signed calls take their params by name")
            body["params"] = self.signed_params(method, dict(params or {}), signer)
        elif params is not None:
            body["params"] = params
        if not notify:
            body["id"] = next(self._ids)
        return body

    # -- sending ---------------------------------------------------------------

    def send(self, payload: Any) -> Any:
        """Send a request object or batch as is; return the decoded response."""
        answer = self._transport(encode(payload))
        return None if answer is None else simplejson.loads(answer, use_decimal=True)

    def call(
        self,
        method: str,
        params: Mapping[str, Any] | Sequence[Any] | None = None,
        signer: Signer | None = None,
    ) -> Any:
        """Call one method; return its result or raise :class:`RpcError`."""
        response = self.send(self.request(method, params, signer))
        return unwrap(response)

    # -- the common calls ------------------------------------------------------

    def create_account(self, signer: Signer) -> Any:
        return self.call(
            "energy.createAccount",
            {"name": signer.account, "public_key": signer.public_key},
            signer,
        )

    def deposit(self, operator: Signer, account: str, micro_block: int, chain_tx: str) -> Any:
        return self.call(
            "energy.deposit",
            {"account": account, "amount_micro_block": micro_block, "chain_tx": chain_tx},
            operator,
        )

    def register_provider(self, owner: Signer, **registration: Any) -> Any:
        return self.call("energy.registerProvider", {"owner": owner.account, **registration}, owner)


def unwrap(response: Any) -> Any:
    if not isinstance(response, dict):
        raise RpcError(-32603, "unexpected response", {"response": response})
    if "error" in response:
        error = response["error"]
        raise RpcError(error["code"], error["message"], error.get("data"))
    return response["result"]


def encode(payload: Any) -> bytes:
    return simplejson.dumps(payload, use_decimal=True, separators=(",", ":")).encode()


def events_token(signer: Signer, marketplace_id: str, expires_ms: int) -> str:
    """A token that lets a WebSocket connection read ``signer``'s private topic
    (``account:<name>``) until ``expires_ms``, at most an hour ahead (docs/events.md)."""
    from chalicelib.domain import events

    message = events.token_message(marketplace_id, signer.account, expires_ms)
    return events.Token(signer.account, expires_ms, signing.sign(signer.key, message)).text()
