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
from chalicelib.services.ports import UsedNonce


class MemoryAccounts:
    def __init__(self, staged: Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def get(self, name: str, *, consistent: bool = False) -> Account | None:
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

    def used(self, account: str, nonce: str) -> UsedNonce | None:
        if (account, nonce) not in self._state.nonces:
            return None
        return self._state.nonce_requests.get((account, nonce), UsedNonce("", None))

    def consume(self, account: str, nonce: str, expires_at: int, request_hash: str) -> None:
        def apply(s: MemoryState) -> None:
            s.nonces[(account, nonce)] = expires_at
            s.nonce_requests[(account, nonce)] = UsedNonce(request_hash, None)

        self._staged.stage(
            lambda s: (
                ReplayedRequest("this request was already received", nonce=nonce)
                if (account, nonce) in s.nonces
                else None
            ),
            apply,
        )

    def keep_answer(self, account: str, nonce: str, request_hash: str, answer: str) -> None:
        def refusal(s: MemoryState) -> ReplayedRequest | None:
            found = s.nonce_requests.get((account, nonce))
            if found is None or found.request_hash != request_hash or found.answer is not None:
                return ReplayedRequest("this request was already answered", nonce=nonce)
            return None

        self._staged.stage(
            refusal,
            lambda s: s.nonce_requests.__setitem__(
                (account, nonce), UsedNonce(request_hash, answer)
            ),
        )
