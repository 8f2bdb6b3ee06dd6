"""The marketplace's receipt signing key, from configuration or SSM."""

from __future__ import annotations

from functools import lru_cache

from nacl.signing import SigningKey

from chalicelib.adapters.aws import ssm_client
from chalicelib.config import Settings


class ReceiptKeyUnavailable(RuntimeError):
    """No receipt signing key is configured, or the configured one is unusable."""


def signing_key_from_hex(seed_hex: str) -> SigningKey:
    try:
        seed = bytes.fromhex(seed_hex.strip())
    except ValueError as exc:
        raise ReceiptKeyUnavailable("the receipt signing key is not hex") from exc
    if len(seed) != 32:
        raise ReceiptKeyUnavailable("the receipt signing key is not a 32-byte Ed25519 seed")
    return SigningKey(seed)


def receipt_signing_key(settings: Settings) -> SigningKey:
    """The key configured inline, else the one in the named SSM SecureString.

    A key that does not match the published RECEIPT_PUBLIC_KEY is refused: its
    receipts would not verify against the key auditors are told to use.
    """
    inline = settings.receipt_signing_key.get_secret_value()
    if inline:
        key = signing_key_from_hex(inline)
    elif settings.receipt_signing_key_parameter:
        key = _from_parameter(settings.receipt_signing_key_parameter)
    else:
        raise ReceiptKeyUnavailable(
            "set RECEIPT_SIGNING_KEY or RECEIPT_SIGNING_KEY_PARAMETER to sign receipts"
        )
    published = settings.receipt_public_key
    if published and key.verify_key.encode().hex() != published:
        raise ReceiptKeyUnavailable("the receipt signing key does not match RECEIPT_PUBLIC_KEY")
    return key


def receipt_public_key(settings: Settings) -> str:
    """The hex verify key to publish, without reading the private key from SSM.

    RECEIPT_PUBLIC_KEY where the deploy set it; otherwise derived from an inline
    seed (local runs and tests); otherwise empty (no receipts are signed here).
    """
    if settings.receipt_public_key:
        return settings.receipt_public_key
    inline = settings.receipt_signing_key.get_secret_value()
    if inline:
        return signing_key_from_hex(inline).verify_key.encode().hex()
    return ""


@lru_cache(maxsize=4)
def _from_parameter(name: str) -> SigningKey:
    # Once per container: the key does not change under a running function.
    response = ssm_client().get_parameter(Name=name, WithDecryption=True)
    return signing_key_from_hex(response["Parameter"]["Value"])
