"""Settlement receipts: signed by the marketplace, chained by hash, checkable offline.

Each provider's settlements form one chain: receipt n names the hash of
receipt n-1 (the first names ``GENESIS_HASH``). A receipt's hash is the
SHA-256 of its signed message, and the message is a domain-separated,
versioned prefix followed by the RFC 8785 canonical JSON of every field but
``receipt_hash`` and ``signature``::

    message   = b"energy-marketplace/receipt/v1\\n" + canonical_json(body)
    hash      = sha256(message)           (hex)
    signature = Ed25519(marketplace key, message)   (hex)

One chain per provider, not one for the whole market: a single chain head
would be one item that every settlement in the market writes, and DynamoDB
serialises writes to an item. Per provider, settlements of one provider
serialise, which they must anyway (they share its counters).

Anyone holding an export and the marketplace's receipt public key (from
``energy.getMarketInfo``) can check every link without trusting the
service: see ``verify_export`` and docs/receipts.md.

A chain's newest receipts can be cut off without leaving a gap, so the
service signs each chain's head when it is read (``SignedHead``: the chain,
its length, its last hash and the time), with the same key and its own
domain prefix; an export carries those signed heads and the verifier checks
that each chain ends exactly there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Final

from nacl.signing import SigningKey

from chalicelib.domain import signing
from chalicelib.domain.trading import Purchase, SettledBy

RECEIPT_DOMAIN: Final = b"energy-marketplace/receipt/v1\n"
HEAD_DOMAIN: Final = b"energy-marketplace/receipt-head/v1\n"
GENESIS_HASH: Final = "0" * 64


@dataclass(frozen=True)
class Receipt:
    marketplace_id: str
    chain: str  # the provider id: one chain per provider
    sequence: int  # 1, 2, ... within the chain
    previous_hash: str  # receipt_hash of sequence - 1, or GENESIS_HASH
    kind: str  # "settlement"
    transaction_id: str  # the purchase settled
    buyer: str
    provider_id: str
    provider_owner: str  # the account paid
    wh: int
    price_micro_block_per_kwh: int
    total_cost_micro_block: int  # the escrow released
    fee_micro_block: int  # to the treasury
    provider_amount_micro_block: int  # to the provider's owner
    credit_ids: tuple[str, ...]  # the credits that became the buyer's
    settled_at_ms: int
    settled_by: str  # "buyer" (early) or "schedule"
    receipt_hash: str = ""
    signature: str = ""

    def body(self) -> dict[str, Any]:
        """The signed fields, as JSON values."""
        values = asdict(self)
        del values["receipt_hash"], values["signature"]
        values["credit_ids"] = list(self.credit_ids)
        return values

    def message(self) -> bytes:
        return RECEIPT_DOMAIN + signing.canonical_json(self.body())

    def to_json(self) -> dict[str, Any]:
        return self.body() | {"receipt_hash": self.receipt_hash, "signature": self.signature}


@dataclass(frozen=True)
class ChainHead:
    """The newest receipt of a chain: what the next one links to."""

    chain: str
    sequence: int
    receipt_hash: str


@dataclass(frozen=True)
class SignedHead:
    """A chain's head as the marketplace vouched for it at ``signed_at_ms``: the
    chain then held ``sequence`` receipts (sequences start at 1) and ended with
    ``receipt_hash``. Signed when read, so an export says how far, and as of
    when, its chains are complete."""

    marketplace_id: str
    chain: str
    sequence: int
    receipt_hash: str
    signed_at_ms: int
    signature: str = ""

    def body(self) -> dict[str, Any]:
        values = asdict(self)
        del values["signature"]
        return values

    def message(self) -> bytes:
        return HEAD_DOMAIN + signing.canonical_json(self.body())

    def to_json(self) -> dict[str, Any]:
        return self.body() | {"signature": self.signature}

    @property
    def head(self) -> ChainHead:
        return ChainHead(self.chain, self.sequence, self.receipt_hash)


def signed_head(head: ChainHead, marketplace_id: str, at_ms: int, key: SigningKey) -> SignedHead:
    """The head, signed by the marketplace's receipt key at ``at_ms``."""
    unsigned = SignedHead(marketplace_id, head.chain, head.sequence, head.receipt_hash, at_ms)
    return replace(unsigned, signature=signing.sign(key, unsigned.message()))


def sealed(receipt: Receipt, key: SigningKey) -> Receipt:
    """The receipt with its hash and the marketplace's signature filled in."""
    message = receipt.message()
    return Receipt(
        **{
            **{f.name: getattr(receipt, f.name) for f in fields(receipt)},
            "receipt_hash": hashlib.sha256(message).hexdigest(),
            "signature": signing.sign(key, message),
        }
    )


def settlement_receipt(
    marketplace_id: str,
    purchase: Purchase,
    provider_owner: str,
    fee_micro_block: int,
    after: ChainHead | None,
    settled_at_ms: int,
    settled_by: SettledBy,
    key: SigningKey,
) -> Receipt:
    """The sealed receipt of ``purchase``'s settlement: the escrow less the fee
    goes to the provider's owner; it follows ``after`` in the provider's chain
    (None: it starts the chain)."""
    return sealed(
        Receipt(
            marketplace_id=marketplace_id,
            chain=purchase.provider_id,
            sequence=after.sequence + 1 if after else 1,
            previous_hash=after.receipt_hash if after else GENESIS_HASH,
            kind="settlement",
            transaction_id=purchase.purchase_id,
            buyer=purchase.buyer,
            provider_id=purchase.provider_id,
            provider_owner=provider_owner,
            wh=purchase.wh,
            price_micro_block_per_kwh=purchase.price_micro_block_per_kwh,
            total_cost_micro_block=purchase.escrow_micro_block,
            fee_micro_block=fee_micro_block,
            provider_amount_micro_block=purchase.escrow_micro_block - fee_micro_block,
            credit_ids=purchase.credit_ids,
            settled_at_ms=settled_at_ms,
            settled_by=str(settled_by),
        ),
        key,
    )


def slash_chain(provider_id: str) -> str:
    """A provider's slash receipts form a chain of their own beside its settlements'."""
    return f"{provider_id}/slashes"


@dataclass(frozen=True)
class SlashReceipt:
    """What a guilty verdict took and where it went, signed and chained like a
    settlement receipt (same message rule; ``kind`` is ``"slash"``).

    The money adds up: ``slash = refunded + flagger_reward + treasury``. The
    escrow refunded to buyers of reserved credits never left escrow, so it is
    not part of the slash.
    """

    marketplace_id: str
    chain: str  # slash_chain(provider_id)
    sequence: int
    previous_hash: str
    kind: str  # "slash"
    dispute_id: str
    subject: str  # the dispute's subject key, e.g. "reading\n<hash>"
    provider_id: str
    provider_owner: str
    severity: str
    decided_by: str  # "quorum" or "deadline"
    guilty_votes: int
    cleared_votes: int
    non_voters: tuple[str, ...]
    stake_before_micro_block: int
    slash_micro_block: int
    stake_after_micro_block: int
    refunded_micro_block: int  # to buyers of revoked settled credits
    unrefunded_micro_block: int  # what those buyers were owed beyond the slash
    escrow_refunded_micro_block: int  # to buyers of revoked reserved credits
    flagger_reward_micro_block: int
    treasury_micro_block: int
    revoked_credits: int
    revoked_wh: int
    decided_at_ms: int
    closed_at_ms: int
    receipt_hash: str = ""
    signature: str = ""

    def body(self) -> dict[str, Any]:
        values = asdict(self)
        del values["receipt_hash"], values["signature"]
        values["non_voters"] = list(self.non_voters)
        return values

    def message(self) -> bytes:
        return RECEIPT_DOMAIN + signing.canonical_json(self.body())

    def to_json(self) -> dict[str, Any]:
        return self.body() | {"receipt_hash": self.receipt_hash, "signature": self.signature}


def sealed_slash(receipt: SlashReceipt, after: ChainHead | None, key: SigningKey) -> SlashReceipt:
    """The slash receipt placed after ``after`` in its chain, hashed and signed."""
    linked = replace(
        receipt,
        sequence=after.sequence + 1 if after else 1,
        previous_hash=after.receipt_hash if after else GENESIS_HASH,
    )
    message = linked.message()
    return replace(
        linked,
        receipt_hash=hashlib.sha256(message).hexdigest(),
        signature=signing.sign(key, message),
    )


_SLASH_FIELDS: Final = {f.name for f in fields(SlashReceipt)}
_SLASH_INT_FIELDS: Final = {
    name
    for name in _SLASH_FIELDS
    if name.endswith(("_micro_block", "_ms", "_votes", "_credits", "_wh")) or name == "sequence"
}


def slash_receipt_from_json(values: Mapping[str, Any]) -> SlashReceipt:
    """A slash receipt as exported (``SlashReceipt.to_json``); MalformedReceipt otherwise."""
    if not isinstance(values, Mapping) or set(values) != _SLASH_FIELDS:
        raise MalformedReceipt("a slash receipt has exactly the documented fields")
    for name in _SLASH_INT_FIELDS:
        if type(values[name]) is not int:
            raise MalformedReceipt(f"{name} must be an integer")
    non_voters = values["non_voters"]
    if not isinstance(non_voters, list) or not all(_is_text(c) for c in non_voters):
        raise MalformedReceipt("non_voters must be a list of strings")
    for name in _SLASH_FIELDS - _SLASH_INT_FIELDS - {"non_voters"}:
        if not _is_text(values[name]):
            raise MalformedReceipt(f"{name} must be a string")
    return SlashReceipt(**{**values, "non_voters": tuple(non_voters)})


AnyReceipt = Receipt | SlashReceipt


_FIELDS: Final = {f.name for f in fields(Receipt)}
_INT_FIELDS: Final = {
    "sequence",
    "wh",
    "price_micro_block_per_kwh",
    "total_cost_micro_block",
    "fee_micro_block",
    "provider_amount_micro_block",
    "settled_at_ms",
}


class MalformedReceipt(ValueError):
    pass


def receipt_from_json(values: Mapping[str, Any]) -> AnyReceipt:
    """A receipt as exported (``to_json``): a settlement's, or a slash's by its
    ``kind``; MalformedReceipt otherwise."""
    if isinstance(values, Mapping) and values.get("kind") == "slash":
        return slash_receipt_from_json(values)
    if not isinstance(values, Mapping) or set(values) != _FIELDS:
        raise MalformedReceipt("a receipt has exactly the documented fields")
    for name in _INT_FIELDS:
        if type(values[name]) is not int:
            raise MalformedReceipt(f"{name} must be an integer")
    credit_ids = values["credit_ids"]
    if not isinstance(credit_ids, list) or not all(_is_text(c) for c in credit_ids):
        raise MalformedReceipt("credit_ids must be a list of strings")
    for name in _FIELDS - _INT_FIELDS - {"credit_ids"}:
        if not _is_text(values[name]):
            raise MalformedReceipt(f"{name} must be a string")
    return Receipt(**{**values, "credit_ids": tuple(credit_ids)})


def _is_text(value: object) -> bool:
    """A string that has UTF-8 bytes to hash (JSON can also carry lone surrogates)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class ChainReport:
    chain: str
    receipts: int  # how many verified before the first broken link (all, if intact)
    head: ChainHead | None  # the last verified receipt
    broken_at: int | None = None  # the position in the export of the first bad receipt
    problem: str | None = None
    head_signed_at_ms: int | None = None  # when the marketplace signed the export's head

    @property
    def intact(self) -> bool:
        return self.problem is None


def verify_chain(
    receipts: Sequence[AnyReceipt],
    public_key_hex: str,
    *,
    marketplace_id: str | None = None,
    positions: Sequence[int] | None = None,
    expected_head: ChainHead | None = None,
) -> ChainReport:
    """Check one chain from its first receipt, in order; report the first broken link.

    A changed field breaks that receipt's hash (or, if the hash was recomputed,
    its signature); a deleted or reordered receipt breaks the sequence and the
    link to its predecessor. A deleted *newest* receipt leaves no gap, so an
    export carries the chain head the service reported (``expected_head``).
    """
    chain = receipts[0].chain if receipts else (expected_head.chain if expected_head else "")
    where = list(positions) if positions is not None else list(range(len(receipts)))
    previous = ChainHead(chain, 0, GENESIS_HASH)

    def broken(index: int, problem: str) -> ChainReport:
        head = previous if previous.sequence else None
        return ChainReport(chain, index, head, where[index], problem)

    for index, receipt in enumerate(receipts):
        message = receipt.message()
        if receipt.chain != chain:
            return broken(index, f"receipt belongs to chain {receipt.chain}")
        if marketplace_id is not None and receipt.marketplace_id != marketplace_id:
            return broken(index, f"receipt is from marketplace {receipt.marketplace_id}")
        if receipt.sequence != previous.sequence + 1:
            return broken(
                index,
                f"sequence {receipt.sequence} follows {previous.sequence}: "
                "a receipt is missing or out of order",
            )
        if receipt.previous_hash != previous.receipt_hash:
            return broken(index, f"previous_hash does not match receipt {previous.sequence}")
        if hashlib.sha256(message).hexdigest() != receipt.receipt_hash:
            return broken(index, "receipt_hash does not match its contents: it was altered")
        if not signing.verify(public_key_hex, message, receipt.signature):
            return broken(index, "signature is not the marketplace's")
        previous = ChainHead(chain, receipt.sequence, receipt.receipt_hash)

    last = previous if previous.sequence else None
    if expected_head is not None and last != expected_head:
        seen = last.sequence if last else 0
        return ChainReport(
            chain,
            len(receipts),
            last,
            where[-1] + 1 if where else 0,
            f"the chain head is receipt {expected_head.sequence} but the export ends at {seen}",
        )
    return ChainReport(chain, len(receipts), last)


def verify_export(export: object, public_key_hex: str | None = None) -> list[ChainReport]:
    """Verify every chain in an export (see docs/receipts.md for its shape).

    ``public_key_hex`` is the key the verifier trusts; without it, the key
    written in the export is used (which proves integrity, not origin).
    """
    if not isinstance(export, Mapping):
        raise MalformedReceipt("an export is a JSON object")
    key = public_key_hex or export.get("receipt_public_key")
    if not isinstance(key, str) or not signing.is_public_key_hex(key):
        raise MalformedReceipt("no receipt public key to verify against")
    raw = export.get("receipts")
    if not isinstance(raw, list):
        raise MalformedReceipt("an export holds a list of receipts")
    if "heads" not in export:
        raise MalformedReceipt("an export lists the head of every chain it holds")
    heads = {h.chain: h for h in _heads(export["heads"])}
    by_chain: dict[str, list[tuple[int, AnyReceipt]]] = {}
    for position, values in enumerate(raw):
        receipt = receipt_from_json(values)
        by_chain.setdefault(receipt.chain, []).append((position, receipt))
    marketplace = export.get("marketplace_id")
    reports = []
    for chain in sorted(set(by_chain) | set(heads)):
        entries = by_chain.get(chain, [])
        first = entries[0][0] if entries else 0
        if chain not in heads:
            # Every chain exported has its head; without one, a deleted newest
            # receipt would go unseen, so receipts of any other chain are refused.
            problem = "the export has no head for this chain: its receipts were added"
            reports.append(ChainReport(chain, 0, None, first, problem))
            continue
        head = heads[chain]
        # The head is what says where the chain ends: one not signed by the
        # marketplace could be moved back over receipts cut from the end.
        head_problem = None
        if not signing.verify(key, head.message(), head.signature):
            head_problem = "the chain head is not signed by the marketplace's key: it was changed"
        elif isinstance(marketplace, str) and head.marketplace_id != marketplace:
            head_problem = f"the chain head is from marketplace {head.marketplace_id}"
        report = verify_chain(
            [r for _, r in entries],
            key,
            marketplace_id=marketplace if isinstance(marketplace, str) else None,
            positions=[p for p, _ in entries],
            expected_head=head.head if head_problem is None else None,
        )
        if report.intact and head_problem is not None:
            # The receipts hold together; it is the head that cannot be trusted.
            end = entries[-1][0] + 1 if entries else 0
            report = replace(report, broken_at=end, problem=head_problem)
        reports.append(replace(report, head_signed_at_ms=head.signed_at_ms))
    return reports


def _heads(raw: Any) -> Iterable[SignedHead]:
    if not isinstance(raw, list):
        raise MalformedReceipt("heads must be a list")
    for head in raw:
        if (
            not isinstance(head, Mapping)
            or not all(
                isinstance(head.get(name), str)
                for name in ("marketplace_id", "chain", "receipt_hash", "signature")
            )
            or type(head.get("sequence")) is not int
            or type(head.get("signed_at_ms")) is not int
        ):
            raise MalformedReceipt(
                "a head has marketplace_id, chain, sequence, receipt_hash, signed_at_ms "
                "and signature"
            )
        yield SignedHead(
            head["marketplace_id"],
            head["chain"],
            head["sequence"],
            head["receipt_hash"],
            head["signed_at_ms"],
            head["signature"],
        )
