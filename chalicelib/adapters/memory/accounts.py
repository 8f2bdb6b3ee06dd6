"""Accounts and the request nonces they have used, in memory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from chalicelib.adapters.memory.state import MemoryState, Staged
from chalicelib.domain.accounts import Account, Role
from chalicelib.domain.errors import (
    AlreadyExists,
    NotFound,
    ReplayedRequest,
)


class MemoryAccounts:
    def __init__(self, staged: Staged, state: MemoryState) -> None:
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
    def __init__(self, staged: Staged, state: MemoryState) -> None:
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
