"""In-memory storage with the same interface and conditions as DynamoDB.

Used by the fast tests and the property tests. Every test under
tests/integration runs once on this adapter and once on DynamoDB (moto), through
the ``market`` fixture, so the two cannot drift.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from chalicelib.adapters.keys import (
    decode_entry_cursor,
    decode_price_cursor,
    encode_cursor,
    entry_key,
    price_key,
)
from chalicelib.domain.accounts import Account, Role
from chalicelib.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    DomainError,
    InsufficientBalance,
    NotFound,
    ReplayedRequest,
)
from chalicelib.domain.ledger import EntryKind, LedgerEntry
from chalicelib.domain.providers import Provider
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
    meters: dict[str, str] = field(default_factory=dict)  # meter address -> provider id


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
    def __init__(self, staged: _Staged) -> None:
        self._staged = staged

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
        after = decode_entry_cursor(cursor) if cursor else ""
        ordered = sorted(
            (entry_key(e.at, e.kind, e.entry_id), e)
            for e in self._state.entries.values()
            if e.account == account
        )
        later = [(k, e) for k, e in ordered if k > after]
        page = later[:limit]
        more = len(later) > limit
        return Page([e for _, e in page], encode_cursor(page[-1][0]) if more else None)

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
        after = decode_price_cursor(cursor) if cursor else ""
        ordered = sorted(
            (price_key(p), p) for p in self._state.providers.values() if query.admits(p)
        )
        later = [(k, p) for k, p in ordered if k > after]
        page = later[:limit]
        more = len(later) > limit
        return Page([p for _, p in page], encode_cursor(page[-1][0]) if more else None)

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
            s.meters[provider.meter_address] = provider.provider_id

        self._staged.stage(check, apply)

    def save(self, provider: Provider, expected_version: int) -> None:
        def check(s: MemoryState) -> DomainError | None:
            stored = s.providers.get(provider.provider_id)
            if stored is None or stored.version != expected_version:
                return ConcurrentUpdate(
                    "the provider changed; retry", provider_id=provider.provider_id
                )
            return None

        self._staged.stage(check, lambda s: s.providers.__setitem__(provider.provider_id, provider))


class MemoryUnitOfWork:
    def __init__(self, state: MemoryState) -> None:
        self._state = state
        self._staged = _Staged(state)
        self.accounts = MemoryAccounts(self._staged, state)
        self.nonces = MemoryNonces(self._staged)
        self.ledger = MemoryLedger(self._staged, state)
        self.providers = MemoryProviders(self._staged, state)

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
