"""Which credits a purchase takes: the oldest first, the last one split."""

from __future__ import annotations

from dataclasses import replace

from chalicelib.domain.credits import Credit, CreditState
from chalicelib.domain.providers import EnergyType
from chalicelib.domain.trading import allocate, split_part


def credit(n: int, wh: int) -> Credit:
    return Credit(
        credit_id=f"{n:064x}",
        provider_id="energy-0x0000000000000001",
        meter_address="m_1",
        energy_type=EnergyType.WIND,
        jurisdiction="DK",
        interval_start_ms=n,
        interval_end_ms=n + 1,
        wh=wh,
        counter_wh=n * 100,
        signature="00" * 64,
        minted_at_ms=n,
        expires_at_ms=n + 10,
    )


def test_whole_credits_when_they_fit_exactly() -> None:
    taken = allocate([credit(1, 100), credit(2, 200), credit(3, 300)], 300)
    assert taken is not None
    assert [c.credit_id for c in taken.whole] == [credit(1, 1).credit_id, credit(2, 1).credit_id]
    assert taken.split is None


def test_the_last_credit_is_split() -> None:
    taken = allocate([credit(1, 100), credit(2, 200)], 150)
    assert taken is not None and taken.split is not None
    assert ([c.wh for c in taken.whole], taken.split.wh, taken.split_wh) == ([100], 200, 50)
    part = split_part(taken.split, taken.split_wh, "pur-1")
    assert (part.wh, part.state, part.parent_credit_id) == (
        50,
        CreditState.RESERVED,
        taken.split.credit_id,
    )
    assert part.credit_id != taken.split.credit_id
    # A part of a part still points at the credit its reading minted.
    assert split_part(replace(part, wh=50), 10, "pur-2").parent_credit_id == taken.split.credit_id


def test_not_enough_is_none() -> None:
    assert allocate([credit(1, 100)], 101) is None
    assert allocate([], 1) is None
