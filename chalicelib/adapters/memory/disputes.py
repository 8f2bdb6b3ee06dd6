"""Disputes and the registry of validators in memory."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from chalicelib.adapters.due_work import HOUR_MS, items_due
from chalicelib.adapters.dynamodb.disputes import due_at_ms
from chalicelib.adapters.dynamodb.layout import decode_opened_cursor, opened_key
from chalicelib.adapters.memory.state import MemoryState, Staged, page_of
from chalicelib.domain.disputes import Dispute, DisputeRole, DisputeStatus, Validator
from chalicelib.domain.errors import ConcurrentUpdate
from chalicelib.services.ports import DueHandler, JobRun, Page

if TYPE_CHECKING:
    from chalicelib.adapters.due_work import Watermarks


class MemoryDisputes:
    def __init__(self, staged: Staged, state: MemoryState, watermarks: Watermarks) -> None:
        self._staged, self._state = staged, state
        self._watermarks = watermarks

    def get(self, dispute_id: str) -> Dispute | None:
        return self._state.disputes.get(dispute_id)

    def open(self, dispute: Dispute) -> None:
        self._staged.stage(
            lambda s: (
                ConcurrentUpdate(
                    "another flag opened this dispute; retry", dispute_id=dispute.dispute_id
                )
                if dispute.dispute_id in s.disputes
                else None
            ),
            lambda s: s.disputes.__setitem__(dispute.dispute_id, dispute),
        )

    def save(self, changed: Dispute, expected_version: int) -> None:
        def check(s: MemoryState) -> ConcurrentUpdate | None:
            now = s.disputes.get(changed.dispute_id)
            if now is None or now.version != expected_version:
                return ConcurrentUpdate("the dispute changed; retry", dispute_id=changed.dispute_id)
            return None

        self._staged.stage(check, lambda s: s.disputes.__setitem__(changed.dispute_id, changed))

    def each_due(self, run: JobRun, now_ms: int, budget: int, handle: DueHandler[Dispute]) -> None:
        items_due(
            self._watermarks, self._due_in_hour, lambda d: d.dispute_id, run, now_ms, budget, handle
        )

    def _due_in_hour(self, hour: int, now_ms: int, limit: int) -> Sequence[Dispute]:
        due = []
        for dispute in self._state.disputes.values():
            at = due_at_ms(dispute)
            if at is not None and at // HOUR_MS == hour and at <= now_ms:
                due.append((at, dispute.dispute_id, dispute))
        return [d for _, _, d in sorted(due)[:limit]]

    def by_provider(self, provider_id: str, limit: int, cursor: str | None) -> Page[Dispute]:
        return self._newest_first(
            (d for d in self._state.disputes.values() if d.provider_id == provider_id),
            limit,
            cursor,
        )

    def join(self, joined: Dispute, expected_version: int, flagger: str | None) -> None:
        self.save(joined, expected_version)

    def by_member(
        self, role: DisputeRole, name: str, limit: int, cursor: str | None
    ) -> Page[Dispute]:
        def member(d: Dispute) -> bool:
            if role == DisputeRole.PANEL:
                return name in d.panel
            return any(f.flagger == name for f in d.flags)

        return self._newest_first(filter(member, self._state.disputes.values()), limit, cursor)

    def by_status(self, status: DisputeStatus, limit: int, cursor: str | None) -> Page[Dispute]:
        return self._newest_first(
            (d for d in self._state.disputes.values() if d.status == status), limit, cursor
        )

    def count_with_status(self, status: DisputeStatus) -> int:
        return sum(1 for d in self._state.disputes.values() if d.status == status)

    def _newest_first(
        self, disputes: Iterable[Dispute], limit: int, cursor: str | None
    ) -> Page[Dispute]:
        after = decode_opened_cursor(cursor) if cursor else None
        keyed = ((opened_key(d.opened_at_ms, d.dispute_id), d) for d in disputes)
        return page_of(keyed, after, limit, newest_first=True)


class MemoryValidators:
    def __init__(self, staged: Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def all(self) -> list[Validator]:
        return [self._state.validators[name] for name in sorted(self._state.validators)]

    def get(self, name: str) -> Validator | None:
        return self._state.validators.get(name)

    def add(self, name: str) -> None:
        def apply(s: MemoryState) -> None:
            found = s.validators.get(name)
            s.validators[name] = replace(found, active=True) if found else Validator(name, 0)

        self._staged.stage(lambda s: None, apply)

    def remove(self, name: str) -> None:
        def apply(s: MemoryState) -> None:
            if name in s.validators:
                s.validators[name] = replace(s.validators[name], active=False)

        self._staged.stage(lambda s: None, apply)

    def change_stake(self, validator: Validator, micro_block: int) -> None:
        def check(s: MemoryState) -> ConcurrentUpdate | None:
            now = s.validators.get(validator.name)
            if now is None or (now.stake_micro_block, now.open_panels) != (
                validator.stake_micro_block,
                validator.open_panels,
            ):
                return ConcurrentUpdate("the validator changed; retry", account=validator.name)
            return None

        def apply(s: MemoryState) -> None:
            now = s.validators[validator.name]
            s.validators[validator.name] = replace(
                now, stake_micro_block=now.stake_micro_block + micro_block
            )

        self._staged.stage(check, apply)

    def seat(self, names: Sequence[str], panels: int) -> None:
        def apply(s: MemoryState) -> None:
            for name in names:
                if name in s.validators:
                    now = s.validators[name]
                    s.validators[name] = replace(now, open_panels=now.open_panels + panels)

        self._staged.stage(lambda s: None, apply)
