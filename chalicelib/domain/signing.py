"""How a request is signed: canonical JSON, the signed message, Ed25519.

The scheme is specified in docs/api.md ("Authentication"); this module is its
only implementation, used by the server to verify and by the Python client to
sign. Canonical JSON follows RFC 8785 (JCS) for the values the API uses:
object keys sorted by code point, no white space, UTF-8, and numbers written
as plain decimals without exponent, trailing zeros or a trailing ``.0``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

# Domain separation: these bytes prefix every signed request, so a signature
# over a request can never be mistaken for one over a meter reading, a
# receipt, or another protocol's message.
REQUEST_DOMAIN: Final = b"energy-marketplace/rpc-request/v1\n"

_HEX_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_HEX_SIGNATURE = re.compile(r"^(0x)?[0-9a-fA-F]{128}$")


class CanonicalisationError(ValueError):
    """A value that has no canonical JSON form (a float NaN, a set, ...)."""


def canonical_number(number: int | Decimal) -> str:
    if isinstance(number, bool):
        raise CanonicalisationError("booleans are not numbers")
    if isinstance(number, int):
        return str(number)
    if not number.is_finite():
        raise CanonicalisationError("non-finite number")
    if number == number.to_integral_value():
        return str(int(number))
    text = format(number.normalize(), "f")
    return "-" + text.lstrip("-") if number < 0 else text


def _escape(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\b":
            out.append("\\b")
        elif char == "\f":
            out.append("\\f")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _canonical(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | Decimal):
        return canonical_number(value)
    if isinstance(value, float):
        # A float here came from a client library, never from our own parser
        # (which yields Decimal); its shortest repr is what was meant.
        return canonical_number(Decimal(repr(value)))
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda item: str(item[0]).encode("utf-16-be"))
        return "{" + ",".join(f"{_escape(str(k))}:{_canonical(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    raise CanonicalisationError(f"cannot canonicalise {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value."""
    return _canonical(value).encode("utf-8")


def request_message(
    *,
    marketplace_id: str,
    method: str,
    params: Mapping[str, Any],
    account: str,
    nonce: str,
    timestamp: int,
) -> bytes:
    """The exact bytes an account signs to authorise one call.

    ``params`` are the call's parameters without the ``auth`` member. Binding
    the marketplace id, method and parameters means a signature authorises
    one action on one deployment and nothing else; the nonce and timestamp
    make it usable once.
    """
    body = {
        "account": account,
        "marketplace": marketplace_id,
        "method": method,
        "nonce": nonce,
        "params": {k: v for k, v in params.items() if k != "auth"},
        "timestamp": timestamp,
    }
    return REQUEST_DOMAIN + canonical_json(body)


def is_public_key_hex(text: str) -> bool:
    return bool(_HEX_KEY.match(text))


def normalise_hex(text: str) -> str:
    return text[2:].lower() if text[:2] in ("0x", "0X") else text.lower()


def verify(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
    """True when ``signature_hex`` is a valid Ed25519 signature of ``message``."""
    public_key = public_key_bytes(public_key_hex)
    if public_key is None or not _HEX_SIGNATURE.match(signature_hex):
        return False
    # The pattern fixes the length VerifyKey would check (64 bytes), so the
    # binding VerifyKey.verify ends in is called directly: no key object per
    # call, as ingest verifies every reading.
    try:
        crypto_sign_open(bytes.fromhex(normalise_hex(signature_hex)) + message, public_key)
    except (BadSignatureError, ValueError):
        return False
    return True


@functools.lru_cache(maxsize=4096)
def public_key_bytes(public_key_hex: str) -> bytes | None:
    """The 32 bytes of a hex Ed25519 public key, or None when it is not one.

    Kept per key: a meter's key verifies every reading it sends, an
    account's every request it signs.
    """
    if not _HEX_KEY.match(public_key_hex):
        return None
    return bytes.fromhex(normalise_hex(public_key_hex))


def sign(signing_key: SigningKey, message: bytes) -> str:
    """Hex of the 64-byte Ed25519 signature of ``message``."""
    return signing_key.sign(message).signature.hex()
