"""Disputes: a flagged reading, the panel that judges it, the verdict and what it moves.

Lifecycle (design brief §3 "Dispute → vote → outcome")::

    open_dispute ──► join_dispute* ──► cast_vote* ──► tally ──► resolved
                                                       │
                                        consequences ◄─┘  (transfers, credits, suspension)

Everything here is pure: the services layer loads records, calls these
functions and writes what they return in one atomic write. Amounts are
integer micro-BLOCK, times integer milliseconds.

Rules chosen here, and why:

* **One dispute per subject and round.** ``dispute_id_for`` hashes the
  subject, so a second flag on the same reading (or the same meter window)
  finds the open dispute and joins it. After a dispute is resolved, a new flag
  on the same subject opens the next round (a new id), so a resolution is never
  reopened.
* **Panel draw** (``draw_panel``): equal chance for every eligible validator,
  checkable by anyone; see that function for the exact algorithm.
* **Quorum** is a fixed number of agreeing votes (default 3: a majority of a
  5-member panel), stored on the dispute when it opens. It is always more than
  half the configured panel, so both verdicts can never reach it. A panel
  drawn short (fewer eligible validators than seats) still needs the full
  quorum: a thin validator set never lowers the bar.
* **Innocent until proven guilty.** Guilty needs a quorum of guilty votes. At
  the deadline without one (a tie, too few votes, no votes) the dispute is
  cleared.
* **Severity** of a guilty verdict is the lower median of the guilty votes'
  severities (minor < major < critical): the highest severity that a strict
  majority of the guilty voters supports. One outlier cannot raise it.
* **Money** (``consequences``): see that function. The stake loses exactly the
  slash; every micro-BLOCK moved appears in one ``Transfer``.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final

from chalicelib.domain.credits import Freeze
from chalicelib.domain.errors import (
    AlreadyExists,
    AlreadyVoted,
    DisputeClosed,
    InvalidFlag,
    InvalidState,
    NotAuthorised,
    NotOnPanel,
    PanelUnavailable,
    PartyToDispute,
    VotingClosed,
)
from chalicelib.domain.providers import MIN_STAKE_MICRO_BLOCK, is_valid_meter_address
from chalicelib.domain.units import MAX_MICRO_BLOCK, MICRO_BLOCK_PER_BLOCK

BPS: Final = 10_000  # basis points in a whole

# Validators vote for this long after a dispute opens (configurable). Settlements
# of frozen credits wait for it, so it is kept short.
DEFAULT_VOTING_PERIOD_MS: Final = 48 * 3_600_000
DEFAULT_PANEL_SIZE: Final = 5
DEFAULT_MIN_VALIDATOR_STAKE_MICRO_BLOCK: Final = 1_000 * MICRO_BLOCK_PER_BLOCK
# A flagger's bond (configurable): enough to make frivolous flags cost something.
DEFAULT_BOND_MICRO_BLOCK: Final = 10 * MICRO_BLOCK_PER_BLOCK
# The bonded flaggers' reward: this share of the slash, after refunds.
DEFAULT_FLAGGER_REWARD_BPS: Final = 1_000

# Bounds on what a flag carries: it is stored and shown to every panel member.
MAX_REASON_CHARS: Final = 500
MAX_EVIDENCE_ITEMS: Final = 10
MAX_EVIDENCE_CHARS: Final = 2_000  # per item: a note or a URL
# A meter window freezes every credit minted in it; a month bounds that write.
MAX_WINDOW_MS: Final = 31 * 24 * 3_600_000
MAX_DETECTOR_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{1,47}$")
READING_HASH: Final = re.compile(r"^[0-9a-f]{64}$")

TREASURY: Final = "treasury"


class Severity(StrEnum):
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"


# Declaration order is the order of gravity; the median relies on it.
SEVERITY_ORDER: Final = (Severity.MINOR, Severity.MAJOR, Severity.CRITICAL)

# Slash per severity, in basis points of the stake: 10 / 25 / 50 % (brief §5).
DEFAULT_SLASH_BPS: Final[Mapping[Severity, int]] = {
    Severity.MINOR: 1_000,
    Severity.MAJOR: 2_500,
    Severity.CRITICAL: 5_000,
}


class Verdict(StrEnum):
    GUILTY = "guilty"
    CLEARED = "cleared"


class DisputeStatus(StrEnum):
    OPEN = "open"  # credits frozen, the panel votes
    # Found guilty, the stake slashed; the affected credits are being revoked
    # and their buyers refunded, a bounded page per atomic write.
    REVOKING = "revoking"
    GUILTY = "guilty"  # guilty, and every consequence applied
    CLEARED = "cleared"


class DisputeRole(StrEnum):
    """How an account takes part in a dispute, as getDisputes filters it."""

    FLAGGER = "flagger"
    PANEL = "panel"


class SubjectKind(StrEnum):
    READING = "reading"  # one signed reading, by its hash (a credit's reading_hash)
    METER_WINDOW = "meter_window"  # every reading of a meter in [start, end)


@dataclass(frozen=True)
class Subject:
    """What is disputed: one reading, or a meter over a half-open time window."""

    kind: SubjectKind
    reading_hash: str | None = None
    meter_address: str | None = None
    window_start_ms: int | None = None
    window_end_ms: int | None = None

    @classmethod
    def reading(cls, reading_hash: str) -> Subject:
        subject = cls(SubjectKind.READING, reading_hash=reading_hash)
        subject.check()
        return subject

    @classmethod
    def meter_window(cls, meter_address: str, start_ms: int, end_ms: int) -> Subject:
        subject = cls(SubjectKind.METER_WINDOW, None, meter_address, start_ms, end_ms)
        subject.check()
        return subject

    def check(self) -> None:
        """Raise InvalidFlag unless the subject is well formed and bounded."""
        if self.kind == SubjectKind.READING:
            if self.reading_hash is None or not READING_HASH.match(self.reading_hash):
                raise InvalidFlag("a reading hash is 64 lower-case hex characters")
            if (self.meter_address, self.window_start_ms, self.window_end_ms) != (None, None, None):
                raise InvalidFlag("a reading subject names only the reading hash")
            return
        start, end = self.window_start_ms, self.window_end_ms
        if self.meter_address is None or not is_valid_meter_address(self.meter_address):
            raise InvalidFlag("a meter window names a valid meter address")
        if self.reading_hash is not None or start is None or end is None:
            raise InvalidFlag("a meter window names a meter, a start and an end")
        if not 0 <= start < end or end - start > MAX_WINDOW_MS:
            raise InvalidFlag(
                "a meter window starts before it ends and spans at most 31 days",
                max_window_ms=MAX_WINDOW_MS,
            )

    @property
    def key(self) -> str:
        """Canonical text of the subject: equal subjects, equal keys."""
        if self.kind == SubjectKind.READING:
            return f"reading\n{self.reading_hash}"
        return f"meter_window\n{self.meter_address}\n{self.window_start_ms}\n{self.window_end_ms}"


def dispute_id_for(subject: Subject, round_number: int = 1) -> str:
    """Stable per (subject, round): a second flag on the same subject joins the open dispute."""
    if round_number < 1:
        raise ValueError("rounds count from 1")
    digest = hashlib.sha256(f"dispute\n{subject.key}\n{round_number}".encode()).hexdigest()
    return f"dsp-{digest[:32]}"


# A provider's record holds its open disputes' freezes: bounded, so that every
# purchase and settlement that reads the record stays a small read (and the
# record, which every accepted reading updates, stays near one write unit).
MAX_OPEN_DISPUTES_PER_PROVIDER: Final = 8
# A dispute's resolution pays every bonded flagger in one atomic write.
MAX_FLAGS_PER_DISPUTE: Final = 20


def subject_freeze(dispute_id: str, subject: Subject, reading_end_ms: int | None) -> Freeze:
    """The credits a dispute on ``subject`` holds: a reading's (at its time
    ``reading_end_ms``, by its hash), or every one of a meter window's."""
    if subject.kind == SubjectKind.READING:
        if reading_end_ms is None:
            raise ValueError("a reading dispute knows its reading's time")
        return Freeze(dispute_id, reading_end_ms, reading_end_ms + 1, subject.reading_hash)
    if subject.window_start_ms is None or subject.window_end_ms is None:
        raise ValueError("a meter window has a start and an end")
    return Freeze(dispute_id, subject.window_start_ms, subject.window_end_ms)


@dataclass(frozen=True)
class Flag:
    """One flag on a dispute: by an account with a bond, or by a detector without one."""

    reason: str
    evidence: tuple[str, ...]
    flagged_at_ms: int
    flagger: str | None = None  # the account that flagged and posted the bond
    detector: str | None = None  # or the automatic detector that flagged
    bond_micro_block: int = 0

    @property
    def by(self) -> str:
        """Who flagged, as shown: the account, or ``detector:<name>``."""
        return self.flagger if self.flagger is not None else f"detector:{self.detector}"

    def check(self) -> None:
        """Raise InvalidFlag unless the flag is within the documented bounds."""
        if (self.flagger is None) == (self.detector is None):
            raise InvalidFlag("a flag is made by an account or by a detector, not both")
        if self.detector is not None:
            if not MAX_DETECTOR_NAME.match(self.detector):
                raise InvalidFlag("a detector name is lower-case letters, digits and _")
            if self.bond_micro_block != 0:
                raise InvalidFlag("an automatic flag posts no bond")
        elif not 0 < self.bond_micro_block <= MAX_MICRO_BLOCK:
            raise InvalidFlag("an account's flag posts a bond")
        if not 0 < len(self.reason) <= MAX_REASON_CHARS or not _is_text(self.reason):
            raise InvalidFlag(
                "a reason is 1 to 500 printable characters", max_chars=MAX_REASON_CHARS
            )
        if len(self.evidence) > MAX_EVIDENCE_ITEMS:
            raise InvalidFlag("at most 10 items of evidence", max_items=MAX_EVIDENCE_ITEMS)
        for item in self.evidence:
            if not 0 < len(item) <= MAX_EVIDENCE_CHARS or not _is_text(item):
                raise InvalidFlag(
                    "an item of evidence is 1 to 2,000 printable characters (a note or a URL)",
                    max_chars=MAX_EVIDENCE_CHARS,
                )


def _is_text(text: str) -> bool:
    # Newlines are welcome in a note; other control characters only hide things.
    return text.replace("\n", "").isprintable()


@dataclass(frozen=True)
class Vote:
    validator: str
    verdict: Verdict
    severity: Severity | None  # set for guilty, None for cleared
    voted_at_ms: int


@dataclass(frozen=True)
class Validator:
    """An account with the validator role, and the stake it holds as one.

    The stake is posted from the account's balance and can be withdrawn
    while the validator sits on no undecided dispute's panel. An account whose
    role was revoked keeps its record (``active`` false) until it withdraws.
    """

    name: str
    stake_micro_block: int
    active: bool = True
    open_panels: int = 0  # panels of undecided disputes it sits on


@dataclass(frozen=True)
class DisputeRules:
    """The configurable numbers of a dispute; checked once, when built."""

    panel_size: int = DEFAULT_PANEL_SIZE
    quorum: int = DEFAULT_PANEL_SIZE // 2 + 1  # agreeing votes that decide
    min_validator_stake_micro_block: int = DEFAULT_MIN_VALIDATOR_STAKE_MICRO_BLOCK
    voting_period_ms: int = DEFAULT_VOTING_PERIOD_MS
    slash_bps: Mapping[Severity, int] = field(default_factory=lambda: dict(DEFAULT_SLASH_BPS))
    flagger_reward_bps: int = DEFAULT_FLAGGER_REWARD_BPS
    bond_micro_block: int = DEFAULT_BOND_MICRO_BLOCK  # what an account's flag posts

    def __post_init__(self) -> None:
        if self.panel_size < 1:
            raise ValueError("a panel has at least one seat")
        if not self.panel_size // 2 < self.quorum <= self.panel_size:
            # More than half: two verdicts can never both reach quorum.
            raise ValueError("the quorum is more than half the panel and at most all of it")
        if self.voting_period_ms <= 0 or self.min_validator_stake_micro_block < 0:
            raise ValueError("a voting period is positive and a minimum stake not negative")
        if set(self.slash_bps) != set(Severity):
            raise ValueError("every severity has a slash")
        if not all(0 <= self.slash_bps[s] <= BPS for s in Severity):
            raise ValueError("a slash is between 0 and 100 % of the stake")
        if not 0 <= self.flagger_reward_bps <= BPS:
            raise ValueError("the flagger reward is between 0 and 100 % of the slash")
        if not 0 < self.bond_micro_block <= MAX_MICRO_BLOCK:
            raise ValueError("a bond is positive")

    def check_flag(self, flag: Flag) -> None:
        """Raise InvalidFlag unless the flag is well formed and posts the configured bond."""
        flag.check()
        if flag.flagger is not None and flag.bond_micro_block != self.bond_micro_block:
            raise InvalidFlag(
                "an account's flag posts the configured bond",
                bond_micro_block=self.bond_micro_block,
            )


DEFAULT_RULES: Final = DisputeRules()


@dataclass(frozen=True)
class Dispute:
    dispute_id: str
    subject: Subject
    round_number: int
    provider_id: str  # the accused
    provider_owner: str  # the account the provider's stake belongs to
    flags: tuple[Flag, ...]  # the first opened it; later ones joined
    # Accounts that may not judge: the owner, every flagging account and the
    # buyers of the affected credits, as known when the dispute opened.
    parties: frozenset[str]
    opened_at_ms: int
    deadline_ms: int  # votes are taken strictly before it
    panel: tuple[str, ...]  # in draw order
    quorum: int  # agreeing votes that decide, fixed when opened
    votes: tuple[Vote, ...] = ()
    status: DisputeStatus = DisputeStatus.OPEN
    # For a reading subject: the end of the reading's interval (its time), which
    # places its credits among the provider's.
    reading_end_ms: int | None = None
    severity: Severity | None = None  # set once guilty
    resolved_at_ms: int | None = None
    decided_by: DecidedBy | None = None
    non_voters: tuple[str, ...] = ()  # drawn, never voted: recorded at resolution
    revocation: Revocation | None = None  # guilty: the slash and the revocation's progress
    version: int = 1

    @property
    def freeze(self) -> Freeze:
        """The credits this dispute holds out of the market while it is undecided."""
        return subject_freeze(self.dispute_id, self.subject, self.reading_end_ms)

    @property
    def bond_micro_block(self) -> int:
        """Every bond the flags posted: what the dispute holds."""
        return sum(f.bond_micro_block for f in self.flags)

    def vote_of(self, validator: str) -> Vote | None:
        return next((v for v in self.votes if v.validator == validator), None)


# -- slash ------------------------------------------------------------------------


def slash_amount(
    stake_micro_block: int,
    severity: Severity,
    slash_bps: Mapping[Severity, int] = DEFAULT_SLASH_BPS,
) -> int:
    """The stake a guilty verdict of ``severity`` takes, rounded down.

    ``stake x bps // 10,000``: never more than the rule says, at most one
    micro-BLOCK less than the exact share.
    """
    if stake_micro_block < 0:
        raise ValueError("a stake cannot be negative")
    return stake_micro_block * slash_bps[severity] // BPS


def suspends(stake_after_micro_block: int) -> bool:
    """Whether a provider left with this stake is suspended (below the minimum)."""
    return stake_after_micro_block < MIN_STAKE_MICRO_BLOCK


# -- panel ------------------------------------------------------------------------


def panel_rank(dispute_id: str, validator: str) -> str:
    """A validator's place in a dispute's draw: lower goes first."""
    return hashlib.sha256(f"{dispute_id}\n{validator}".encode()).hexdigest()


def draw_panel(
    dispute_id: str,
    validators: Iterable[Validator],
    parties: Iterable[str],
    rules: DisputeRules = DEFAULT_RULES,
) -> tuple[str, ...]:
    """The validators who judge a dispute, drawn from its id; anyone can redo the draw.

    1. Eligible: every validator whose stake is at least the minimum validator
       stake (default 1,000 BLOCK) and whose name is not a party (the
       provider's owner, a flagging account, a buyer of an affected credit).
       A name listed twice counts once.
    2. Rank: ``sha256(utf8(dispute_id + "\\n" + name))`` as lower-case hex,
       ascending (ties, which SHA-256 makes practically impossible, by name).
    3. Take the first ``panel_size`` (default 5), in rank order.

    Stake above the minimum buys no extra chance: weighting by stake would
    hand the largest holders most panels. The id is known before anyone votes
    and the order of the input list does not matter, so the draw is the same
    wherever it is computed.

    Fewer eligible validators than seats give a shorter panel, which still
    needs the full quorum; fewer than the quorum raise PanelUnavailable, since
    such a panel could never decide and a guilty verdict would be impossible.
    """
    excluded = set(parties)
    eligible = {
        v.name
        for v in validators
        if v.active
        and v.stake_micro_block >= rules.min_validator_stake_micro_block
        and v.name not in excluded
    }
    if len(eligible) < rules.quorum:
        raise PanelUnavailable(
            "too few validators who are not a party to draw a panel",
            eligible=len(eligible),
            required=rules.quorum,
        )
    ranked = sorted(eligible, key=lambda name: (panel_rank(dispute_id, name), name))
    return tuple(ranked[: rules.panel_size])


# -- open, join, vote ---------------------------------------------------------------


def open_dispute(
    *,
    subject: Subject,
    provider_id: str,
    provider_owner: str,
    flag: Flag,
    buyers: Iterable[str],
    validators: Iterable[Validator],
    opened_at_ms: int,
    round_number: int = 1,
    rules: DisputeRules = DEFAULT_RULES,
    reading_end_ms: int | None = None,
) -> Dispute:
    """A new dispute on ``subject``, its panel drawn; InvalidFlag or PanelUnavailable otherwise.

    A reading subject names the reading's time (``reading_end_ms``): it is
    what finds the reading's credits.
    """
    subject.check()
    rules.check_flag(flag)
    if flag.flagger == provider_owner:
        # The owner would be rewarded from its own slash.
        raise NotAuthorised("a provider's owner cannot flag its own provider")
    dispute_id = dispute_id_for(subject, round_number)
    parties = frozenset({provider_owner, *buyers, *_accounts([flag])})
    return Dispute(
        dispute_id=dispute_id,
        subject=subject,
        round_number=round_number,
        provider_id=provider_id,
        provider_owner=provider_owner,
        flags=(flag,),
        parties=parties,
        opened_at_ms=opened_at_ms,
        deadline_ms=opened_at_ms + rules.voting_period_ms,
        panel=draw_panel(dispute_id, validators, parties, rules),
        quorum=rules.quorum,
        reading_end_ms=reading_end_ms if subject.kind == SubjectKind.READING else None,
    )


def join_dispute(dispute: Dispute, flag: Flag, rules: DisputeRules = DEFAULT_RULES) -> Dispute:
    """The open dispute with one more flag (a second flag on the same subject)."""
    rules.check_flag(flag)
    _check_takes_input(dispute, flag.flagged_at_ms)
    if flag.flagger is not None:
        if flag.flagger == dispute.provider_owner:
            raise NotAuthorised("a provider's owner cannot flag its own provider")
        if flag.flagger in dispute.panel:
            # The panel was drawn without parties; a judge cannot become one.
            raise NotAuthorised("a panel member cannot flag the dispute it judges")
    if any(f.by == flag.by for f in dispute.flags):
        raise AlreadyExists("this account or detector has already flagged the dispute")
    if len(dispute.flags) >= MAX_FLAGS_PER_DISPUTE:
        raise InvalidState(
            "the dispute holds as many flags as it takes; it is being judged",
            max_flags=MAX_FLAGS_PER_DISPUTE,
        )
    return replace(
        dispute,
        flags=(*dispute.flags, flag),
        parties=dispute.parties | _accounts([flag]),
        version=dispute.version + 1,
    )


def cast_vote(
    dispute: Dispute,
    voter: str,
    verdict: Verdict,
    severity: Severity | None,
    at_ms: int,
) -> Dispute:
    """The dispute with ``voter``'s vote added; a domain error, and no change, otherwise.

    Checked in order: the dispute is open and undecided (DisputeClosed), the
    deadline has not passed (VotingClosed), the voter is not a party
    (PartyToDispute), is on the panel (NotOnPanel), has not voted
    (AlreadyVoted), and the severity fits the verdict (InvalidState).
    """
    _check_takes_input(dispute, at_ms)
    if voter in dispute.parties:
        raise PartyToDispute("a party to the dispute cannot vote on it", voter=voter)
    if voter not in dispute.panel:
        raise NotOnPanel("only the drawn panel votes on a dispute", voter=voter)
    if dispute.vote_of(voter) is not None:
        raise AlreadyVoted("a panel member votes once", voter=voter)
    if (verdict == Verdict.GUILTY) != (severity is not None):
        raise InvalidState("a guilty vote names a severity; a cleared vote names none")
    vote = Vote(voter, verdict, severity, at_ms)
    return replace(dispute, votes=(*dispute.votes, vote), version=dispute.version + 1)


def _check_takes_input(dispute: Dispute, at_ms: int) -> None:
    if dispute.status != DisputeStatus.OPEN:
        raise DisputeClosed("the dispute is resolved", status=dispute.status.value)
    if _decided(dispute) is not None:
        # A later vote could only change the severity of a verdict already reached.
        raise DisputeClosed("a quorum has already decided the dispute", status="decided")
    if at_ms >= dispute.deadline_ms:
        raise VotingClosed("the dispute's deadline has passed", deadline_ms=dispute.deadline_ms)


def _accounts(flags: Iterable[Flag]) -> frozenset[str]:
    return frozenset(f.flagger for f in flags if f.flagger is not None)


# -- tally ---------------------------------------------------------------------------


class DecidedBy(StrEnum):
    QUORUM = "quorum"
    DEADLINE = "deadline"


@dataclass(frozen=True)
class Outcome:
    dispute_id: str
    verdict: Verdict
    severity: Severity | None  # set when guilty
    decided_by: DecidedBy
    guilty_votes: int
    cleared_votes: int
    non_voters: tuple[str, ...]  # drawn, never voted; in draw order
    resolved_at_ms: int


def _decided(dispute: Dispute) -> Verdict | None:
    counts = Counter(v.verdict for v in dispute.votes)
    for verdict in (Verdict.GUILTY, Verdict.CLEARED):
        if counts[verdict] >= dispute.quorum:
            return verdict
    return None


def guilty_severity(votes: Sequence[Vote]) -> Severity:
    """The lower median of the guilty votes' severities.

    It is the highest severity that a strict majority of the guilty voters
    voted for or above, so one harsh outlier cannot raise the slash.
    """
    ranks = sorted(SEVERITY_ORDER.index(v.severity) for v in votes if v.severity is not None)
    if not ranks:
        raise ValueError("no guilty vote to take a severity from")
    return SEVERITY_ORDER[ranks[(len(ranks) - 1) // 2]]


def tally(dispute: Dispute, now_ms: int) -> Outcome | None:
    """The outcome once a verdict has a quorum or the deadline has passed; None before.

    At the deadline without a guilty quorum the dispute is cleared, ties and
    silence included: a provider is innocent until a quorum finds it guilty.
    A resolved dispute raises DisputeClosed: it resolves once.
    """
    if dispute.status != DisputeStatus.OPEN:
        raise DisputeClosed("the dispute is resolved", status=dispute.status.value)
    decided = _decided(dispute)
    if decided is None and now_ms < dispute.deadline_ms:
        return None
    guilty = [v for v in dispute.votes if v.verdict == Verdict.GUILTY]
    verdict = decided or Verdict.CLEARED
    return Outcome(
        dispute_id=dispute.dispute_id,
        verdict=verdict,
        severity=guilty_severity(guilty) if verdict == Verdict.GUILTY else None,
        decided_by=DecidedBy.QUORUM if decided is not None else DecidedBy.DEADLINE,
        guilty_votes=len(guilty),
        cleared_votes=len(dispute.votes) - len(guilty),
        non_voters=tuple(name for name in dispute.panel if dispute.vote_of(name) is None),
        resolved_at_ms=now_ms,
    )


def resolved(
    dispute: Dispute,
    outcome: Outcome,
    stake_micro_block: int = 0,
    owed_micro_block: int = 0,
    rules: DisputeRules = DEFAULT_RULES,
) -> Dispute:
    """The dispute with ``outcome``'s verdict: cleared, or guilty with its revocation begun.

    A guilty verdict slashes ``stake_micro_block`` (the provider's stake now)
    by the severity; the slash leaves the stake in the same write and is held
    by the dispute until the revocation pays it out (see ``Revocation``).
    ``owed_micro_block`` is what buyers paid for the affected credits that were
    already settled: the refunds owed in full.
    """
    if dispute.status != DisputeStatus.OPEN:
        raise DisputeClosed("the dispute is resolved", status=dispute.status.value)
    if outcome.dispute_id != dispute.dispute_id:
        raise ValueError("the outcome is another dispute's")
    decided = replace(
        dispute,
        severity=outcome.severity,
        resolved_at_ms=outcome.resolved_at_ms,
        decided_by=outcome.decided_by,
        non_voters=outcome.non_voters,
        version=dispute.version + 1,
    )
    if outcome.verdict == Verdict.CLEARED:
        return replace(decided, status=DisputeStatus.CLEARED)
    if outcome.severity is None:
        raise ValueError("a guilty outcome has a severity")
    if stake_micro_block < 0 or owed_micro_block < 0:
        raise ValueError("a stake and what is owed are not negative")
    slash = slash_amount(stake_micro_block, outcome.severity, rules.slash_bps)
    revocation = Revocation(
        slash_micro_block=slash,
        owed_micro_block=owed_micro_block,
        stake_after_micro_block=stake_micro_block - slash,
    )
    return replace(decided, status=DisputeStatus.REVOKING, revocation=revocation)


# -- consequences --------------------------------------------------------------------


class PocketKind(StrEnum):
    """The places BLOCK sits in (chalicelib.domain.ledger's conservation sum)."""

    BALANCE = "balance"  # an account's spendable balance; name: the account
    STAKE = "stake"  # a provider's stake; name: the provider id
    ESCROW = "escrow"  # a purchase's escrow; name: the purchase id
    BOND = "bond"  # a flag's bond; name: "<dispute id>/<flagger>"
    POT = "pot"  # a guilty dispute's slash, until paid out; name: the dispute id
    TREASURY = "treasury"  # the marketplace's; name: "treasury"


@dataclass(frozen=True, order=True)
class Pocket:
    kind: PocketKind
    name: str


class TransferReason(StrEnum):
    SLASH = "slash"  # stake -> the dispute's pot, at the guilty verdict
    SLASH_REFUND = "slash_refund"  # pot -> a buyer of settled revoked credits
    ESCROW_REFUND = "escrow_refund"  # escrow -> the buyer of reserved revoked credits
    FLAGGER_REWARD = "flagger_reward"  # pot -> a bonded flagger
    SLASH_TO_TREASURY = "slash_to_treasury"  # what is left of the pot
    BOND_RETURNED = "bond_returned"  # guilty: bond -> its flagger
    BOND_TO_PROVIDER = "bond_to_provider"  # cleared: bond -> the provider's owner


@dataclass(frozen=True)
class Transfer:
    source: Pocket
    destination: Pocket
    micro_block: int  # always positive
    reason: TransferReason


@dataclass(frozen=True)
class Refund:
    """What one purchase paid for the revoked credits: returned to its buyer."""

    purchase_id: str
    buyer: str
    micro_block: int


@dataclass(frozen=True)
class Revocation:
    """A guilty verdict's consequences, applied a page of affected credits at a time.

    The verdict moves the slash from the stake into the dispute's pot (one
    write, so the provider is suspended at once if it falls below the minimum
    stake). Each page then revokes some credits in one atomic write: buyers of
    reserved ones get their escrow back, buyers of settled ones are refunded
    from the pot (``settled_refund``). The last write pays the pot's remainder
    out (``closing_transfers``). A page that is retried, or a second resolver,
    fails the dispute's version condition: each credit is revoked once.
    """

    slash_micro_block: int
    owed_micro_block: int  # settled refunds owed in full, known at the verdict
    stake_after_micro_block: int
    refunded_micro_block: int = 0  # paid from the pot so far
    escrow_refunded_micro_block: int = 0
    revoked_credits: int = 0
    revoked_wh: int = 0
    cursor: str | None = None  # where the next page starts; None: at the beginning
    swept: bool = False  # every affected credit is revoked: the pot can close
    # Once closed: what the pot paid the flaggers and the treasury, and the
    # slash receipt (its chain: slash_chain(provider)).
    flagger_reward_micro_block: int = 0
    treasury_micro_block: int = 0
    receipt_sequence: int | None = None
    receipt_hash: str | None = None

    @property
    def pot_micro_block(self) -> int:
        return self.slash_micro_block - self.refunded_micro_block

    @property
    def unrefunded_micro_block(self) -> int:
        """Settled refunds the slash could not cover (it was smaller than what was owed)."""
        return max(0, self.owed_micro_block - self.refunded_micro_block)


def settled_refund(paid_micro_block: int, revocation: Revocation) -> int:
    """What a buyer of revoked settled credits gets back from the pot.

    In full when the slash covers every settled refund; otherwise the same
    share for each, ``paid * slash // owed``, rounded down, so the refunds
    never exceed the slash. Never more than is left in the pot.
    """
    if paid_micro_block <= 0:
        raise ValueError("a refund is positive")
    owed, slash = revocation.owed_micro_block, revocation.slash_micro_block
    due = paid_micro_block if owed <= slash else paid_micro_block * slash // owed
    return min(due, revocation.pot_micro_block)


def refunded(
    revocation: Revocation, settled: int, escrowed: int, credits: int, wh: int, cursor: str | None
) -> Revocation:
    """The revocation after one more page; the last page has no next ``cursor``."""
    return replace(
        revocation,
        refunded_micro_block=revocation.refunded_micro_block + settled,
        escrow_refunded_micro_block=revocation.escrow_refunded_micro_block + escrowed,
        revoked_credits=revocation.revoked_credits + credits,
        revoked_wh=revocation.revoked_wh + wh,
        cursor=cursor,
        swept=cursor is None,
    )


def closing_transfers(
    dispute: Dispute, rules: DisputeRules = DEFAULT_RULES
) -> tuple[Transfer, ...]:
    """The last write of a guilty dispute: the pot paid out and the bonds returned.

    Bonded flaggers share ``flagger_reward_bps`` (default 10 %) of what is
    left in the pot after the refunds, in proportion to their bonds, rounded
    down; detectors earn nothing; the rest, rounding included, goes to the
    treasury. Each bond returns to its flagger.
    """
    revocation = dispute.revocation
    if dispute.status != DisputeStatus.REVOKING or revocation is None:
        raise DisputeClosed(
            "only a guilty dispute being revoked closes", status=dispute.status.value
        )
    pot = Pocket(PocketKind.POT, dispute.dispute_id)
    left = revocation.pot_micro_block
    transfers: list[Transfer] = []

    def move(source: Pocket, destination: Pocket, amount: int, why: TransferReason) -> None:
        if amount > 0:
            transfers.append(Transfer(source, destination, amount, why))

    bonded = _bonded(dispute)
    reward = left * rules.flagger_reward_bps // BPS
    total_bond = sum(f.bond_micro_block for f in bonded)
    for f in bonded:
        share = reward * f.bond_micro_block // total_bond
        move(pot, Pocket(PocketKind.BALANCE, f.by), share, TransferReason.FLAGGER_REWARD)
    move(
        pot,
        Pocket(PocketKind.TREASURY, TREASURY),
        left - sum(t.micro_block for t in transfers),
        TransferReason.SLASH_TO_TREASURY,
    )
    for f in bonded:
        move(
            bond_pocket(dispute.dispute_id, f.by),
            Pocket(PocketKind.BALANCE, f.by),
            f.bond_micro_block,
            TransferReason.BOND_RETURNED,
        )
    return tuple(transfers)


def cleared_transfers(dispute: Dispute) -> tuple[Transfer, ...]:
    """Cleared: each bond goes to the provider's owner's balance (it bore the freeze)."""
    owner = Pocket(PocketKind.BALANCE, dispute.provider_owner)
    return tuple(
        Transfer(
            bond_pocket(dispute.dispute_id, f.by),
            owner,
            f.bond_micro_block,
            TransferReason.BOND_TO_PROVIDER,
        )
        for f in _bonded(dispute)
    )


def closed(
    dispute: Dispute,
    receipt_sequence: int,
    receipt_hash: str,
    paid_out: Sequence[Transfer] = (),
) -> Dispute:
    """The guilty dispute once every consequence is applied (``paid_out``: the
    closing transfers) and its slash receipt written."""
    if dispute.status != DisputeStatus.REVOKING or dispute.revocation is None:
        raise DisputeClosed(
            "only a guilty dispute being revoked closes", status=dispute.status.value
        )
    if not dispute.revocation.swept:
        raise InvalidState("a dispute closes once every affected credit is revoked")
    return replace(
        dispute,
        status=DisputeStatus.GUILTY,
        revocation=replace(
            dispute.revocation,
            flagger_reward_micro_block=sum(
                t.micro_block for t in paid_out if t.reason == TransferReason.FLAGGER_REWARD
            ),
            treasury_micro_block=sum(
                t.micro_block for t in paid_out if t.reason == TransferReason.SLASH_TO_TREASURY
            ),
            receipt_sequence=receipt_sequence,
            receipt_hash=receipt_hash,
        ),
        version=dispute.version + 1,
    )


def _bonded(dispute: Dispute) -> list[Flag]:
    return [f for f in dispute.flags if f.flagger is not None and f.bond_micro_block > 0]


@dataclass(frozen=True)
class Consequences:
    """Everything a resolution changes, summed over all its writes."""

    transfers: tuple[Transfer, ...]
    slash_micro_block: int  # taken from the stake (0 when cleared)
    stake_after_micro_block: int
    suspended: bool  # the provider is left below the minimum stake
    revoke_credit_ids: tuple[str, ...]  # guilty: the affected credits leave for good
    unfreeze_credit_ids: tuple[str, ...]  # cleared: they return to where they were
    unrefunded_micro_block: int  # settled refunds the slash could not cover


def bond_pocket(dispute_id: str, flagger: str) -> Pocket:
    return Pocket(PocketKind.BOND, f"{dispute_id}/{flagger}")


def consequences(
    dispute: Dispute,
    outcome: Outcome,
    *,
    stake_micro_block: int,
    credit_ids: Sequence[str],
    escrowed: Sequence[Refund] = (),
    settled: Sequence[Refund] = (),
    rules: DisputeRules = DEFAULT_RULES,
) -> Consequences:
    """What the outcome moves in all, as if every page were one write; every
    micro-BLOCK leaves one pocket and enters another.

    Cleared: the bonds go to the provider's owner; the credits unfreeze.
    Guilty: the stake loses exactly ``slash_amount(stake, severity)``, spent
    in this order: buyers of settled credits are refunded what they paid
    (``settled_refund``: pro rata if the slash is short), bonded flaggers share
    their reward, the treasury takes the rest (``closing_transfers``). Buyers
    of reserved credits get their escrow back in full; bonds return.
    """
    if dispute.dispute_id != outcome.dispute_id:
        raise ValueError("the outcome is another dispute's")
    if stake_micro_block < 0 or any(r.micro_block <= 0 for r in (*escrowed, *settled)):
        raise ValueError("a stake is not negative and a refund is positive")
    owed = sum(r.micro_block for r in settled)
    decided = resolved(dispute, outcome, stake_micro_block, owed, rules)
    revocation = decided.revocation
    if revocation is None:
        return Consequences(
            transfers=cleared_transfers(decided),
            slash_micro_block=0,
            stake_after_micro_block=stake_micro_block,
            suspended=suspends(stake_micro_block),
            revoke_credit_ids=(),
            unfreeze_credit_ids=tuple(credit_ids),
            unrefunded_micro_block=0,
        )
    pot = Pocket(PocketKind.POT, dispute.dispute_id)
    transfers = (
        [
            Transfer(
                Pocket(PocketKind.STAKE, dispute.provider_id),
                pot,
                revocation.slash_micro_block,
                TransferReason.SLASH,
            )
        ]
        if revocation.slash_micro_block
        else []
    )
    for r in settled:
        paid = settled_refund(r.micro_block, revocation)
        if paid:
            transfers.append(
                Transfer(
                    pot, Pocket(PocketKind.BALANCE, r.buyer), paid, TransferReason.SLASH_REFUND
                )
            )
        revocation = refunded(revocation, paid, 0, 0, 0, None)
    for r in escrowed:
        transfers.append(
            Transfer(
                Pocket(PocketKind.ESCROW, r.purchase_id),
                Pocket(PocketKind.BALANCE, r.buyer),
                r.micro_block,
                TransferReason.ESCROW_REFUND,
            )
        )
    transfers.extend(closing_transfers(replace(decided, revocation=revocation), rules))
    return Consequences(
        transfers=tuple(transfers),
        slash_micro_block=revocation.slash_micro_block,
        stake_after_micro_block=revocation.stake_after_micro_block,
        suspended=suspends(revocation.stake_after_micro_block),
        revoke_credit_ids=tuple(credit_ids),
        unfreeze_credit_ids=(),
        unrefunded_micro_block=revocation.unrefunded_micro_block,
    )


def net_changes(transfers: Iterable[Transfer]) -> dict[Pocket, int]:
    """Each pocket's change; the values sum to zero (BLOCK is conserved)."""
    changes: dict[Pocket, int] = {}
    for t in transfers:
        changes[t.source] = changes.get(t.source, 0) - t.micro_block
        changes[t.destination] = changes.get(t.destination, 0) + t.micro_block
    # A pocket passed through (a pot paid out in full) did not change.
    return {pocket: change for pocket, change in changes.items() if change}
