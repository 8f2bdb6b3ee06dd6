"""In-memory storage with the same interface and conditions as DynamoDB.

Used by the fast tests and the property tests. Every test under
tests/integration runs once on this adapter and once on DynamoDB (moto), through
the ``market`` fixture, so the two cannot drift.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from chalicelib.adapters.keys import (
    buyer_key,
    decode_buyer_cursor,
    decode_entry_cursor,
    decode_issued_cursor,
    decode_minted_cursor,
    decode_price_cursor,
    decode_receipt_cursor,
    decode_rejection_cursor,
    encode_cursor,
    entry_key,
    expiry_slot,
    issued_key,
    minted_key,
    price_key,
    receipt_sort_key,
    rejection_sort_key,
)
from chalicelib.domain.accounts import Account, Role
from chalicelib.domain.credits import Credit, CreditState, Retirement
from chalicelib.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    DomainError,
    InsufficientBalance,
    InvalidCursor,
    NotFound,
    ReplayedRequest,
)
from chalicelib.domain.ledger import EntryKind, LedgerEntry
from chalicelib.domain.providers import Provider, ProviderStatus
from chalicelib.domain.readings import MeterState, RejectionRecord
from chalicelib.domain.receipts import ChainHead, Receipt
from chalicelib.domain.trading import Purchase, PurchaseStatus, split_part
from chalicelib.services.ports import Page, ProviderQuery


@dataclass
class MemoryState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    accounts: dict[str, Account] = field(default_factory=dict)
    nonces: dict[tuple[str, str], int] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)
    treasury: dict[int, int] = field(default_factory=dict)
    entries: dict[tuple[EntryKind, str], LedgerEntry] = field(default_factory=dict)
    providers: dict[str, Provider] = field(default_factory=dict)
    meters: dict[str, MeterState] = field(default_factory=dict)
    rejections: dict[tuple[str, str], RejectionRecord] = field(default_factory=dict)
    credits: dict[str, Credit] = field(default_factory=dict)
    purchases: dict[str, Purchase] = field(default_factory=dict)
    bought: dict[str, dict[str, int]] = field(default_factory=dict)
    receipts: dict[tuple[str, int], Receipt] = field(default_factory=dict)
    heads: dict[str, ChainHead] = field(default_factory=dict)
    watermarks: dict[str, int] = field(default_factory=dict)


T = TypeVar("T")

# A staged write: a condition that returns the error to raise (or None), and
# the change to apply once every condition of the commit holds.
Check = Callable[[MemoryState], DomainError | None]
Apply = Callable[[MemoryState], None]


class _Staged:
    def __init__(self, state: MemoryState) -> None:
        self._state = state
        self.writes: list[tuple[Check, Apply]] = []

    def stage(self, check: Check, apply: Apply) -> None:
        self.writes.append((check, apply))


class MemoryAccounts:
    def __init__(self, staged: _Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def get(self, name: str) -> Account | None:
        return self._state.accounts.get(name)

    def add(self, account: Account) -> None:
        self._staged.stage(
            lambda s: (
                AlreadyExists("account already exists", account=account.name)
                if account.name in s.accounts
                else None
            ),
            lambda s: s.accounts.__setitem__(account.name, account),
        )

    def add_role(self, name: str, role: Role) -> None:
        self._change_roles(name, lambda roles: roles | {role})

    def remove_role(self, name: str, role: Role) -> None:
        self._change_roles(name, lambda roles: roles - {role})

    def _change_roles(
        self, name: str, change: Callable[[frozenset[Role]], frozenset[Role]]
    ) -> None:
        def apply(s: MemoryState) -> None:
            s.accounts[name] = replace(s.accounts[name], roles=change(s.accounts[name].roles))

        self._staged.stage(
            lambda s: None if name in s.accounts else NotFound("no such account", account=name),
            apply,
        )


class MemoryNonces:
    def __init__(self, staged: _Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def seen(self, account: str, nonce: str) -> bool:
        return (account, nonce) in self._state.nonces

    def consume(self, account: str, nonce: str, expires_at: int) -> None:
        self._staged.stage(
            lambda s: (
                ReplayedRequest("this request was already received", nonce=nonce)
                if (account, nonce) in s.nonces
                else None
            ),
            lambda s: s.nonces.__setitem__((account, nonce), expires_at),
        )


class MemoryLedger:
    def __init__(self, staged: _Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def balance(self, account: str) -> int:
        return self._state.balances.get(account, 0)

    def treasury(self) -> int:
        return sum(self._state.treasury.values())

    def entries(self, account: str, limit: int, cursor: str | None) -> Page[LedgerEntry]:
        keyed = (
            (entry_key(e.at, e.kind, e.entry_id), e)
            for e in self._state.entries.values()
            if e.account == account
        )
        return _page(keyed, decode_entry_cursor(cursor) if cursor else None, limit)

    def open_account(self, account: str) -> None:
        self._staged.stage(
            lambda s: (
                AlreadyExists("account already exists", account=account)
                if account in s.balances
                else None
            ),
            lambda s: s.balances.__setitem__(account, 0),
        )

    def credit(self, account: str, micro_block: int) -> None:
        self._staged.stage(
            lambda s: (
                None if account in s.balances else NotFound("no such account", account=account)
            ),
            lambda s: s.balances.__setitem__(account, s.balances[account] + micro_block),
        )

    def debit(self, account: str, micro_block: int) -> None:
        self._staged.stage(
            lambda s: (
                None
                if s.balances.get(account, -1) >= micro_block
                else InsufficientBalance("the balance does not cover this", account=account)
            ),
            lambda s: s.balances.__setitem__(account, s.balances[account] - micro_block),
        )

    def record(self, entry: LedgerEntry) -> None:
        key = (entry.kind, entry.entry_id)
        self._staged.stage(
            lambda s: (
                AlreadyExists(f"this {entry.kind} was already recorded", entry_id=entry.entry_id)
                if key in s.entries
                else None
            ),
            lambda s: s.entries.__setitem__(key, entry),
        )

    def credit_treasury(self, shard: int, micro_block: int) -> None:
        self._staged.stage(
            lambda s: None,
            lambda s: s.treasury.__setitem__(shard, s.treasury.get(shard, 0) + micro_block),
        )

    def bought(self, account: str) -> dict[str, int]:
        return dict(self._state.bought.get(account, {}))

    def record_bought(self, account: str, energy_type: str, wh: int) -> None:
        def apply(s: MemoryState) -> None:
            counts = s.bought.setdefault(account, {})
            counts[energy_type] = counts.get(energy_type, 0) + wh

        self._staged.stage(lambda s: None, apply)


class MemoryProviders:
    def __init__(self, staged: _Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def get(self, provider_id: str) -> Provider | None:
        return self._state.providers.get(provider_id)

    def owned_by(self, owner: str) -> Sequence[Provider]:
        return sorted(
            (p for p in self._state.providers.values() if p.owner == owner),
            key=lambda p: p.provider_id,
        )

    def query(self, query: ProviderQuery, limit: int, cursor: str | None) -> Page[Provider]:
        keyed = ((price_key(p), p) for p in self._state.providers.values() if query.admits(p))
        return _page(keyed, decode_price_cursor(cursor) if cursor else None, limit)

    def add(self, provider: Provider) -> None:
        def check(s: MemoryState) -> DomainError | None:
            if provider.provider_id in s.providers:
                return AlreadyExists(
                    "provider already registered", provider_id=provider.provider_id
                )
            if provider.meter_address in s.meters:
                return AlreadyExists(
                    "meter address already registered", meter_address=provider.meter_address
                )
            return None

        def apply(s: MemoryState) -> None:
            s.providers[provider.provider_id] = provider
            s.meters[provider.meter_address] = MeterState(
                provider.meter_address, provider.provider_id, provider.meter_public_key
            )

        self._staged.stage(check, apply)

    def save(self, provider: Provider, expected_version: int) -> None:
        def check(s: MemoryState) -> DomainError | None:
            stored = s.providers.get(provider.provider_id)
            if stored is None or stored.version != expected_version:
                return ConcurrentUpdate(
                    "the provider changed; retry", provider_id=provider.provider_id
                )
            return None

        def apply(s: MemoryState) -> None:
            stored = s.providers[provider.provider_id]
            # Ingestion's counters are not the profile's to write.
            s.providers[provider.provider_id] = replace(
                provider,
                available_wh=stored.available_wh,
                reading_slots=stored.reading_slots,
                open_obligations=stored.open_obligations,
                settled_purchases=stored.settled_purchases,
                earned_micro_block=stored.earned_micro_block,
                sold_wh=stored.sold_wh,
            )

        self._staged.stage(check, apply)

    def reserve_energy(self, provider: Provider, wh: int) -> None:
        def check(s: MemoryState) -> DomainError | None:
            stored = s.providers.get(provider.provider_id)
            if (
                stored is None
                or stored.available_wh < wh
                or stored.status != ProviderStatus.ACTIVE
                or stored.price_micro_block_per_kwh != provider.price_micro_block_per_kwh
            ):
                return ConcurrentUpdate(
                    "the provider changed; retry", provider_id=provider.provider_id
                )
            return None

        def apply(s: MemoryState) -> None:
            stored = s.providers[provider.provider_id]
            s.providers[provider.provider_id] = replace(
                stored,
                available_wh=stored.available_wh - wh,
                open_obligations=stored.open_obligations + 1,
                version=stored.version + 1,
            )

        self._staged.stage(check, apply)

    def record_generation(self, provider_id: str, wh: int, reading_slots: frozenset[int]) -> None:
        def apply(s: MemoryState) -> None:
            stored = s.providers[provider_id]
            s.providers[provider_id] = replace(
                stored, available_wh=stored.available_wh + wh, reading_slots=reading_slots
            )

        self._staged.stage(
            lambda s: (
                None
                if provider_id in s.providers
                else NotFound("no such provider", provider_id=provider_id)
            ),
            apply,
        )

    def settle_obligation(self, provider_id: str, earned_micro_block: int, wh: int) -> None:
        def check(s: MemoryState) -> DomainError | None:
            stored = s.providers.get(provider_id)
            if stored is None or stored.open_obligations < 1:
                return ConcurrentUpdate("the provider changed; retry", provider_id=provider_id)
            return None

        def apply(s: MemoryState) -> None:
            stored = s.providers[provider_id]
            s.providers[provider_id] = replace(
                stored,
                open_obligations=stored.open_obligations - 1,
                settled_purchases=stored.settled_purchases + 1,
                earned_micro_block=stored.earned_micro_block + earned_micro_block,
                sold_wh=stored.sold_wh + wh,
            )

        self._staged.stage(check, apply)

    def expire_energy(self, provider_id: str, wh: int) -> None:
        def check(s: MemoryState) -> DomainError | None:
            stored = s.providers.get(provider_id)
            if stored is None or stored.available_wh < wh:
                return ConcurrentUpdate("the provider changed; retry", provider_id=provider_id)
            return None

        def apply(s: MemoryState) -> None:
            stored = s.providers[provider_id]
            s.providers[provider_id] = replace(stored, available_wh=stored.available_wh - wh)

        self._staged.stage(check, apply)


class MemoryMeters:
    def __init__(self, staged: _Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def get(self, meter_address: str) -> MeterState | None:
        return self._state.meters.get(meter_address)

    def get_with_provider(
        self, meter_address: str, provider_id: str
    ) -> tuple[MeterState | None, Provider | None]:
        return self._state.meters.get(meter_address), self._state.providers.get(provider_id)

    def advance(self, before: MeterState, after: MeterState) -> None:
        def check(s: MemoryState) -> DomainError | None:
            stored = s.meters.get(before.meter_address)
            if stored is None or stored.last_reading_hash != before.last_reading_hash:
                return ConcurrentUpdate(
                    "the meter moved on; retry", meter_address=before.meter_address
                )
            return None

        def apply(s: MemoryState) -> None:
            stored = s.meters[before.meter_address]
            s.meters[before.meter_address] = replace(
                stored,
                last_counter_wh=after.last_counter_wh,
                last_timestamp_ms=after.last_timestamp_ms,
                last_reading_hash=after.last_reading_hash,
                accepted_readings=stored.accepted_readings + 1,
            )

        self._staged.stage(check, apply)

    def rotate_key(self, meter_address: str, public_key: str) -> None:
        self._staged.stage(
            lambda s: (
                None
                if meter_address in s.meters
                else NotFound("no such meter", meter_address=meter_address)
            ),
            lambda s: s.meters.__setitem__(
                meter_address, replace(s.meters[meter_address], public_key=public_key)
            ),
        )

    def record_rejection(self, record: RejectionRecord, meter_known: bool) -> None:
        key = (record.meter_address, rejection_sort_key(record))

        def apply(s: MemoryState) -> None:
            s.rejections[key] = record
            meter = s.meters.get(record.meter_address)
            if meter_known and meter is not None:
                counts = dict(meter.rejections)
                counts[record.reason] = counts.get(record.reason, 0) + 1
                s.meters[record.meter_address] = replace(
                    meter, rejections=tuple(sorted(counts.items()))
                )

        self._staged.stage(
            lambda s: (
                AlreadyExists("this delivery was already recorded") if key in s.rejections else None
            ),
            apply,
        )

    def rejections(
        self, meter_address: str, limit: int, cursor: str | None
    ) -> Page[RejectionRecord]:
        keyed = ((k, r) for (a, k), r in self._state.rejections.items() if a == meter_address)
        return _page(
            keyed, decode_rejection_cursor(cursor) if cursor else None, limit, newest_first=True
        )


class MemoryCredits:
    def __init__(self, staged: _Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def get(self, credit_id: str) -> Credit | None:
        return self._state.credits.get(credit_id)

    def mint(self, credit: Credit) -> None:
        self._staged.stage(
            lambda s: (
                AlreadyExists("this reading was already minted", credit_id=credit.credit_id)
                if credit.credit_id in s.credits
                else None
            ),
            lambda s: s.credits.__setitem__(credit.credit_id, credit),
        )

    def available(self, provider_id: str, limit: int) -> Sequence[Credit]:
        on_sale = sorted(
            (
                c
                for c in self._state.credits.values()
                if c.provider_id == provider_id and c.state == CreditState.AVAILABLE
            ),
            key=minted_key,
        )
        return on_sale[:limit]

    def _on_sale_as_read(self, credit: Credit) -> Check:
        return self._in_state(credit.credit_id, CreditState.AVAILABLE, wh=credit.wh)

    def reserve(self, credit: Credit, purchase_id: str) -> None:
        self._staged.stage(
            self._on_sale_as_read(credit),
            lambda s: s.credits.__setitem__(
                credit.credit_id,
                replace(credit, state=CreditState.RESERVED, purchase_id=purchase_id),
            ),
        )

    def split(self, credit: Credit, take_wh: int, purchase_id: str) -> Credit:
        part = split_part(credit, take_wh, purchase_id)

        def apply(s: MemoryState) -> None:
            s.credits[credit.credit_id] = replace(credit, wh=credit.wh - take_wh)
            s.credits[part.credit_id] = part

        self._staged.stage(self._on_sale_as_read(credit), apply)
        return part

    def get_many(self, credit_ids: Sequence[str]) -> Sequence[Credit]:
        return [self._state.credits[c] for c in credit_ids if c in self._state.credits]

    def _in_state(self, credit_id: str, state: CreditState, **match: object) -> Check:
        def check(s: MemoryState) -> DomainError | None:
            stored = s.credits.get(credit_id)
            if (
                stored is None
                or stored.state != state
                or any(getattr(stored, k) != v for k, v in match.items())
            ):
                return ConcurrentUpdate("the credit changed; retry", credit_id=credit_id)
            return None

        return check

    def hold(self, credit_id: str, purchase_id: str, buyer: str) -> None:
        self._staged.stage(
            self._in_state(credit_id, CreditState.RESERVED, purchase_id=purchase_id),
            lambda s: s.credits.__setitem__(
                credit_id, replace(s.credits[credit_id], state=CreditState.HELD, holder=buyer)
            ),
        )

    def holdings(self, holder: str, limit: int, cursor: str | None) -> Page[Credit]:
        keyed = (
            (minted_key(c), c)
            for c in self._state.credits.values()
            if c.state == CreditState.HELD and c.holder == holder
        )
        return _page(
            keyed, decode_minted_cursor(cursor) if cursor else None, limit, newest_first=True
        )

    def expiring(self, slot: str, now_ms: int, limit: int) -> Sequence[Credit]:
        due = sorted(
            (
                c
                for c in self._state.credits.values()
                if c.state == CreditState.AVAILABLE
                and expiry_slot(c.expires_at_ms, c.credit_id) == slot
                and c.expires_at_ms <= now_ms
            ),
            key=lambda c: (c.expires_at_ms, c.credit_id),
        )
        return due[:limit]

    def expire(self, credit: Credit) -> None:
        self._staged.stage(
            self._on_sale_as_read(credit),
            lambda s: s.credits.__setitem__(
                credit.credit_id, replace(s.credits[credit.credit_id], state=CreditState.EXPIRED)
            ),
        )

    def retire(self, credit: Credit, retirement: Retirement) -> None:
        self._staged.stage(
            self._in_state(credit.credit_id, CreditState.HELD, holder=retirement.retired_by),
            lambda s: s.credits.__setitem__(
                credit.credit_id,
                replace(
                    s.credits[credit.credit_id],
                    state=CreditState.RETIRED,
                    retirement=retirement,
                ),
            ),
        )

    def by_provider(self, provider_id: str, limit: int, cursor: str | None) -> Page[Credit]:
        keyed = (
            (minted_key(c), c)
            for c in self._state.credits.values()
            if c.provider_id == provider_id and c.state != CreditState.BASELINE
        )
        return _page(
            keyed, decode_minted_cursor(cursor) if cursor else None, limit, newest_first=True
        )


class MemoryPurchases:
    def __init__(self, staged: _Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def get(self, purchase_id: str) -> Purchase | None:
        return self._state.purchases.get(purchase_id)

    def add(self, purchase: Purchase) -> None:
        self._staged.stage(
            lambda s: (
                AlreadyExists("purchase already recorded", purchase_id=purchase.purchase_id)
                if purchase.purchase_id in s.purchases
                else None
            ),
            lambda s: s.purchases.__setitem__(purchase.purchase_id, purchase),
        )

    def settle(self, settled: Purchase) -> None:
        self._staged.stage(
            lambda s: (
                None
                if s.purchases[settled.purchase_id].status == PurchaseStatus.OPEN
                else ConcurrentUpdate(
                    "the purchase was settled already", transaction_id=settled.purchase_id
                )
            ),
            lambda s: s.purchases.__setitem__(settled.purchase_id, settled),
        )

    def due(self, hour: int, now_ms: int, limit: int) -> Sequence[Purchase]:
        due = sorted(
            (
                p
                for p in self._state.purchases.values()
                if p.status == PurchaseStatus.OPEN
                and p.settles_at_ms // 3_600_000 == hour
                and p.settles_at_ms <= now_ms
            ),
            key=lambda p: (p.settles_at_ms, p.purchase_id),
        )
        return due[:limit]

    def by_buyer(
        self, buyer: str, *, open_only: bool, limit: int, cursor: str | None
    ) -> Page[Purchase]:
        prefix = "O#" if open_only else "S#"
        keyed = (
            (buyer_key(p), p)
            for p in self._state.purchases.values()
            if p.buyer == buyer and buyer_key(p).startswith(prefix)
        )
        after = decode_buyer_cursor(cursor) if cursor else None
        if after is not None and not after.startswith(prefix):
            raise InvalidCursor("cursor is not one this listing issued")
        return _page(keyed, after, limit, newest_first=not open_only)


class MemoryReceipts:
    def __init__(self, staged: _Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def head(self, chain: str) -> ChainHead | None:
        return self._state.heads.get(chain)

    def get(self, chain: str, sequence: int) -> Receipt | None:
        return self._state.receipts.get((chain, sequence))

    def append(self, receipt: Receipt) -> None:
        def check(s: MemoryState) -> DomainError | None:
            head = s.heads.get(receipt.chain)
            if (head.sequence if head else 0) != receipt.sequence - 1:
                return ConcurrentUpdate("the receipt chain moved on; retry", chain=receipt.chain)
            return None

        def apply(s: MemoryState) -> None:
            s.receipts[(receipt.chain, receipt.sequence)] = receipt
            s.heads[receipt.chain] = ChainHead(
                receipt.chain, receipt.sequence, receipt.receipt_hash
            )

        self._staged.stage(check, apply)

    def by_chain(self, chain: str, limit: int, cursor: str | None) -> Page[Receipt]:
        keyed = (
            (receipt_sort_key(n), r) for (c, n), r in self._state.receipts.items() if c == chain
        )
        return _page(keyed, decode_receipt_cursor(cursor) if cursor else None, limit)

    def by_buyer(self, buyer: str, limit: int, cursor: str | None) -> Page[Receipt]:
        keyed = ((issued_key(r), r) for r in self._state.receipts.values() if r.buyer == buyer)
        return _page(
            keyed, decode_issued_cursor(cursor) if cursor else None, limit, newest_first=True
        )


class MemoryJobs:
    def __init__(self, staged: _Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def watermark(self, job: str) -> int | None:
        return self._state.watermarks.get(job)

    def advance(self, job: str, hour: int) -> None:
        self._staged.stage(
            lambda s: (
                ConcurrentUpdate("another run moved the watermark", job=job)
                if s.watermarks.get(job, -1) >= hour
                else None
            ),
            lambda s: s.watermarks.__setitem__(job, hour),
        )


def _page(
    keyed: Iterable[tuple[str, T]],
    cursor_key: str | None,
    limit: int,
    *,
    newest_first: bool = False,
) -> Page[T]:
    """One page of ``(sort key, item)`` pairs after the cursor's key, the way a
    DynamoDB Query pages: by sort key, ascending or (newest first) descending."""
    ordered = sorted(keyed, key=lambda pair: pair[0], reverse=newest_first)
    if cursor_key is not None:
        ordered = [
            (k, item) for k, item in ordered if (k < cursor_key if newest_first else k > cursor_key)
        ]
    page = ordered[:limit]
    more = len(ordered) > limit
    return Page([item for _, item in page], encode_cursor(page[-1][0]) if more else None)


class MemoryUnitOfWork:
    def __init__(self, state: MemoryState) -> None:
        self._state = state
        self._staged = _Staged(state)
        self.accounts = MemoryAccounts(self._staged, state)
        self.nonces = MemoryNonces(self._staged, state)
        self.ledger = MemoryLedger(self._staged, state)
        self.providers = MemoryProviders(self._staged, state)
        self.meters = MemoryMeters(self._staged, state)
        self.credits = MemoryCredits(self._staged, state)
        self.purchases = MemoryPurchases(self._staged, state)
        self.receipts = MemoryReceipts(self._staged, state)
        self.jobs = MemoryJobs(self._staged, state)

    def commit(self) -> None:
        writes, self._staged.writes = self._staged.writes, []
        with self._state.lock:
            for check, _ in writes:
                error = check(self._state)
                if error is not None:
                    raise error
            for _, apply in writes:
                apply(self._state)


def memory_unit_of_work_factory(state: MemoryState) -> Callable[[], MemoryUnitOfWork]:
    return lambda: MemoryUnitOfWork(state)
