"""Credits in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from chalicelib.adapters.due_work import credits_expired
from chalicelib.adapters.dynamodb.layout import (
    decode_minted_cursor,
    expiry_slot,
    expiry_slots,
    minted_key,
)
from chalicelib.adapters.memory.state import Check, MemoryState, Staged, page_of
from chalicelib.domain.credits import Credit, CreditState, Retirement
from chalicelib.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    DomainError,
)
from chalicelib.domain.trading import split_part
from chalicelib.services.ports import DueHandler, JobRun, Page

if TYPE_CHECKING:
    from chalicelib.adapters.due_work import Watermarks


class MemoryCredits:
    def __init__(self, staged: Staged, state: MemoryState, watermarks: Watermarks) -> None:
        self._staged, self._state = staged, state
        self._watermarks = watermarks

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

    def written(self, credit_ids: Sequence[str]) -> set[str]:
        return {c for c in credit_ids if c in self._state.credits}

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
        return page_of(
            keyed, decode_minted_cursor(cursor) if cursor else None, limit, newest_first=True
        )

    def each_expired(
        self, run: JobRun, now_ms: int, budget: int, expire: DueHandler[Credit]
    ) -> None:
        credits_expired(
            self._watermarks, expiry_slots, self._expired_in_slot, run, now_ms, budget, expire
        )

    def _expired_in_slot(self, slot: str, now_ms: int, limit: int) -> Sequence[Credit]:
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

    def in_window(
        self, provider_id: str, from_ms: int, to_ms: int, limit: int, cursor: str | None
    ) -> Page[Credit]:
        keyed = (
            (minted_key(c), c)
            for c in self._state.credits.values()
            if c.provider_id == provider_id
            and c.state != CreditState.BASELINE
            and from_ms <= c.interval_end_ms < to_ms
        )
        return page_of(keyed, decode_minted_cursor(cursor) if cursor else None, limit)

    def revoke(self, credit: Credit) -> None:
        self._staged.stage(
            self._in_state(credit.credit_id, credit.state, wh=credit.wh),
            lambda s: s.credits.__setitem__(
                credit.credit_id, replace(s.credits[credit.credit_id], state=CreditState.REVOKED)
            ),
        )

    def by_provider(self, provider_id: str, limit: int, cursor: str | None) -> Page[Credit]:
        keyed = (
            (minted_key(c), c)
            for c in self._state.credits.values()
            if c.provider_id == provider_id and c.state != CreditState.BASELINE
        )
        return page_of(
            keyed, decode_minted_cursor(cursor) if cursor else None, limit, newest_first=True
        )
