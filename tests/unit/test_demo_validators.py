"""The demo's validators: each check re-asks a detector's question of public data, and the bot
votes once per dispute, signed, and lets a refusal be."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.domain.providers import EnergyType
from chalicelib.domain.signing import request_message, verify
from energy_client.rpc_client import MarketplaceClient, RpcError, Signer
from iot.demo.validators import (
    CLEARED,
    CRITICAL,
    GUILTY,
    MAJOR,
    MINOR,
    Judgement,
    Meter,
    Reading,
    Records,
    ValidatorBot,
    hourly_wh,
    judge_above_profile,
    judge_bad_signatures,
    judge_battery_over_storage,
    judge_dispute,
    judge_flat_line,
    judge_over_capacity,
    judge_peer_outlier,
    judge_replayed_curve,
    judge_solar_at_night,
    readings_of,
    window_hours,
)

HOUR = 3_600_000
DAY = 24 * HOUR
MINUTE = 60_000
# 2026-12-01 10:00 UTC is midnight in Honolulu and 05:00 in Greensboro, NC.
HONOLULU_MIDNIGHT = int(datetime(2026, 12, 1, 10, tzinfo=UTC).timestamp() * 1000)
GREENSBORO_NOON = int(datetime(2026, 6, 1, 17, tzinfo=UTC).timestamp() * 1000)


def meter(
    energy_type: EnergyType = EnergyType.SOLAR,
    capacity_w: int = 15_000,
    where: tuple[float, float] = (21.3069, -157.8583),
    provider_id: str = "energy-0x0000000000000001",
    address: str = "demo_solar_013",
) -> Meter:
    return Meter(
        provider_id, address, energy_type, capacity_w, round(where[0] * 1e6), round(where[1] * 1e6)
    )


def steady(start: int, count: int, step: int, wh: int) -> list[Reading]:
    return [Reading(start + n * step, start + (n + 1) * step, wh) for n in range(count)]


# -- what the records say -----------------------------------------------------------------


def test_parts_split_off_a_reading_by_purchases_count_as_the_one_reading() -> None:
    credits = [
        {
            "credit_id": "a",
            "reading_hash": "r1",
            "interval_start_ms": 0,
            "interval_end_ms": 900,
            "amount_wh": 30,
        },
        {
            "credit_id": "b",
            "reading_hash": "r1",
            "interval_start_ms": 0,
            "interval_end_ms": 900,
            "amount_wh": 12,
        },
        {
            "credit_id": "c",
            "reading_hash": "r2",
            "interval_start_ms": 900,
            "interval_end_ms": 1800,
            "amount_wh": 5,
        },
    ]

    assert readings_of(credits) == [Reading(0, 900, 42), Reading(900, 1800, 5)]


def test_energy_is_placed_in_hours_as_the_detectors_place_it() -> None:
    spread, inexact = hourly_wh([Reading(HOUR - 15 * MINUTE, HOUR + 45 * MINUTE, 100)], 1_000)
    assert spread == {0: 25, 1: 75} and not inexact

    # A reading after a silence is put at its end, at most capacity an hour, and not measured.
    placed, inexact = hourly_wh([Reading(0, 10 * HOUR, 1_500)], 1_000)
    assert placed == {9: 1_000, 8: 500} and inexact == set(range(10))


def test_a_flag_window_speaks_of_the_hours_the_detector_measured() -> None:
    # over_capacity flags hour 5 as the readings taken in (5 h, 6 h]: [5 h + 1, 6 h + 1).
    assert window_hours(5 * HOUR + 1, 6 * HOUR + 1) == range(5, 6)


# -- the checks ---------------------------------------------------------------------------


def test_energy_reported_in_the_dark_is_guilty_with_its_share_of_capacity_as_severity() -> None:
    night = meter()
    generator = steady(HONOLULU_MIDNIGHT, 4, 30_000, 37)  # 30 % of 15 kW for 30 s

    judgement = judge_solar_at_night(night, generator)

    assert (judgement.verdict, judgement.severity) == (GUILTY, MAJOR)
    assert "sun more than 6° below the horizon" in judgement.finding
    flat_out = steady(HONOLULU_MIDNIGHT, 4, 30_000, 125)  # full power at midnight
    assert judge_solar_at_night(night, flat_out).severity == CRITICAL
    dim = steady(HONOLULU_MIDNIGHT, 4, 15 * MINUTE, 300)  # 1.2 kW: over the 2 % allowance
    assert judge_solar_at_night(night, dim).severity == MINOR


def test_energy_in_daylight_or_within_the_night_allowance_is_cleared() -> None:
    greensboro = meter(where=(36.1, -79.95))
    noon = steady(GREENSBORO_NOON, 4, 15 * MINUTE, 3_000)
    assert judge_solar_at_night(greensboro, noon).verdict == CLEARED
    # Sky glow: 2 % of capacity in the dark, and the counter's rounding.
    glow = steady(HONOLULU_MIDNIGHT, 4, 15 * MINUTE, 15_000 * 2 // 100 // 4 + 2)
    assert judge_solar_at_night(meter(), glow).verdict == CLEARED
    assert judge_solar_at_night(meter(EnergyType.WIND), glow).verdict == CLEARED


def test_three_bad_signatures_within_a_day_are_guilty() -> None:
    end = HONOLULU_MIDNIGHT

    def refused(*ages_ms: int, reason: str = "bad_signature") -> list[dict[str, Any]]:
        return [{"reason": reason, "at_ms": end - age} for age in ages_ms]

    judgement = judge_bad_signatures(refused(1, MINUTE, 2 * MINUTE), end)
    assert (judgement.verdict, judgement.severity) == (GUILTY, MINOR)
    assert judge_bad_signatures(refused(1, MINUTE, 25 * HOUR), end).verdict == CLEARED
    assert (
        judge_bad_signatures(
            refused(1, MINUTE) + refused(2, reason="implausible_increase"), end
        ).verdict
        == CLEARED
    )
    many = refused(*(n * MINUTE for n in range(1, 31)))
    assert judge_bad_signatures(many, end).severity == MAJOR


def test_an_hour_above_capacity_and_its_tolerance_is_guilty() -> None:
    hydro = meter(EnergyType.HYDRO, capacity_w=500_000)
    hour = 100
    over = steady(hour * HOUR, 120, 30_000, 500_000 * 104 // 100 // 120)
    judgement = judge_over_capacity(hydro, over, range(hour, hour + 1))
    assert (judgement.verdict, judgement.severity) == (GUILTY, MINOR)

    at_capacity = steady(hour * HOUR, 120, 30_000, 500_000 // 120)
    assert judge_over_capacity(hydro, at_capacity, range(hour, hour + 1)).verdict == CLEARED
    assert judge_over_capacity(hydro, [], range(hour, hour + 1)).verdict is None


def test_a_battery_that_rests_is_cleared_and_one_that_never_does_is_guilty() -> None:
    battery = meter(EnergyType.BATTERY, capacity_w=10_000)
    evening = steady(0, 8, 15 * MINUTE, 2_500)  # 2 hours at full power: 20 kWh
    rest = [Reading(2 * HOUR, 22 * HOUR, 1)]  # idle until the next evening
    honest = [*evening, *rest, *steady(22 * HOUR, 8, 15 * MINUTE, 2_500)]
    assert judge_battery_over_storage(battery, honest).verdict == CLEARED

    tireless = steady(0, 4 * 10, 15 * MINUTE, 2_500)  # 10 hours at full power, no rest
    judgement = judge_battery_over_storage(battery, tireless)
    assert (judgement.verdict, judgement.severity) == (GUILTY, CRITICAL)


def test_a_constant_in_place_of_a_river_is_guilty_and_a_wandering_river_is_not() -> None:
    hydro = meter(EnergyType.HYDRO, capacity_w=400_000)
    constant = steady(0, 4 * 9, 15 * MINUTE, 50_000)  # 200 kW for 9 hours
    judgement = judge_flat_line(hydro, constant)
    assert (judgement.verdict, judgement.severity) == (GUILTY, MINOR)

    wandering = [
        Reading(r.start_ms, r.end_ms, r.wh + (n % 3) * 100) for n, r in enumerate(constant)
    ]
    assert judge_flat_line(hydro, wandering).verdict == CLEARED
    assert judge_flat_line(meter(EnergyType.BATTERY), constant).verdict == CLEARED


def test_a_scaled_copy_of_a_curve_is_guilty_and_another_day_is_not() -> None:
    original = [10, 400, 1_800, 3_900, 5_200, 5_600, 4_800, 3_000, 900, 20]
    copy = [w * 3 // 2 for w in original]
    judgement = judge_replayed_curve(copy, original)
    assert (judgement.verdict, judgement.severity) == (GUILTY, MAJOR)

    another_day = [*copy[:4], copy[4] - 300, *copy[5:]]
    assert judge_replayed_curve(another_day, original).verdict == CLEARED
    assert judge_replayed_curve(copy[:-1], original).verdict == CLEARED
    assert judge_replayed_curve([], original).verdict is None


def test_far_above_the_peers_median_is_guilty_and_too_few_peers_cannot_tell() -> None:
    solar = meter(capacity_w=10_000)
    hours = range(10, 16)
    peers = [(10_000, dict.fromkeys(hours, 5_000 + 100 * n)) for n in range(6)]
    inflated = dict.fromkeys(hours, 8_500)  # x1.63 the median: x1.31 the limit
    judgement = judge_peer_outlier(solar, inflated, peers, hours)
    assert (judgement.verdict, judgement.severity) == (GUILTY, MAJOR)

    typical = dict.fromkeys(hours, 5_300)
    assert judge_peer_outlier(solar, typical, peers, hours).verdict == CLEARED
    assert judge_peer_outlier(solar, inflated, peers[:4], hours).verdict is None


def test_far_above_the_meters_own_days_is_guilty_after_enough_history() -> None:
    hydro = meter(EnergyType.HYDRO, capacity_w=1_000)
    today = list(range(20 * 24, 21 * 24))
    history = dict.fromkeys(range(6 * 24, 20 * 24), 700)
    doubled = {**history, **dict.fromkeys(today, 1_000)}

    judgement = judge_above_profile(hydro, doubled, today, history_days=14)
    assert (judgement.verdict, judgement.severity) == (GUILTY, MINOR)
    steady_day = {**history, **dict.fromkeys(today, 720)}
    assert judge_above_profile(hydro, steady_day, today, history_days=14).verdict == CLEARED
    assert judge_above_profile(hydro, doubled, today, history_days=3).verdict is None


# -- a whole dispute, from the public records -----------------------------------------------


class FakeMarket:
    """The calls a validator makes, answered from fixed records; votes counted like the service."""

    def __init__(self, provider: Mapping[str, Any], credits: Sequence[Mapping[str, Any]]) -> None:
        self.provider = dict(provider)
        self.credits = list(credits)  # newest first, as energy.getCredits answers
        self.rejections: list[dict[str, Any]] = []
        self.disputes: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.refuse_votes_with: str | None = None
        self.answer_votes = True

    def call(
        self,
        method: str,
        params: Mapping[str, Any] | Sequence[Any] | None = None,
        signer: Signer | None = None,
    ) -> Any:
        arguments = dict(params or {})
        self.calls.append((method, arguments))
        if method == "energy.getProvider":
            return self.provider
        if method == "energy.getCredits":
            return {"credits": self.credits, "next_cursor": None}
        if method == "energy.getRejections":
            return {"rejections": self.rejections, "next_cursor": None}
        if method == "energy.getDisputes":
            mine = [d for d in self.disputes.values() if arguments["validator"] in d["panel"]]
            return {"disputes": mine, "next_cursor": None}
        if method == "energy.voteOnDispute":
            assert signer is not None
            dispute = self.disputes[arguments["dispute_id"]]
            if self.refuse_votes_with:
                raise RpcError(4010, "refused", {"reason": self.refuse_votes_with})
            if any(v["validator"] == signer.account for v in dispute["votes"]):
                raise RpcError(4009, "already voted", {"reason": "already_voted"})
            dispute["votes"].append({"validator": signer.account, **arguments})
            if not self.answer_votes:
                raise TimeoutError("timed out")  # counted, but the answer never came
            return dispute
        raise AssertionError(f"unexpected call {method}")


def night_market() -> tuple[FakeMarket, dict[str, Any]]:
    provider = {
        "provider_id": "energy-0x0000000000000001",
        "meter_address": "demo_solar_013",
        "energy_type": "solar",
        "capacity_wh": 15_000,
        "latitude": "21.3069",
        "longitude": "-157.8583",
    }
    start = HONOLULU_MIDNIGHT
    credits = [
        {
            "credit_id": f"c{n}",
            "reading_hash": f"r{n}",
            "interval_start_ms": start + n * 30_000,
            "interval_end_ms": start + (n + 1) * 30_000,
            "amount_wh": 37,
        }
        for n in reversed(range(3))
    ]
    dispute: dict[str, Any] = {
        "dispute_id": "dsp-" + "0" * 32,
        "status": "open",
        "provider_id": provider["provider_id"],
        "subject": {
            "kind": "meter_window",
            "meter_address": "demo_solar_013",
            "window_start_ms": start + 30_000 + 1,
            "window_end_ms": start + 60_000 + 1,
        },
        "flags": [{"flagged_by": "detector:solar_at_night", "evidence": []}],
        "panel": ["validator01.demo", "validator02.demo", "validator03.demo"],
        "votes": [],
        "opened_at_ms": start + 61_000,
    }
    market = FakeMarket(provider, credits)
    market.disputes[dispute["dispute_id"]] = dispute
    return market, dispute


def test_a_validator_judges_only_the_flagged_readings_from_the_public_credits() -> None:
    market, dispute = night_market()

    judgement, what = judge_dispute(Records(market), dispute, HONOLULU_MIDNIGHT + 2 * MINUTE)

    assert (judgement.verdict, judgement.severity, what) == (GUILTY, MAJOR, "solar_at_night")
    assert judgement.finding.startswith("1 of 1 readings report 37 Wh")


def test_a_flag_by_hand_gets_the_physical_checks_of_the_meters_type() -> None:
    market, dispute = night_market()
    dispute["flags"] = [{"flagged_by": "carol.theblock", "evidence": ["it is night there"]}]

    judgement, what = judge_dispute(Records(market), dispute, HONOLULU_MIDNIGHT + 2 * MINUTE)

    assert (judgement.verdict, what) == (GUILTY, "flagged by hand")


def test_the_bot_votes_once_signed_and_never_again() -> None:
    market, dispute = night_market()
    signer = Signer.generate("validator01.demo")
    bot = ValidatorBot(market, signer, pause=1, clock=lambda: HONOLULU_MIDNIGHT / 1000 + 120)

    assert bot.step() == 1
    assert bot.step() == 0  # it remembers; and the dispute shows its vote besides
    bot.done.clear()
    assert bot.step() == 0

    votes = [params for method, params in market.calls if method == "energy.voteOnDispute"]
    assert votes == [
        {"dispute_id": dispute["dispute_id"], "verdict": "guilty", "severity": "major"}
    ]
    assert dispute["votes"] == [{"validator": "validator01.demo", **votes[0]}]
    assert bot.stats.votes == {"guilty": 1}


def test_a_refused_vote_is_counted_and_not_tried_again() -> None:
    market, _ = night_market()
    market.refuse_votes_with = "dispute_closed"
    bot = ValidatorBot(
        market, Signer.generate("validator02.demo"), pause=1, clock=lambda: HONOLULU_MIDNIGHT / 1000
    )

    assert bot.step() == 0
    assert bot.step() == 0

    assert bot.stats.refusals == {"dispute_closed": 1}
    assert sum(1 for method, _ in market.calls if method == "energy.voteOnDispute") == 1


def test_a_vote_without_an_answer_is_found_on_the_dispute_and_not_cast_again() -> None:
    market, dispute = night_market()
    market.answer_votes = False
    bot = ValidatorBot(
        market, Signer.generate("validator03.demo"), pause=1, clock=lambda: HONOLULU_MIDNIGHT / 1000
    )

    assert bot.step() == 0
    assert bot.step() == 0

    assert bot.stats.unanswered == 1 and bot.stats.errors == 0
    assert [v["validator"] for v in dispute["votes"]] == ["validator03.demo"]


def test_a_validator_not_drawn_sees_nothing_to_vote_on() -> None:
    market, _ = night_market()
    bot = ValidatorBot(market, Signer.generate("validator09.demo"), pause=1)

    assert bot.open_disputes() == []
    assert bot.step() == 0


def test_the_vote_is_signed_by_the_validator_for_this_call() -> None:
    """What the bot sends is what MarketplaceClient signs: checked on the real client's output."""
    sent: list[bytes] = []

    def transport(body: bytes) -> bytes:
        sent.append(body)
        return b'{"jsonrpc":"2.0","id":1,"result":{"status":"open"}}'

    client = MarketplaceClient(transport, "energy-marketplace-test")
    signer = Signer.generate("validator03.demo")
    bot = ValidatorBot(client, signer, pause=1)
    _, dispute = night_market()
    judgement = judge_solar_at_night(meter(), steady(HONOLULU_MIDNIGHT, 1, 30_000, 37))

    assert bot.vote(dispute, judgement, "solar_at_night") == 1

    params = json.loads(sent[0])["params"]
    auth = params.pop("auth")
    message = request_message(
        marketplace_id="energy-marketplace-test",
        method="energy.voteOnDispute",
        params=params,
        account="validator03.demo",
        nonce=auth["nonce"],
        timestamp=auth["timestamp"],
    )
    assert verify(signer.public_key, message, auth["signature"])
    assert params == {"dispute_id": dispute["dispute_id"], "verdict": "guilty", "severity": "major"}


def test_an_undecided_judgement_is_no_vote() -> None:
    with pytest.raises(ValueError, match="no vote"):
        Judgement.undecided("cannot tell").vote()
