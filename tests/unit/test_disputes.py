"""Dispute rules that need no storage: ids, flags, the panel draw, votes, tally, money."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain.disputes import (
    DEFAULT_BOND_MICRO_BLOCK,
    DEFAULT_RULES,
    DEFAULT_VOTING_PERIOD_MS,
    MAX_WINDOW_MS,
    DecidedBy,
    Dispute,
    DisputeRules,
    DisputeStatus,
    Flag,
    Pocket,
    PocketKind,
    Refund,
    Severity,
    Subject,
    SubjectKind,
    Transfer,
    TransferReason,
    Validator,
    Verdict,
    Vote,
    bond_pocket,
    cast_vote,
    consequences,
    dispute_id_for,
    draw_panel,
    guilty_severity,
    join_dispute,
    net_changes,
    open_dispute,
    resolved,
    slash_amount,
    suspends,
    tally,
)
from chalicelib.domain.errors import (
    AlreadyExists,
    AlreadyVoted,
    DisputeClosed,
    DomainError,
    InvalidFlag,
    InvalidState,
    NotAuthorised,
    NotOnPanel,
    PanelUnavailable,
    PartyToDispute,
    VotingClosed,
)
from chalicelib.domain.providers import MIN_STAKE_MICRO_BLOCK
from chalicelib.domain.units import MICRO_BLOCK_PER_BLOCK

BLOCK = MICRO_BLOCK_PER_BLOCK
NOW = 1_767_225_600_000
READING = "ab" * 32
OWNER = "alice.theblock"
PROVIDER = "energy-0x0123456789abcdef"
FLAGGER = "carol.theblock"
BUYER = "bob.theblock"
VALIDATORS = [Validator(f"val-{i}", 1_000 * BLOCK) for i in range(8)]


def flag_by(flagger: str = FLAGGER, at_ms: int = NOW) -> Flag:
    return Flag(
        "reading above capacity",
        ("https://example.org/plot",),
        at_ms,
        flagger=flagger,
        bond_micro_block=DEFAULT_BOND_MICRO_BLOCK,
    )


def a_dispute(validators: list[Validator] = VALIDATORS, **overrides: object) -> Dispute:
    dispute = open_dispute(
        subject=Subject.reading(READING),
        provider_id=PROVIDER,
        provider_owner=OWNER,
        flag=flag_by(),
        buyers=[BUYER],
        validators=validators,
        opened_at_ms=NOW,
    )
    return replace(dispute, **overrides)  # type: ignore[arg-type]


def voted(dispute: Dispute, *votes: tuple[Verdict, Severity | None]) -> Dispute:
    for seat, (verdict, severity) in enumerate(votes):
        dispute = cast_vote(dispute, dispute.panel[seat], verdict, severity, NOW + seat + 1)
    return dispute


GUILTY_MINOR = (Verdict.GUILTY, Severity.MINOR)
GUILTY_MAJOR = (Verdict.GUILTY, Severity.MAJOR)
GUILTY_CRITICAL = (Verdict.GUILTY, Severity.CRITICAL)
CLEARED = (Verdict.CLEARED, None)


# -- ids and flags ----------------------------------------------------------------


def test_a_second_flag_on_the_same_reading_finds_the_same_dispute_id() -> None:
    first = dispute_id_for(Subject.reading(READING))
    assert first == dispute_id_for(Subject.reading(READING))
    expected = hashlib.sha256(f"dispute\nreading\n{READING}\n1".encode()).hexdigest()[:32]
    assert first == f"dsp-{expected}"
    assert dispute_id_for(Subject.reading(READING), round_number=2) != first
    assert dispute_id_for(Subject.reading("cd" * 32)) != first
    window = Subject.meter_window("solar_meter_001", NOW, NOW + 3_600_000)
    assert dispute_id_for(window) == dispute_id_for(
        Subject.meter_window("solar_meter_001", NOW, NOW + 3_600_000)
    )
    assert dispute_id_for(window) != dispute_id_for(
        Subject.meter_window("solar_meter_001", NOW, NOW + 3_600_001)
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: Subject.reading("AB" * 32),  # upper case is not the hash's spelling
        lambda: Subject.reading("ab" * 31),
        lambda: Subject(SubjectKind.READING, READING, window_end_ms=NOW).check(),
        lambda: Subject.meter_window("solar_meter_001", NOW, NOW),
        lambda: Subject.meter_window("solar_meter_001", NOW, NOW + MAX_WINDOW_MS + 1),
        lambda: Subject.meter_window("bad/topic", NOW, NOW + 1),
    ],
)
def test_a_malformed_or_unbounded_subject_is_refused(make) -> None:
    with pytest.raises(InvalidFlag):
        make()


@pytest.mark.parametrize(
    "flag",
    [
        replace(flag_by(), reason=""),
        replace(flag_by(), reason="x" * 501),
        replace(flag_by(), evidence=("note",) * 11),
        replace(flag_by(), evidence=("x" * 2_001,)),
        replace(flag_by(), evidence=("hidden\x00byte",)),
        replace(flag_by(), bond_micro_block=DEFAULT_BOND_MICRO_BLOCK - 1),
        replace(flag_by(), bond_micro_block=0),
        replace(flag_by(), detector="night_solar"),  # both an account and a detector
        Flag("solar at night", (), NOW, detector="night_solar", bond_micro_block=1),
        Flag("solar at night", (), NOW, detector="Night Solar"),
    ],
)
def test_a_flag_outside_the_bounds_is_refused(flag: Flag) -> None:
    with pytest.raises(InvalidFlag) as refused:
        DEFAULT_RULES.check_flag(flag)
    assert refused.value.code == -32602
    assert refused.value.reason == "invalid_flag"


def test_a_detector_flags_without_a_bond_and_notes_may_span_lines() -> None:
    DEFAULT_RULES.check_flag(
        Flag("solar at night", ("sun -12°\nat 02:00",), NOW, detector="night_solar")
    )
    assert Flag("x", (), NOW, detector="night_solar").by == "detector:night_solar"


# -- opening and joining ----------------------------------------------------------


def test_opening_a_dispute_draws_its_panel_and_sets_its_deadline_and_parties() -> None:
    dispute = a_dispute()
    assert dispute.dispute_id == dispute_id_for(Subject.reading(READING))
    assert dispute.parties == {OWNER, FLAGGER, BUYER}
    assert dispute.deadline_ms == NOW + DEFAULT_VOTING_PERIOD_MS
    assert dispute.panel == draw_panel(dispute.dispute_id, VALIDATORS, dispute.parties)
    assert len(dispute.panel) == 5
    assert dispute.quorum == 3
    assert dispute.status == DisputeStatus.OPEN
    assert dispute.bond_micro_block == DEFAULT_BOND_MICRO_BLOCK


def test_a_second_flag_joins_the_open_dispute_and_its_flagger_becomes_a_party() -> None:
    dispute = a_dispute()
    joined = join_dispute(dispute, flag_by("dave.theblock", NOW + 5))
    assert [f.by for f in joined.flags] == [FLAGGER, "dave.theblock"]
    assert "dave.theblock" in joined.parties
    assert joined.bond_micro_block == 2 * DEFAULT_BOND_MICRO_BLOCK
    assert joined.panel == dispute.panel
    assert joined.version == dispute.version + 1


def test_the_provider_owner_and_a_panel_member_cannot_flag_and_nobody_flags_twice() -> None:
    dispute = a_dispute()
    with pytest.raises(NotAuthorised):
        join_dispute(dispute, flag_by(OWNER))
    with pytest.raises(NotAuthorised):
        join_dispute(dispute, flag_by(dispute.panel[0]))
    with pytest.raises(AlreadyExists):
        join_dispute(dispute, flag_by(FLAGGER))
    with pytest.raises(VotingClosed):
        join_dispute(dispute, flag_by("dave.theblock", dispute.deadline_ms))
    with pytest.raises(NotAuthorised):
        open_dispute(
            subject=Subject.reading(READING),
            provider_id=PROVIDER,
            provider_owner=OWNER,
            flag=flag_by(OWNER),
            buyers=[],
            validators=VALIDATORS,
            opened_at_ms=NOW,
        )


# -- slash and suspension -----------------------------------------------------------


def test_slash_takes_ten_twenty_five_or_fifty_percent_of_the_stake() -> None:
    stake = 2_000 * BLOCK
    assert slash_amount(stake, Severity.MINOR) == 200 * BLOCK
    assert slash_amount(stake, Severity.MAJOR) == 500 * BLOCK
    assert slash_amount(stake, Severity.CRITICAL) == 1_000 * BLOCK


def test_slash_rounds_down_and_follows_a_configured_table() -> None:
    assert slash_amount(19, Severity.MAJOR) == 4  # 4.75: never more than the rule
    table = {Severity.MINOR: 500, Severity.MAJOR: 3_333, Severity.CRITICAL: 10_000}
    assert slash_amount(1_000_000, Severity.MAJOR, table) == 333_300
    assert slash_amount(7, Severity.CRITICAL, table) == 7
    with pytest.raises(ValueError, match="every severity"):
        DisputeRules(slash_bps={Severity.MINOR: 1_000})


def test_a_provider_below_the_minimum_stake_is_suspended() -> None:
    assert not suspends(MIN_STAKE_MICRO_BLOCK)
    assert suspends(MIN_STAKE_MICRO_BLOCK - 1)
    assert MIN_STAKE_MICRO_BLOCK == 1_000 * BLOCK


@given(st.integers(min_value=0, max_value=10**15), st.sampled_from(list(Severity)))
def test_a_default_slash_is_between_ten_and_fifty_percent_of_the_stake(stake, severity) -> None:
    slash = slash_amount(stake, severity)
    assert stake // 10 <= slash <= stake // 2
    assert slash * 10_000 <= stake * DEFAULT_RULES.slash_bps[severity] < (slash + 1) * 10_000


# -- the panel draw ------------------------------------------------------------------


def test_the_panel_is_the_lowest_sha256_of_id_and_name_among_eligible_validators() -> None:
    dispute_id = "dsp-" + "0" * 32
    validators = [
        *VALIDATORS,
        Validator("poor", 1_000 * BLOCK - 1),  # below the validator minimum
        Validator(OWNER, 5_000 * BLOCK),  # a party
    ]
    panel = draw_panel(dispute_id, validators, parties=[OWNER, FLAGGER])
    by_hand = sorted(
        (v.name for v in VALIDATORS),
        key=lambda name: hashlib.sha256(f"{dispute_id}\n{name}".encode()).hexdigest(),
    )[:5]
    assert panel == tuple(by_hand)


def test_a_thin_validator_set_gives_a_short_panel_down_to_the_quorum_and_no_further() -> None:
    three = VALIDATORS[:3]
    dispute = a_dispute(validators=three)
    assert sorted(dispute.panel) == ["val-0", "val-1", "val-2"]
    assert dispute.quorum == 3  # a short panel still needs the full quorum
    with pytest.raises(PanelUnavailable) as refused:
        a_dispute(validators=[*VALIDATORS[:2], Validator(BUYER, 9_000 * BLOCK)])
    assert refused.value.data == {"eligible": 2, "required": 3}


def test_rules_refuse_a_quorum_two_verdicts_could_both_reach() -> None:
    with pytest.raises(ValueError, match="more than half"):
        DisputeRules(panel_size=4, quorum=2)
    assert DisputeRules(panel_size=6, quorum=4).quorum == 4


names = st.lists(
    st.text(alphabet="abcdefghijklmnop.-", min_size=3, max_size=8),
    min_size=0,
    max_size=20,
    unique=True,
)


@given(
    names,
    st.lists(st.integers(min_value=0, max_value=3_000 * BLOCK), min_size=20, max_size=20),
    st.data(),
)
def test_the_panel_draw_is_a_deterministic_party_free_subset_whatever_the_order(
    validator_names, stakes, data
) -> None:
    validators = [Validator(n, s) for n, s in zip(validator_names, stakes, strict=False)]
    parties = data.draw(st.sets(st.sampled_from(validator_names))) if validator_names else set()
    shuffled = data.draw(st.permutations(validators))
    dispute_id = dispute_id_for(Subject.reading(data.draw(st.sampled_from([READING, "cd" * 32]))))
    eligible = {v.name for v in validators if v.stake_micro_block >= 1_000 * BLOCK} - parties
    try:
        panel = draw_panel(dispute_id, validators, parties)
    except PanelUnavailable:
        assert len(eligible) < DEFAULT_RULES.quorum
        return
    assert panel == draw_panel(dispute_id, validators, parties)
    assert panel == draw_panel(dispute_id, shuffled, parties)
    assert not set(panel) & parties
    assert set(panel) <= eligible
    assert len(panel) == min(5, len(eligible)) == len(set(panel))


# -- votes ------------------------------------------------------------------------------


def test_a_panel_member_votes_once_and_the_vote_is_recorded() -> None:
    dispute = a_dispute()
    after = cast_vote(dispute, dispute.panel[2], Verdict.GUILTY, Severity.MAJOR, NOW + 10)
    assert after.votes == (Vote(dispute.panel[2], Verdict.GUILTY, Severity.MAJOR, NOW + 10),)
    assert after.version == dispute.version + 1
    assert dispute.votes == ()


@pytest.mark.parametrize(
    ("voter", "verdict", "severity", "at_ms", "error"),
    [
        ("outsider", Verdict.GUILTY, Severity.MINOR, NOW + 1, NotOnPanel),
        (OWNER, Verdict.CLEARED, None, NOW + 1, PartyToDispute),
        (BUYER, Verdict.GUILTY, Severity.MINOR, NOW + 1, PartyToDispute),
        ("seat0", Verdict.CLEARED, None, NOW + 1, AlreadyVoted),
        ("seat1", Verdict.CLEARED, None, NOW + DEFAULT_VOTING_PERIOD_MS, VotingClosed),
        ("seat1", Verdict.GUILTY, None, NOW + 1, InvalidState),
        ("seat1", Verdict.CLEARED, Severity.MINOR, NOW + 1, InvalidState),
    ],
)
def test_a_refused_vote_raises_and_changes_nothing(voter, verdict, severity, at_ms, error) -> None:
    dispute = voted(a_dispute(), GUILTY_MINOR)
    if voter.startswith("seat"):
        voter = dispute.panel[int(voter[4:])]
    before = replace(dispute)
    with pytest.raises(error):
        cast_vote(dispute, voter, verdict, severity, at_ms)
    assert dispute == before


def test_no_vote_is_taken_once_decided_or_resolved() -> None:
    decided = voted(a_dispute(), CLEARED, CLEARED, CLEARED)
    with pytest.raises(DisputeClosed):
        cast_vote(decided, decided.panel[3], Verdict.GUILTY, Severity.MINOR, NOW + 10)
    outcome = tally(decided, NOW + 10)
    assert outcome is not None
    closed = resolved(decided, outcome)
    assert closed.status == DisputeStatus.CLEARED
    with pytest.raises(DisputeClosed):
        cast_vote(closed, closed.panel[4], Verdict.CLEARED, None, NOW + 11)
    with pytest.raises(DisputeClosed):
        tally(closed, NOW + 12)
    with pytest.raises(DisputeClosed):
        resolved(closed, outcome)


@given(st.data())
def test_a_second_vote_and_a_vote_from_outside_the_panel_change_nothing(data) -> None:
    dispute = a_dispute()
    seat = data.draw(st.integers(min_value=0, max_value=4))
    first = data.draw(st.sampled_from([GUILTY_MINOR, GUILTY_MAJOR, GUILTY_CRITICAL, CLEARED]))
    again = data.draw(st.sampled_from([GUILTY_MINOR, GUILTY_CRITICAL, CLEARED]))
    after_one = cast_vote(dispute, dispute.panel[seat], first[0], first[1], NOW + 1)
    outsider = data.draw(
        st.sampled_from([v.name for v in VALIDATORS if v.name not in dispute.panel] + ["nobody"])
    )
    for voter, error in ((dispute.panel[seat], AlreadyVoted), (outsider, NotOnPanel)):
        with pytest.raises(error):
            cast_vote(after_one, voter, again[0], again[1], NOW + 2)
    assert after_one.votes == (Vote(dispute.panel[seat], first[0], first[1], NOW + 1),)
    assert tally(after_one, NOW + 2) is None


# -- tally ---------------------------------------------------------------------------------


def test_a_quorum_of_guilty_votes_decides_at_once_with_the_lower_median_severity() -> None:
    dispute = voted(a_dispute(), GUILTY_CRITICAL, CLEARED, GUILTY_MINOR, GUILTY_MAJOR)
    outcome = tally(dispute, NOW + 100)
    assert outcome is not None
    assert (outcome.verdict, outcome.severity, outcome.decided_by) == (
        Verdict.GUILTY,
        Severity.MAJOR,
        DecidedBy.QUORUM,
    )
    assert (outcome.guilty_votes, outcome.cleared_votes) == (3, 1)
    assert outcome.non_voters == (dispute.panel[4],)
    assert outcome.resolved_at_ms == NOW + 100
    assert resolved(dispute, outcome).severity == Severity.MAJOR


def test_before_quorum_and_deadline_there_is_no_outcome() -> None:
    dispute = voted(a_dispute(), GUILTY_MINOR, GUILTY_MINOR, CLEARED, CLEARED)
    assert tally(dispute, dispute.deadline_ms - 1) is None


@pytest.mark.parametrize(
    "votes",
    [
        (),  # nobody voted
        (GUILTY_CRITICAL, GUILTY_CRITICAL),  # guilty, but short of quorum
        (GUILTY_MAJOR, GUILTY_MAJOR, CLEARED, CLEARED),  # a tie
    ],
)
def test_at_the_deadline_without_a_guilty_quorum_the_provider_is_cleared(votes) -> None:
    dispute = voted(a_dispute(), *votes)
    outcome = tally(dispute, dispute.deadline_ms)
    assert outcome is not None
    assert (outcome.verdict, outcome.severity, outcome.decided_by) == (
        Verdict.CLEARED,
        None,
        DecidedBy.DEADLINE,
    )
    assert outcome.non_voters == dispute.panel[len(votes) :]


def test_the_guilty_severity_is_the_highest_a_strict_majority_of_guilty_voters_supports() -> None:
    def severity(*levels: Severity) -> Severity:
        return guilty_severity([Vote("v", Verdict.GUILTY, s, NOW) for s in levels])

    assert severity(Severity.MINOR, Severity.CRITICAL) == Severity.MINOR
    assert severity(Severity.CRITICAL, Severity.MINOR, Severity.MAJOR) == Severity.MAJOR
    assert severity(Severity.CRITICAL, Severity.CRITICAL, Severity.MINOR) == Severity.CRITICAL
    assert severity(Severity.MINOR, Severity.MINOR, Severity.CRITICAL) == Severity.MINOR


# -- consequences --------------------------------------------------------------------------


def balance(account: str) -> Pocket:
    return Pocket(PocketKind.BALANCE, account)


def test_guilty_slashes_the_stake_refunds_buyers_and_shares_the_rest() -> None:
    dispute = join_dispute(a_dispute(), flag_by("dave.theblock", NOW + 1))
    dispute = voted(dispute, GUILTY_MAJOR, GUILTY_MAJOR, GUILTY_MAJOR)
    outcome = tally(dispute, NOW + 10)
    assert outcome is not None
    result = consequences(
        dispute,
        outcome,
        stake_micro_block=2_000 * BLOCK,
        credit_ids=["c1", "c2"],
        escrowed=[Refund("pur-2", "erin.theblock", 12 * BLOCK)],
        settled=[Refund("pur-1", BUYER, 30 * BLOCK)],
    )
    stake = Pocket(PocketKind.STAKE, PROVIDER)
    pot = Pocket(PocketKind.POT, dispute.dispute_id)
    # slash 500 into the pot; refunds 30; reward 10 % of 470 = 47, 23.5 each; 423 to the treasury
    assert result.transfers == (
        Transfer(stake, pot, 500 * BLOCK, TransferReason.SLASH),
        Transfer(pot, balance(BUYER), 30 * BLOCK, TransferReason.SLASH_REFUND),
        Transfer(
            Pocket(PocketKind.ESCROW, "pur-2"),
            balance("erin.theblock"),
            12 * BLOCK,
            TransferReason.ESCROW_REFUND,
        ),
        Transfer(pot, balance(FLAGGER), 23_500_000, TransferReason.FLAGGER_REWARD),
        Transfer(pot, balance("dave.theblock"), 23_500_000, TransferReason.FLAGGER_REWARD),
        Transfer(
            pot,
            Pocket(PocketKind.TREASURY, "treasury"),
            423 * BLOCK,
            TransferReason.SLASH_TO_TREASURY,
        ),
        Transfer(
            bond_pocket(dispute.dispute_id, FLAGGER),
            balance(FLAGGER),
            10 * BLOCK,
            TransferReason.BOND_RETURNED,
        ),
        Transfer(
            bond_pocket(dispute.dispute_id, "dave.theblock"),
            balance("dave.theblock"),
            10 * BLOCK,
            TransferReason.BOND_RETURNED,
        ),
    )
    assert net_changes(result.transfers)[stake] == -500 * BLOCK
    assert pot not in net_changes(result.transfers)  # paid out in full
    assert result.slash_micro_block == 500 * BLOCK
    assert result.stake_after_micro_block == 1_500 * BLOCK
    assert not result.suspended
    assert result.revoke_credit_ids == ("c1", "c2")
    assert result.unfreeze_credit_ids == ()
    assert result.unrefunded_micro_block == 0


def test_a_slash_short_of_the_refunds_pays_buyers_pro_rata_and_reports_the_rest() -> None:
    dispute = voted(a_dispute(), GUILTY_MINOR, GUILTY_MINOR, GUILTY_MINOR)
    outcome = tally(dispute, NOW + 10)
    assert outcome is not None
    result = consequences(
        dispute,
        outcome,
        stake_micro_block=1_000 * BLOCK,  # minor: 100 BLOCK slashed
        credit_ids=["c1"],
        settled=[Refund("pur-1", BUYER, 150 * BLOCK), Refund("pur-2", "erin.theblock", 50 * BLOCK)],
    )
    changes = net_changes(result.transfers)
    assert changes[balance(BUYER)] == 75 * BLOCK
    assert changes[balance("erin.theblock")] == 25 * BLOCK
    assert changes[balance(FLAGGER)] == 10 * BLOCK  # the bond back, no reward left to share
    assert Pocket(PocketKind.TREASURY, "treasury") not in changes
    assert result.unrefunded_micro_block == 100 * BLOCK
    assert result.stake_after_micro_block == 900 * BLOCK
    assert result.suspended


def test_cleared_unfreezes_the_credits_and_pays_the_bonds_to_the_provider_owner() -> None:
    dispute = voted(a_dispute(), CLEARED, CLEARED, CLEARED)
    outcome = tally(dispute, NOW + 10)
    assert outcome is not None
    result = consequences(
        dispute,
        outcome,
        stake_micro_block=1_200 * BLOCK,
        credit_ids=["c1"],
        settled=[Refund("pur-1", BUYER, 30 * BLOCK)],
    )
    assert result.transfers == (
        Transfer(
            bond_pocket(dispute.dispute_id, FLAGGER),
            balance(OWNER),
            10 * BLOCK,
            TransferReason.BOND_TO_PROVIDER,
        ),
    )
    assert (result.slash_micro_block, result.stake_after_micro_block) == (0, 1_200 * BLOCK)
    assert result.unfreeze_credit_ids == ("c1",)
    assert result.revoke_credit_ids == ()
    assert not result.suspended


def test_a_detectors_flag_earns_no_reward_and_its_share_goes_to_the_treasury() -> None:
    dispute = open_dispute(
        subject=Subject.meter_window("solar_meter_001", NOW - 3_600_000, NOW),
        provider_id=PROVIDER,
        provider_owner=OWNER,
        flag=Flag("solar at night", ("sun altitude -31°",), NOW, detector="night_solar"),
        buyers=[],
        validators=VALIDATORS,
        opened_at_ms=NOW,
    )
    dispute = voted(dispute, GUILTY_CRITICAL, GUILTY_CRITICAL, GUILTY_CRITICAL)
    outcome = tally(dispute, NOW + 10)
    assert outcome is not None
    result = consequences(dispute, outcome, stake_micro_block=3_000 * BLOCK, credit_ids=["c9"])
    assert net_changes(result.transfers) == {
        Pocket(PocketKind.STAKE, PROVIDER): -1_500 * BLOCK,
        Pocket(PocketKind.TREASURY, "treasury"): 1_500 * BLOCK,
    }


amounts = st.integers(min_value=1, max_value=10**12)


@given(
    stake=st.integers(min_value=0, max_value=10**15),
    votes=st.sampled_from(
        [(GUILTY_MINOR,) * 3, (GUILTY_MAJOR,) * 3, (GUILTY_CRITICAL,) * 3, (CLEARED,) * 3]
    ),
    extra_flaggers=st.integers(min_value=0, max_value=2),
    escrowed=st.lists(amounts, max_size=4),
    settled=st.lists(amounts, max_size=4),
    reward_bps=st.integers(min_value=0, max_value=10_000),
)
def test_a_resolution_moves_block_without_creating_or_destroying_any(
    stake, votes, extra_flaggers, escrowed, settled, reward_bps
) -> None:
    rules = DisputeRules(flagger_reward_bps=reward_bps)
    dispute = a_dispute()
    for n in range(extra_flaggers):
        dispute = join_dispute(dispute, flag_by(f"flagger-{n}", NOW + 1), rules)
    dispute = voted(dispute, *votes)
    outcome = tally(dispute, NOW + 10)
    assert outcome is not None
    escrow_refunds = [Refund(f"pur-e{i}", f"buyer-e{i}", a) for i, a in enumerate(escrowed)]
    settled_refunds = [Refund(f"pur-s{i}", f"buyer-s{i}", a) for i, a in enumerate(settled)]
    result = consequences(
        dispute,
        outcome,
        stake_micro_block=stake,
        credit_ids=["c1"],
        escrowed=escrow_refunds,
        settled=settled_refunds,
        rules=rules,
    )
    changes = net_changes(result.transfers)
    assert sum(changes.values()) == 0
    assert all(t.micro_block > 0 for t in result.transfers)
    assert changes.get(Pocket(PocketKind.STAKE, PROVIDER), 0) == -result.slash_micro_block
    assert result.stake_after_micro_block == stake - result.slash_micro_block
    for f in dispute.flags:  # every bond leaves the dispute, one way or the other
        assert changes[bond_pocket(dispute.dispute_id, f.by)] == -f.bond_micro_block
    negative = {p.kind for p, change in changes.items() if change < 0}
    assert negative <= {PocketKind.STAKE, PocketKind.ESCROW, PocketKind.BOND}
    if outcome.verdict == Verdict.GUILTY:
        for r in escrow_refunds:
            assert changes[Pocket(PocketKind.ESCROW, r.purchase_id)] == -r.micro_block
        refunded = sum(changes.get(balance(r.buyer), 0) for r in settled_refunds)
        assert refunded + result.unrefunded_micro_block == sum(settled)
        assert refunded <= result.slash_micro_block
    else:
        assert result.slash_micro_block == 0
        assert changes[balance(OWNER)] == dispute.bond_micro_block


def test_every_dispute_refusal_is_a_domain_error_with_a_distinct_reason() -> None:
    classes = [
        NotOnPanel,
        PartyToDispute,
        AlreadyVoted,
        DisputeClosed,
        VotingClosed,
        PanelUnavailable,
        InvalidFlag,
    ]
    assert all(issubclass(c, DomainError) for c in classes)
    assert [(c.code, c.reason) for c in classes] == [
        (1005, "not_on_panel"),
        (1006, "party_to_dispute"),
        (4009, "already_voted"),
        (4010, "dispute_closed"),
        (4011, "voting_closed"),
        (4012, "panel_unavailable"),
        (-32602, "invalid_flag"),
    ]
