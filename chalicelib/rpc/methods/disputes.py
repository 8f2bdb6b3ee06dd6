"""Dispute methods: flag a reading (with a bond), vote, resolve, look disputes up."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, StrictInt, StrictStr, model_validator

from chalicelib.domain import units
from chalicelib.domain.disputes import (
    MAX_EVIDENCE_CHARS,
    MAX_EVIDENCE_ITEMS,
    MAX_REASON_CHARS,
    DecidedBy,
    Dispute,
    DisputeStatus,
    Flag,
    Severity,
    Verdict,
)
from chalicelib.domain.errors import (
    AlreadyExists,
    AlreadyVoted,
    DisputeClosed,
    InsufficientBalance,
    InvalidFlag,
    InvalidState,
    NotFound,
    NotOnPanel,
    PanelUnavailable,
    PartyToDispute,
    TooManyDisputes,
    VotingClosed,
)
from chalicelib.domain.receipts import slash_chain
from chalicelib.rpc.methods.common import AUTH_ERRORS, registry, signed_call
from chalicelib.rpc.methods.fields import (
    AccountName,
    Cursor,
    MeterAddress,
    PageLimit,
    Params,
    ProviderId,
    Result,
    SignedParams,
)
from chalicelib.rpc.methods.settlement import SignedHeadResult
from chalicelib.rpc.registry import CallContext
from chalicelib.services import disputes, resolution

Hash64 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
DisputeId = Annotated[StrictStr, Field(pattern=r"^dsp-[0-9a-f]{32}$")]


class FlagParams(SignedParams):
    credit_id: Hash64 | None = Field(default=None, description="A credit: its reading is flagged")
    reading_hash: Hash64 | None = Field(default=None, description="A reading, by its hash")
    meter_address: MeterAddress | None = Field(
        default=None, description="A meter: every reading in [window_start_ms, window_end_ms)"
    )
    window_start_ms: Annotated[StrictInt, Field(ge=0)] | None = None
    window_end_ms: Annotated[StrictInt, Field(ge=0)] | None = None
    reason: Annotated[StrictStr, Field(min_length=1, max_length=MAX_REASON_CHARS)]
    evidence: Annotated[
        list[Annotated[StrictStr, Field(min_length=1, max_length=MAX_EVIDENCE_CHARS)]],
        Field(max_length=MAX_EVIDENCE_ITEMS),
    ] = Field(default_factory=list, description="Notes or URLs")

    @model_validator(mode="after")
    def _one_subject(self) -> FlagParams:
        named = [self.credit_id, self.reading_hash, self.meter_address]
        if sum(1 for part in named if part is not None) != 1:
            raise ValueError("give exactly one of credit_id, reading_hash and meter_address")
        windowed = (self.window_start_ms, self.window_end_ms)
        if (self.meter_address is None) != (windowed == (None, None)):
            raise ValueError("a meter_address comes with window_start_ms and window_end_ms")
        return self


class DisputeRef(Params):
    dispute_id: DisputeId


class DisputesParams(Params):
    provider_id: ProviderId | None = Field(
        default=None, description="Disputes against this provider, any status"
    )
    status: DisputeStatus | None = Field(
        default=None, description="Disputes with this status (default: open)"
    )
    flagger: AccountName | None = Field(
        default=None, description="Disputes this account flagged, any status"
    )
    validator: AccountName | None = Field(
        default=None, description="Disputes this validator was drawn to judge, any status"
    )
    limit: PageLimit = 50
    cursor: Cursor | None = None

    @model_validator(mode="after")
    def _one_filter(self) -> DisputesParams:
        filters = (self.provider_id, self.status, self.flagger, self.validator)
        if sum(1 for f in filters if f is not None) > 1:
            raise ValueError("give at most one of provider_id, status, flagger and validator")
        return self


class SubjectResult(Result):
    kind: str = Field(description="reading or meter_window")
    reading_hash: str | None
    meter_address: str | None
    window_start_ms: int | None
    window_end_ms: int | None


class FlagResult(Result):
    flagged_by: str = Field(description="The account, or detector:<name>")
    reason: str
    evidence: list[str]
    flagged_at_ms: int
    bond_micro_block: int

    @classmethod
    def of(cls, flag: Flag) -> FlagResult:
        return cls(
            flagged_by=flag.by,
            reason=flag.reason,
            evidence=list(flag.evidence),
            flagged_at_ms=flag.flagged_at_ms,
            bond_micro_block=flag.bond_micro_block,
        )


class VoteResult(Result):
    validator: str
    verdict: Verdict
    severity: Severity | None = Field(description="Set for a guilty vote")
    voted_at_ms: int


class SlashReceiptRef(Result):
    chain: str = Field(description="<provider_id>/slashes")
    sequence: int
    receipt_hash: str


class RevocationResult(Result):
    """A guilty verdict's money and credits, as far as its revocation has got."""

    slash: Decimal = Field(description="BLOCK taken from the provider's stake")
    slash_micro_block: int
    stake_after_micro_block: int
    refunded_micro_block: int = Field(
        description="Paid from the slash to buyers of settled credits"
    )
    unrefunded_micro_block: int = Field(description="What those buyers were owed beyond the slash")
    escrow_refunded_micro_block: int = Field(description="Escrow returned for reserved credits")
    flagger_reward_micro_block: int = Field(description="Paid to bonded flaggers, once closed")
    treasury_micro_block: int = Field(description="The rest of the slash, once closed")
    revoked_credits: int
    revoked_wh: int
    complete: bool = Field(description="Every affected credit is revoked")
    slash_receipt: SlashReceiptRef | None = Field(description="Once the dispute has closed")


class DisputeResult(Result):
    dispute_id: str
    status: DisputeStatus
    subject: SubjectResult
    round: int = Field(description="1, or more when the subject was disputed and resolved before")
    provider_id: str
    provider_owner: str
    flags: list[FlagResult] = Field(description="The first opened the dispute; later ones joined")
    bond: Decimal = Field(description="BLOCK: every flag's bond, held until resolution")
    bond_micro_block: int
    panel: list[str] = Field(description="Validators drawn to judge it, in draw order")
    quorum: int = Field(description="Agreeing votes that decide")
    opened_at_ms: int
    deadline_ms: int = Field(description="Votes are taken strictly before it")
    votes: list[VoteResult]
    severity: Severity | None = Field(description="The verdict's severity, once guilty")
    decided_by: DecidedBy | None = Field(description="quorum or deadline, once resolved")
    resolved_at_ms: int | None
    non_voters: list[str] = Field(description="Drawn validators who never voted (at resolution)")
    revocation: RevocationResult | None = Field(description="Once guilty")

    @classmethod
    def of(cls, dispute: Dispute) -> DisputeResult:
        subject = dispute.subject
        revocation = dispute.revocation
        return cls(
            dispute_id=dispute.dispute_id,
            status=dispute.status,
            subject=SubjectResult(
                kind=str(subject.kind),
                reading_hash=subject.reading_hash,
                meter_address=subject.meter_address,
                window_start_ms=subject.window_start_ms,
                window_end_ms=subject.window_end_ms,
            ),
            round=dispute.round_number,
            provider_id=dispute.provider_id,
            provider_owner=dispute.provider_owner,
            flags=[FlagResult.of(f) for f in dispute.flags],
            bond=units.block_from_micro(dispute.bond_micro_block),
            bond_micro_block=dispute.bond_micro_block,
            panel=list(dispute.panel),
            quorum=dispute.quorum,
            opened_at_ms=dispute.opened_at_ms,
            deadline_ms=dispute.deadline_ms,
            votes=[
                VoteResult(
                    validator=v.validator,
                    verdict=v.verdict,
                    severity=v.severity,
                    voted_at_ms=v.voted_at_ms,
                )
                for v in dispute.votes
            ],
            severity=dispute.severity,
            decided_by=dispute.decided_by,
            resolved_at_ms=dispute.resolved_at_ms,
            non_voters=list(dispute.non_voters),
            revocation=None
            if revocation is None
            else RevocationResult(
                slash=units.block_from_micro(revocation.slash_micro_block),
                slash_micro_block=revocation.slash_micro_block,
                stake_after_micro_block=revocation.stake_after_micro_block,
                refunded_micro_block=revocation.refunded_micro_block,
                unrefunded_micro_block=revocation.unrefunded_micro_block,
                escrow_refunded_micro_block=revocation.escrow_refunded_micro_block,
                flagger_reward_micro_block=revocation.flagger_reward_micro_block,
                treasury_micro_block=revocation.treasury_micro_block,
                revoked_credits=revocation.revoked_credits,
                revoked_wh=revocation.revoked_wh,
                complete=dispute.status == DisputeStatus.GUILTY,
                slash_receipt=None
                if revocation.receipt_sequence is None or revocation.receipt_hash is None
                else SlashReceiptRef(
                    chain=slash_chain(dispute.provider_id),
                    sequence=revocation.receipt_sequence,
                    receipt_hash=revocation.receipt_hash,
                ),
            ),
        )


class DisputesResult(Result):
    disputes: list[DisputeResult]
    next_cursor: str | None


@registry.method(
    "energy.flagDispute",
    summary="Flag a reading as suspect, posting a bond: opens a dispute or joins the open one",
    result=DisputeResult,
    signed=True,
    original_name="flagDispute",
    errors=(
        *AUTH_ERRORS,
        InvalidFlag,
        NotFound,
        AlreadyExists,
        InvalidState,
        PanelUnavailable,
        TooManyDisputes,
        InsufficientBalance,
    ),
)
def flag_dispute(context: CallContext, params: FlagParams) -> DisputeResult:
    """Signed by the flagger. The subject is a credit (its reading), a reading
    hash, or a meter over a window of at most 31 days. The first flag on a
    subject opens a dispute and draws its panel from the dispute id among the
    validators who are not a party; a later flag joins the open dispute. In
    the same atomic write the configured bond (default 10 BLOCK) moves from
    the flagger's balance to the dispute. Refused, changing nothing, when the
    subject does not exist, the balance is short, the flagger owns the
    provider, sits on the panel or has already flagged it, or too few
    validators can judge it. Opening a dispute freezes the affected credits:
    off sale, their purchases wait to settle, and held ones cannot be retired
    until it resolves."""
    dispute = disputes.flag_dispute(
        context.deps,
        signed_call(context, params),
        disputes.FlagRequest(
            reason=params.reason,
            evidence=tuple(params.evidence),
            credit_id=params.credit_id,
            reading_hash=params.reading_hash,
            meter_address=params.meter_address,
            window_start_ms=params.window_start_ms,
            window_end_ms=params.window_end_ms,
        ),
    )
    return DisputeResult.of(dispute)


@registry.method(
    "energy.getDispute",
    summary="One dispute: its subject, flags, bond and panel",
    result=DisputeResult,
    errors=(NotFound,),
)
def get_dispute(context: CallContext, params: DisputeRef) -> DisputeResult:
    return DisputeResult.of(disputes.get_dispute(context.deps, params.dispute_id))


@registry.method(
    "energy.getDisputes",
    summary="Disputes against a provider, by flagger, by validator or by status, newest first",
    result=DisputesResult,
    original_name="getDisputes",
)
def get_disputes(context: CallContext, params: DisputesParams) -> DisputesResult:
    """Give at most one filter: ``provider_id``, ``flagger`` or ``validator``
    (every status), or ``status`` (default ``open``). Newest first."""
    page = disputes.get_disputes(
        context.deps,
        provider_id=params.provider_id,
        status=params.status,
        limit=params.limit,
        cursor=params.cursor,
        flagger=params.flagger,
        validator=params.validator,
    )
    return DisputesResult(
        disputes=[DisputeResult.of(d) for d in page.items], next_cursor=page.next_cursor
    )


class VoteParams(SignedParams):
    dispute_id: DisputeId
    verdict: Verdict
    severity: Severity | None = Field(
        default=None, description="For a guilty vote: minor, major or critical"
    )

    @model_validator(mode="after")
    def _severity_fits(self) -> VoteParams:
        if (self.verdict == Verdict.GUILTY) != (self.severity is not None):
            raise ValueError("a guilty vote names a severity; a cleared vote names none")
        return self


@registry.method(
    "energy.voteOnDispute",
    summary="A panel member's vote: guilty with a severity, or cleared",
    result=DisputeResult,
    signed=True,
    errors=(
        *AUTH_ERRORS,
        NotFound,
        DisputeClosed,
        VotingClosed,
        PartyToDispute,
        NotOnPanel,
        AlreadyVoted,
    ),
)
def vote_on_dispute(context: CallContext, params: VoteParams) -> DisputeResult:
    """Signed by a validator drawn for the dispute's panel, before its
    deadline. A vote is final. The vote that gives a verdict its quorum
    resolves the dispute in the same call (the answer shows it resolved).
    Refused, changing nothing, for a party, a validator outside the panel, a
    second vote, or a dispute closed or past its deadline."""
    dispute = resolution.vote_on_dispute(
        context.deps,
        signed_call(context, params),
        resolution.VoteRequest(params.dispute_id, params.verdict, params.severity),
    )
    return DisputeResult.of(dispute)


@registry.method(
    "energy.resolveDispute",
    summary="Resolve a dispute that has a quorum or is past its deadline (anyone may ask)",
    result=DisputeResult,
    original_name="resolveDispute",
    errors=(NotFound,),
)
def resolve_dispute(context: CallContext, params: DisputeRef) -> DisputeResult:
    """Takes the dispute as far as it can go now and answers with it: an
    undecided dispute (no quorum, deadline ahead) is returned unchanged and
    open; a resolved one is returned unchanged (a dispute resolves once). A
    guilty dispute with many affected credits may answer ``revoking`` with
    its progress; the scheduled job (or another call) finishes it."""
    return DisputeResult.of(resolution.resolve_dispute(context.deps, params.dispute_id))


class SlashReceiptsParams(Params):
    provider_id: ProviderId
    limit: PageLimit = 50
    cursor: Cursor | None = None


class SlashReceiptsResult(Result):
    receipts: list[dict[str, Any]] = Field(
        description="Slash receipts exactly as signed, oldest first (docs/disputes.md)"
    )
    next_cursor: str | None
    head: SignedHeadResult | None = Field(description="The chain's newest receipt, signed now")


@registry.method(
    "energy.getSlashReceipts",
    summary="A provider's slash receipts, oldest first, with their chain's head",
    result=SlashReceiptsResult,
)
def get_slash_receipts(context: CallContext, params: SlashReceiptsParams) -> SlashReceiptsResult:
    """The chain ``<provider_id>/slashes``: each receipt as signed. Pages
    concatenated, with the head, are an export the receipt verifier checks
    (``python -m energy_client.receipts verify``), as for settlement receipts."""
    page, head = resolution.slash_receipts(
        context.deps, params.provider_id, params.limit, params.cursor
    )
    return SlashReceiptsResult(
        receipts=[r.to_json() for r in page.items],
        next_cursor=page.next_cursor,
        head=SignedHeadResult.signed(context, head),
    )
