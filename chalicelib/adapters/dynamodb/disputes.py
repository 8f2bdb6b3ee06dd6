"""Disputes (their flags, panel and votes) and the registry of validators."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from chalicelib.adapters.due_work import items_due
from chalicelib.adapters.dynamodb.codec import Item, as_int, from_item, to_item
from chalicelib.adapters.dynamodb.layout import (
    DISPUTES_BY_MEMBER,
    DISPUTES_BY_PROVIDER,
    DISPUTES_BY_STATUS,
    HOUR_MS,
    OPEN_DISPUTES_BY_SLOT,
    VALIDATORS_PK,
    Tables,
    deadline_key,
    deadline_slot,
    decode_opened_cursor,
    dispute_key,
    due_by,
    member_key,
    member_of,
    opened_key,
    validator_key,
)
from chalicelib.adapters.dynamodb.paging import IndexRange, get_all, newest_first, query_all
from chalicelib.domain.disputes import (
    DecidedBy,
    Dispute,
    DisputeRole,
    DisputeStatus,
    Flag,
    Revocation,
    Severity,
    Subject,
    SubjectKind,
    Validator,
    Verdict,
    Vote,
)
from chalicelib.domain.errors import AlreadyExists, ConcurrentUpdate
from chalicelib.services.ports import DueHandler, JobRun, Page

if TYPE_CHECKING:
    from chalicelib.adapters.due_work import Watermarks
    from chalicelib.adapters.dynamodb.unit_of_work import Staged


def dispute_to_item(dispute: Dispute) -> Item:
    subject = dispute.subject
    values: dict[str, Any] = from_item(dispute_key(dispute.dispute_id)) | {
        "dispute_id": dispute.dispute_id,
        "subject_kind": str(subject.kind),
        "reading_hash": subject.reading_hash,
        "meter_address": subject.meter_address,
        "window_start_ms": subject.window_start_ms,
        "window_end_ms": subject.window_end_ms,
        "round_number": dispute.round_number,
        "provider_id": dispute.provider_id,  # DisputesByProvider
        "provider_owner": dispute.provider_owner,
        "flags": [_flag_to_map(f) for f in dispute.flags],
        "parties": sorted(dispute.parties),
        "opened_at_ms": dispute.opened_at_ms,
        "opened_key": opened_key(dispute.opened_at_ms, dispute.dispute_id),
        "deadline_ms": dispute.deadline_ms,
        "panel": list(dispute.panel),
        "quorum": dispute.quorum,
        "votes": [_vote_to_map(v) for v in dispute.votes],
        "status": str(dispute.status),  # DisputesByStatus
        "reading_end_ms": dispute.reading_end_ms,
        "severity": str(dispute.severity) if dispute.severity is not None else None,
        "resolved_at_ms": dispute.resolved_at_ms,
        "decided_by": str(dispute.decided_by) if dispute.decided_by is not None else None,
        "non_voters": list(dispute.non_voters),
        "revocation": _revocation_to_map(dispute.revocation),
        "version": dispute.version,
    }
    due_at = due_at_ms(dispute)
    if due_at is not None:
        # OpenDisputesBySlot (sparse): the dispute job reads the hours due.
        values["deadline_slot"] = deadline_slot(due_at)
        values["deadline_key"] = deadline_key(due_at, dispute.dispute_id)
    return to_item(values)


def due_at_ms(dispute: Dispute) -> int | None:
    """When the dispute job next has work on it: an open dispute at its deadline,
    a guilty one still revoking at once (from its verdict); else never."""
    if dispute.status == DisputeStatus.OPEN:
        return dispute.deadline_ms
    if dispute.status == DisputeStatus.REVOKING:
        return dispute.resolved_at_ms
    return None


def _revocation_to_map(revocation: Revocation | None) -> dict[str, Any] | None:
    if revocation is None:
        return None
    values = asdict(revocation)
    return {k: v for k, v in values.items() if v is not None}


def _revocation_from_map(values: dict[str, Any] | None) -> Revocation | None:
    if values is None:
        return None
    return Revocation(
        slash_micro_block=as_int(values["slash_micro_block"]),
        owed_micro_block=as_int(values["owed_micro_block"]),
        stake_after_micro_block=as_int(values["stake_after_micro_block"]),
        refunded_micro_block=as_int(values["refunded_micro_block"]),
        escrow_refunded_micro_block=as_int(values["escrow_refunded_micro_block"]),
        revoked_credits=as_int(values["revoked_credits"]),
        revoked_wh=as_int(values["revoked_wh"]),
        cursor=values.get("cursor"),
        swept=bool(values.get("swept", False)),
        flagger_reward_micro_block=as_int(values.get("flagger_reward_micro_block", Decimal(0))),
        treasury_micro_block=as_int(values.get("treasury_micro_block", Decimal(0))),
        receipt_sequence=(
            as_int(values["receipt_sequence"]) if "receipt_sequence" in values else None
        ),
        receipt_hash=values.get("receipt_hash"),
    )


def _flag_to_map(flag: Flag) -> dict[str, Any]:
    values = {
        "reason": flag.reason,
        "evidence": list(flag.evidence),
        "flagged_at_ms": flag.flagged_at_ms,
        "flagger": flag.flagger,
        "detector": flag.detector,
        "bond_micro_block": flag.bond_micro_block,
    }
    return {k: v for k, v in values.items() if v is not None}


def _vote_to_map(vote: Vote) -> dict[str, Any]:
    values = {
        "validator": vote.validator,
        "verdict": str(vote.verdict),
        "severity": str(vote.severity) if vote.severity is not None else None,
        "voted_at_ms": vote.voted_at_ms,
    }
    return {k: v for k, v in values.items() if v is not None}


def dispute_from_item(item: Item) -> Dispute:
    v = from_item(item)
    return Dispute(
        dispute_id=v["dispute_id"],
        subject=Subject(
            kind=SubjectKind(v["subject_kind"]),
            reading_hash=v.get("reading_hash"),
            meter_address=v.get("meter_address"),
            window_start_ms=as_int(v["window_start_ms"]) if "window_start_ms" in v else None,
            window_end_ms=as_int(v["window_end_ms"]) if "window_end_ms" in v else None,
        ),
        round_number=as_int(v["round_number"]),
        provider_id=v["provider_id"],
        provider_owner=v["provider_owner"],
        flags=tuple(
            Flag(
                reason=f["reason"],
                evidence=tuple(f["evidence"]),
                flagged_at_ms=as_int(f["flagged_at_ms"]),
                flagger=f.get("flagger"),
                detector=f.get("detector"),
                bond_micro_block=as_int(f["bond_micro_block"]),
            )
            for f in v["flags"]
        ),
        parties=frozenset(v["parties"]),
        opened_at_ms=as_int(v["opened_at_ms"]),
        deadline_ms=as_int(v["deadline_ms"]),
        panel=tuple(v["panel"]),
        quorum=as_int(v["quorum"]),
        votes=tuple(
            Vote(
                validator=o["validator"],
                verdict=Verdict(o["verdict"]),
                severity=Severity(o["severity"]) if "severity" in o else None,
                voted_at_ms=as_int(o["voted_at_ms"]),
            )
            for o in v["votes"]
        ),
        status=DisputeStatus(v["status"]),
        reading_end_ms=as_int(v["reading_end_ms"]) if "reading_end_ms" in v else None,
        severity=Severity(v["severity"]) if "severity" in v else None,
        resolved_at_ms=as_int(v["resolved_at_ms"]) if "resolved_at_ms" in v else None,
        decided_by=DecidedBy(v["decided_by"]) if "decided_by" in v else None,
        non_voters=tuple(v.get("non_voters", [])),
        revocation=_revocation_from_map(v.get("revocation")),
        version=as_int(v["version"]),
    )


def validator_from_item(item: Item) -> Validator:
    v = from_item(item)
    return Validator(
        name=v["name"],
        stake_micro_block=as_int(v.get("stake_micro_block", Decimal(0))),
        active=bool(v.get("active", True)),
        open_panels=as_int(v.get("open_panels", Decimal(0))),
    )


def _opened_key_of(dispute: Dispute) -> str:
    return opened_key(dispute.opened_at_ms, dispute.dispute_id)


class DynamoDisputes:
    def __init__(self, client: Any, tables: Tables, staged: Staged, watermarks: Watermarks) -> None:
        self._client, self._tables, self._staged = client, tables, staged
        self._watermarks = watermarks

    def get(self, dispute_id: str) -> Dispute | None:
        found = self._client.get_item(
            TableName=self._tables.disputes,
            Key=dispute_key(dispute_id),
            ConsistentRead=True,  # decides whether a flag opens or joins
            ReturnConsumedCapacity="TOTAL",
        )
        return dispute_from_item(found["Item"]) if "Item" in found else None

    def open(self, dispute: Dispute) -> None:
        self._staged.put(
            self._tables.disputes,
            dispute_to_item(dispute),
            "attribute_not_exists(pk)",
            lambda: ConcurrentUpdate(
                "another flag opened this dispute; retry", dispute_id=dispute.dispute_id
            ),
        )
        for flagger in (f.flagger for f in dispute.flags if f.flagger is not None):
            self._list_member(dispute, DisputeRole.FLAGGER, flagger)
        for validator in dispute.panel:
            self._list_member(dispute, DisputeRole.PANEL, validator)

    def join(self, joined: Dispute, expected_version: int, flagger: str | None) -> None:
        self.save(joined, expected_version)
        if flagger is not None:
            self._list_member(joined, DisputeRole.FLAGGER, flagger)

    def _list_member(self, dispute: Dispute, role: DisputeRole, name: str) -> None:
        item = member_key(dispute.dispute_id, role, name) | to_item(
            {
                "member": member_of(role, name),  # DisputesByMember
                "opened_key": _opened_key_of(dispute),
                "dispute_id": dispute.dispute_id,
            }
        )
        self._staged.put(
            self._tables.disputes,
            item,
            "attribute_not_exists(pk)",
            lambda: AlreadyExists("already listed for this dispute", account=name),
        )

    def by_member(
        self, role: DisputeRole, name: str, limit: int, cursor: str | None
    ) -> Page[Dispute]:
        where = IndexRange(
            self._tables.disputes,
            DISPUTES_BY_MEMBER,
            "member",
            member_of(role, name),
            "opened_key",
        )
        before = decode_opened_cursor(cursor) if cursor else None
        keys = newest_first(
            self._client,
            where,
            before,
            limit,
            lambda item: (item["opened_key"]["S"], item["pk"]["S"].removeprefix("DISPUTE#")),
            lambda pair: pair[0],
        )
        found = {
            d.dispute_id: d
            for d in map(
                dispute_from_item,
                get_all(
                    self._client,
                    self._tables.disputes,
                    [dispute_key(dispute_id) for _, dispute_id in keys.items],
                    consistent=False,
                ),
            )
        }
        return Page([found[d] for _, d in keys.items if d in found], keys.next_cursor)

    def save(self, changed: Dispute, expected_version: int) -> None:
        self._staged.put(
            self._tables.disputes,
            dispute_to_item(changed),
            "version = :version",
            lambda: ConcurrentUpdate("the dispute changed; retry", dispute_id=changed.dispute_id),
            ExpressionAttributeValues=to_item({":version": expected_version}),
        )

    def each_due(self, run: JobRun, now_ms: int, budget: int, handle: DueHandler[Dispute]) -> None:
        items_due(
            self._watermarks,
            self._due_in_hour,
            lambda d: d.dispute_id,
            run,
            now_ms,
            budget,
            handle,
        )

    def _due_in_hour(self, hour: int, now_ms: int, limit: int) -> Sequence[Dispute]:
        response = self._client.query(
            TableName=self._tables.disputes,
            IndexName=OPEN_DISPUTES_BY_SLOT,
            KeyConditionExpression="deadline_slot = :slot AND deadline_key <= :now",
            ExpressionAttributeValues=to_item(
                {":slot": deadline_slot(hour * HOUR_MS), ":now": due_by(now_ms)}
            ),
            Limit=limit,
            ReturnConsumedCapacity="TOTAL",
        )
        return [dispute_from_item(i) for i in response["Items"]]

    def by_provider(self, provider_id: str, limit: int, cursor: str | None) -> Page[Dispute]:
        where = IndexRange(
            self._tables.disputes, DISPUTES_BY_PROVIDER, "provider_id", provider_id, "opened_key"
        )
        return self._newest_first(where, limit, cursor)

    def by_status(self, status: DisputeStatus, limit: int, cursor: str | None) -> Page[Dispute]:
        where = IndexRange(
            self._tables.disputes, DISPUTES_BY_STATUS, "status", str(status), "opened_key"
        )
        return self._newest_first(where, limit, cursor)

    def count_with_status(self, status: DisputeStatus) -> int:
        # COUNT reads the index entries (their size is what it costs) but
        # returns none of them; open disputes are bounded by providers x 8.
        request: dict[str, Any] = {
            "TableName": self._tables.disputes,
            "IndexName": DISPUTES_BY_STATUS,
            "KeyConditionExpression": "#s = :s",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": to_item({":s": str(status)}),
            "Select": "COUNT",
        }
        count = 0
        while True:
            response = self._client.query(ReturnConsumedCapacity="TOTAL", **request)
            count += int(response["Count"])
            if "LastEvaluatedKey" not in response:
                return count
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _newest_first(self, where: IndexRange, limit: int, cursor: str | None) -> Page[Dispute]:
        before = decode_opened_cursor(cursor) if cursor else None
        return newest_first(self._client, where, before, limit, dispute_from_item, _opened_key_of)


class DynamoValidators:
    """One registry item per validator: the panel draw reads one partition, never a Scan.

    Validators are few (they are granted by the operator), so one partition
    holds them all; each item is written in the same commit as the role.
    """

    def __init__(self, client: Any, tables: Tables, staged: Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

    def all(self) -> list[Validator]:
        items = query_all(
            self._client,
            TableName=self._tables.registry,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=to_item({":pk": VALIDATORS_PK, ":prefix": "VALIDATOR#"}),
            ConsistentRead=True,
        )
        return [validator_from_item(item) for item in items]

    def get(self, name: str) -> Validator | None:
        found = self._client.get_item(
            TableName=self._tables.registry,
            Key=validator_key(name),
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        return validator_from_item(found["Item"]) if "Item" in found else None

    def add(self, name: str) -> None:
        self._set_active(name, True, None)

    def remove(self, name: str) -> None:
        # The record stays, inactive, while it holds stake to withdraw.
        self._set_active(name, False, "attribute_exists(pk)")

    def _set_active(self, name: str, active: bool, condition: str | None) -> None:
        self._staged.update(
            self._tables.registry,
            validator_key(name),
            "SET #name = :name, active = :active,"
            " stake_micro_block = if_not_exists(stake_micro_block, :zero),"
            " open_panels = if_not_exists(open_panels, :zero)",
            condition,
            lambda: ConcurrentUpdate("the validator registry changed; retry"),
            ExpressionAttributeNames={"#name": "name"},
            ExpressionAttributeValues=to_item({":name": name, ":active": active, ":zero": 0}),
        )

    def change_stake(self, validator: Validator, micro_block: int) -> None:
        self._staged.update(
            self._tables.registry,
            validator_key(validator.name),
            "ADD stake_micro_block :change",
            "stake_micro_block = :stake AND open_panels = :panels",
            lambda: ConcurrentUpdate("the validator changed; retry", account=validator.name),
            ExpressionAttributeValues=to_item(
                {
                    ":change": micro_block,
                    ":stake": validator.stake_micro_block,
                    ":panels": validator.open_panels,
                }
            ),
        )

    def seat(self, names: Sequence[str], panels: int) -> None:
        for name in names:
            self._staged.update(
                self._tables.registry,
                validator_key(name),
                "ADD open_panels :panels",
                "attribute_exists(pk)",
                lambda: ConcurrentUpdate("the validator registry changed; retry"),
                ExpressionAttributeValues=to_item({":panels": panels}),
            )
