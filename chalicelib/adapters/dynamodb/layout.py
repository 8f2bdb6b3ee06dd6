"""The table layout: the one place for every key, index name and cursor.

Table and index names come from infra/template.yaml (the only schema); this
module knows which item lives under which key (each aggregate's module maps
its items' other attributes):

registry  ACCOUNT#<name>   / ACCOUNT          account: key, roles (a string set)
          ACCOUNT#<name>   / NONCE#<nonce>    a used request nonce (TTL)
          PROVIDER#<id>    / PROVIDER         provider (GSIs: type, jurisdiction, owner), and
                                              its meter's last accepted reading
          METER#<address>  / METER            meter address claim (unique), key, refusal counts
          METER#<address>  / REJECTION#<at>#<hash>   a refused (or duplicate) reading (TTL)
credits   CREDIT#<reading hash> / CREDIT    a credit (or a meter's baseline reading);
                                            sparse GSI keys: on sale (AvailableByProvider,
                                            ExpiringBySlot), off sale (CreditsByProvider), held
ledger    ACCOUNT#<name>   / BALANCE          available balance
          <KIND>#<id>      / ENTRY            one ledger movement (GSI EntriesByAccount)
          TREASURY         / SHARD#<n>        treasury balance, sharded
          ACCOUNT#<name>   / BOUGHT           Wh bought (settled) per energy type, and per
                                              energy type and jurisdiction (ledger.py)
          PURCHASE#<id>    / PURCHASE         a purchase and its escrow (GSIs:
                                              PurchasesDue while open, PurchasesByBuyer)
receipts  CHAIN#<provider> / RECEIPT#<seq>    a signed settlement receipt (GSI ReceiptsByBuyer)
          CHAIN#<provider> / HEAD             the chain's newest sequence and hash
registry  JOB#<name>       / WATERMARK        the first hour a scheduled job still reads
registry  VALIDATORS       / VALIDATOR#<name> one per account holding the validator role
                                              (written with grantRole/revokeRole; the panel
                                              draw reads the partition)
disputes  DISPUTE#<id>     / DISPUTE          a dispute, its flags, panel and votes (GSIs:
                                              DisputesByProvider, DisputesByStatus by
                                              opened_key; OpenDisputesBySlot while the
                                              dispute job has work on it)
          DISPUTE#<id>     / MEMBER#<role>#<name>   a flagger or panel member of the dispute
                                              (GSI DisputesByMember: member = <role>#<name>)
          WATCH#<meter>    / STATE            the fraud detectors' state of one meter
          PEERS#<cell>#<hour> / HISTOGRAM     a peer cell's capacity factors for an hour (TTL)
          REPLAY#<shape key>  / CURVES        day curves with that coarse shape (TTL)
analytics the market's aggregates (adapters/dynamodb/analytics.py lists them)
connections CONN#<id>      / CONN             a live WebSocket connection (TTL)
          CONN#<id>        / SUB#<topic>      one of its subscriptions (GSI
                                              SubscribersByTopic: topic_lane = <topic>#<lane>)

Every write is conditional; a commit with several writes is one
TransactWriteItems call, and a single write is a plain conditional call
(half the write capacity of a one-item transaction); see unit_of_work.

The sort keys and cursors below are shared with the in-memory adapter: the
order of listings is part of the API (providers by price, then id), so both
adapters build it from the same function.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

from chalicelib.adapters.dynamodb.codec import Item
from chalicelib.config import Settings
from chalicelib.domain.credits import Credit
from chalicelib.domain.errors import InvalidCursor
from chalicelib.domain.ledger import EntryKind
from chalicelib.domain.providers import Provider
from chalicelib.domain.readings import RejectionRecord
from chalicelib.domain.receipts import Receipt
from chalicelib.domain.trading import Purchase, PurchaseStatus

HOUR_MS: Final = 3_600_000

# Index names (infra/template.yaml defines them).
ENTRIES_BY_ACCOUNT: Final = "EntriesByAccount"
PROVIDERS_BY_ENERGY_TYPE: Final = "ProvidersByEnergyType"
PROVIDERS_BY_JURISDICTION: Final = "ProvidersByJurisdiction"
PROVIDERS_BY_OWNER: Final = "ProvidersByOwner"
CREDITS_BY_PROVIDER: Final = "CreditsByProvider"
AVAILABLE_BY_PROVIDER: Final = "AvailableByProvider"
EXPIRING_BY_SLOT: Final = "ExpiringBySlot"
HOLDINGS_BY_OWNER: Final = "HoldingsByOwner"
PURCHASES_DUE: Final = "PurchasesDue"
PURCHASES_BY_BUYER: Final = "PurchasesByBuyer"
RECEIPTS_BY_BUYER: Final = "ReceiptsByBuyer"
DISPUTES_BY_PROVIDER: Final = "DisputesByProvider"
DISPUTES_BY_STATUS: Final = "DisputesByStatus"
OPEN_DISPUTES_BY_SLOT: Final = "OpenDisputesBySlot"
DISPUTES_BY_MEMBER: Final = "DisputesByMember"
SELLERS_BY_DAY_24H: Final = "SellersByDay24h"
SELLERS_BY_DAY_7D: Final = "SellersByDay7d"
SELLERS_ALL_TIME: Final = "SellersAllTime"
SUBSCRIBERS_BY_TOPIC: Final = "SubscribersByTopic"
VALIDATORS_PK: Final = "VALIDATORS"


@dataclass(frozen=True)
class Tables:
    registry: str
    ledger: str
    credits: str
    receipts: str
    disputes: str
    analytics: str
    connections: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Tables:
        return cls(
            settings.registry_table,
            settings.ledger_table,
            settings.credits_table,
            settings.receipts_table,
            settings.disputes_table,
            settings.analytics_table,
            settings.connections_table,
        )


# -- item keys ---------------------------------------------------------------


def _key(pk: str, sk: str) -> Item:
    # Typed by hand: every request names a key, ingest two per reading.
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def account_key(name: str) -> Item:
    return _key(f"ACCOUNT#{name}", "ACCOUNT")


def nonce_key(name: str, nonce: str) -> Item:
    return _key(f"ACCOUNT#{name}", f"NONCE#{nonce}")


def provider_key(provider_id: str) -> Item:
    return _key(f"PROVIDER#{provider_id}", "PROVIDER")


def meter_key(meter_address: str) -> Item:
    return _key(f"METER#{meter_address}", "METER")


def balance_key(name: str) -> Item:
    return _key(f"ACCOUNT#{name}", "BALANCE")


def ledger_entry_key(kind: EntryKind, entry_id: str) -> Item:
    return _key(f"{kind.upper()}#{entry_id}", "ENTRY")


def bought_key(name: str) -> Item:
    return _key(f"ACCOUNT#{name}", "BOUGHT")


def receipt_key(chain: str, sequence: int) -> Item:
    return _key(f"CHAIN#{chain}", receipt_sort_key(sequence))


def chain_head_key(chain: str) -> Item:
    return _key(f"CHAIN#{chain}", "HEAD")


def watermark_key(job: str) -> Item:
    return _key(f"JOB#{job}", "WATERMARK")


TREASURY_PK: Final = "TREASURY"


def credit_key(credit_id: str) -> Item:
    return _key(f"CREDIT#{credit_id}", "CREDIT")


def purchase_key(purchase_id: str) -> Item:
    return _key(f"PURCHASE#{purchase_id}", "PURCHASE")


def treasury_shard_key(shard: int) -> Item:
    return _key(TREASURY_PK, f"SHARD#{shard:02d}")


def dispute_key(dispute_id: str) -> Item:
    return _key(f"DISPUTE#{dispute_id}", "DISPUTE")


def member_key(dispute_id: str, role: str, name: str) -> Item:
    return _key(f"DISPUTE#{dispute_id}", f"MEMBER#{member_of(role, name)}")


def member_of(role: str, name: str) -> str:
    """DisputesByMember's partition: ``flagger#<account>`` or ``panel#<validator>``."""
    return f"{role}#{name}"


def watch_key(meter_address: str) -> Item:
    return _key(f"WATCH#{meter_address}", "STATE")


def peers_key(key: str) -> Item:
    return _key(f"PEERS#{key}", "HISTOGRAM")


def replay_key(key: str) -> Item:
    return _key(f"REPLAY#{key}", "CURVES")


def validator_key(name: str) -> Item:
    return _key(VALIDATORS_PK, f"VALIDATOR#{name}")


def rejection_key(record: RejectionRecord) -> Item:
    return _key(f"METER#{record.meter_address}", rejection_sort_key(record))


# -- sort keys of indexes and listings ----------------------------------------

_PRICE_KEY: Final = re.compile(r"^\d{12}#energy-0x[0-9a-f]{16}$")
_ENTRY_KEY: Final = re.compile(r"^\d{12}#[a-z]+#[A-Za-z0-9:_./\-]{1,200}$")
_MINTED_KEY: Final = re.compile(r"^\d{15}#[0-9a-f]{64}$")
_REJECTION_KEY: Final = re.compile(r"^REJECTION#\d{15}#[0-9a-f]{32}$")
_BUYER_KEY: Final = re.compile(r"^[OS]#\d{15}#pur-[0-9a-f]{32}$")
_RECEIPT_KEY: Final = re.compile(r"^RECEIPT#\d{12}$")
_ISSUED_KEY: Final = re.compile(r"^\d{15}#energy-0x[0-9a-f]{16}#\d{12}$")
_OPENED_KEY: Final = re.compile(r"^\d{15}#dsp-[0-9a-f]{32}$")


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


def window_keys(from_ms: int, to_ms: int) -> tuple[str, str]:
    """The minted keys of credits whose interval ends in ``[from_ms, to_ms)``, as an
    inclusive BETWEEN range (``#`` sorts before every hex digit, ``~`` after)."""
    return f"{from_ms:015d}#", f"{to_ms - 1:015d}#~"


def rejection_sort_key(record: RejectionRecord) -> str:
    # The payload hash makes a redelivery of one message the same record.
    return f"REJECTION#{record.at_ms:015d}#{record.payload_hash[:32]}"


def buyer_key(purchase: Purchase) -> str:
    """A buyer's purchases: open ones (``O#``) by creation, closed ones (``S#``,
    settled or revoked) by when they closed."""
    if purchase.status == PurchaseStatus.OPEN:
        return f"O#{purchase.created_at_ms:015d}#{purchase.purchase_id}"
    return f"S#{purchase.closed_at_ms or 0:015d}#{purchase.purchase_id}"


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


def due_slot(settles_at_ms: int) -> str:
    """PurchasesDue's partition: the hour a purchase falls due in."""
    return f"D{settles_at_ms // HOUR_MS}"


def due_slot_of_hour(hour: int) -> str:
    return f"D{hour}"


def due_key(purchase: Purchase) -> str:
    return f"{purchase.settles_at_ms:015d}#{purchase.purchase_id}"


def expiry_key(credit: Credit) -> str:
    return f"{credit.expires_at_ms:015d}#{credit.credit_id}"


def due_by(now_ms: int) -> str:
    """The largest due or expiry key at or before ``now_ms``."""
    return f"{now_ms:015d}#~"


def opened_key(opened_at_ms: int, dispute_id: str) -> str:
    """Disputes sort by when they opened, then id (DisputesByProvider, DisputesByStatus)."""
    return f"{opened_at_ms:015d}#{dispute_id}"


def deadline_slot(deadline_ms: int) -> str:
    """OpenDisputesBySlot's partition: the hour an open dispute's deadline falls in."""
    return f"D{deadline_ms // HOUR_MS}"


def deadline_key(deadline_ms: int, dispute_id: str) -> str:
    return f"{deadline_ms:015d}#{dispute_id}"


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


def decode_opened_cursor(cursor: str) -> str:
    return _decode(cursor, _OPENED_KEY)


def _decode(cursor: str, shape: re.Pattern[str]) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        sort_key = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor("cursor is not one this service issued") from exc
    if not shape.match(sort_key):
        raise InvalidCursor("cursor is not one this service issued")
    return sort_key
