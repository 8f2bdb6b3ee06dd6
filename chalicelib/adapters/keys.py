"""Sort keys and cursors shared by every storage adapter.

The order of listings is part of the API (providers by price, then id), so
the in-memory and DynamoDB adapters must build it from the same function.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

from chalicelib.domain.credits import Credit
from chalicelib.domain.errors import InvalidCursor
from chalicelib.domain.providers import Provider
from chalicelib.domain.readings import RejectionRecord
from chalicelib.domain.receipts import Receipt
from chalicelib.domain.trading import Purchase, PurchaseStatus

_PRICE_KEY: Final = re.compile(r"^\d{12}#energy-0x[0-9a-f]{16}$")
_ENTRY_KEY: Final = re.compile(r"^\d{12}#[a-z]+#[A-Za-z0-9:_./\-]{1,200}$")
_MINTED_KEY: Final = re.compile(r"^\d{15}#[0-9a-f]{64}$")
_REJECTION_KEY: Final = re.compile(r"^REJECTION#\d{15}#[0-9a-f]{32}$")
_BUYER_KEY: Final = re.compile(r"^[OS]#\d{15}#pur-[0-9a-f]{32}$")
_RECEIPT_KEY: Final = re.compile(r"^RECEIPT#\d{12}$")
_ISSUED_KEY: Final = re.compile(r"^\d{15}#energy-0x[0-9a-f]{16}#\d{12}$")


def price_key(provider: Provider) -> str:
    """``000000080000#energy-0x...``: price in micro-BLOCK per kWh, then id."""
    return f"{provider.price_micro_block_per_kwh:012d}#{provider.provider_id}"


def price_bound(max_price_micro_block_per_kwh: int) -> str:
    """The largest price key at or below a price: ``~`` sorts after every id."""
    return f"{max_price_micro_block_per_kwh:012d}#~"


def entry_key(at: int, kind: str, entry_id: str) -> str:
    return f"{at:012d}#{kind}#{entry_id}"


def minted_key(credit: Credit) -> str:
    """Credits of a provider sort by the end of their interval, then id."""
    return f"{credit.interval_end_ms:015d}#{credit.credit_id}"


def rejection_sort_key(record: RejectionRecord) -> str:
    # The payload hash makes a redelivery of one message the same record.
    return f"REJECTION#{record.at_ms:015d}#{record.payload_hash[:32]}"


def buyer_key(purchase: Purchase) -> str:
    """A buyer's purchases: open ones (``O#``) by creation, settled (``S#``) by settlement."""
    if purchase.status == PurchaseStatus.OPEN:
        return f"O#{purchase.created_at_ms:015d}#{purchase.purchase_id}"
    return f"S#{purchase.settled_at_ms or 0:015d}#{purchase.purchase_id}"


def receipt_sort_key(sequence: int) -> str:
    return f"RECEIPT#{sequence:012d}"


def issued_key(receipt: Receipt) -> str:
    """A buyer's receipts sort by settlement time, then chain and sequence."""
    return f"{receipt.settled_at_ms:015d}#{receipt.chain}#{receipt.sequence:012d}"


# Index partitions per expiry hour (see expiry_slot).
EXPIRY_SHARDS: Final = 16


def expiry_slot(expires_at_ms: int, credit_id: str) -> str:
    """The hour a credit expires in, and one of EXPIRY_SHARDS shards of it.

    Every credit minted in an hour expires in the same hour; at 1,100 readings
    a second one index partition per hour would take every write. The shard
    (from the credit id, a hash) spreads them; the expiry job reads each shard
    of each due hour.
    """
    return f"H{expires_at_ms // 3_600_000}#{int(credit_id[:8], 16) % EXPIRY_SHARDS:02d}"


def expiry_slots(hour: int) -> list[str]:
    """Every index partition of one expiry hour."""
    return [f"H{hour}#{shard:02d}" for shard in range(EXPIRY_SHARDS)]


def encode_cursor(sort_key: str) -> str:
    return base64.urlsafe_b64encode(sort_key.encode()).decode().rstrip("=")


def decode_price_cursor(cursor: str) -> str:
    return _decode(cursor, _PRICE_KEY)


def decode_entry_cursor(cursor: str) -> str:
    return _decode(cursor, _ENTRY_KEY)


def decode_minted_cursor(cursor: str) -> str:
    return _decode(cursor, _MINTED_KEY)


def decode_rejection_cursor(cursor: str) -> str:
    return _decode(cursor, _REJECTION_KEY)


def decode_buyer_cursor(cursor: str) -> str:
    return _decode(cursor, _BUYER_KEY)


def decode_receipt_cursor(cursor: str) -> str:
    return _decode(cursor, _RECEIPT_KEY)


def decode_issued_cursor(cursor: str) -> str:
    return _decode(cursor, _ISSUED_KEY)


def _decode(cursor: str, shape: re.Pattern[str]) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        sort_key = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor("cursor is not one this service issued") from exc
    if not shape.match(sort_key):
        raise InvalidCursor("cursor is not one this service issued")
    return sort_key
