"""Disputes (their flags, panel and votes) and the registry of validators."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.adapters.dynamodb.codec import Item, as_int, from_item, to_item
from chalicelib.adapters.dynamodb.layout import (
    DISPUTES_BY_PROVIDER,
    DISPUTES_BY_STATUS,
    VALIDATORS_PK,
    Tables,
    deadline_key,
    deadline_slot,
    decode_opened_cursor,
    dispute_key,
    opened_key,
    validator_key,
)
from chalicelib.adapters.dynamodb.paging import IndexRange, newest_first, query_all
from chalicelib.domain.disputes import (
    Dispute,
    DisputeStatus,
    Flag,
    Severity,
    Subject,
    SubjectKind,
    Verdict,
    Vote,
)
from chalicelib.domain.errors import ConcurrentUpdate
from chalicelib.services.ports import Page

if TYPE_CHECKING:
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
        "severity": str(dispute.severity) if dispute.severity is not None else None,
        "resolved_at_ms": dispute.resolved_at_ms,
        "version": dispute.version,
    }
    if dispute.status == DisputeStatus.OPEN:
        # OpenDisputesBySlot (sparse): the deadline job will read the hours due.
        values["deadline_slot"] = deadline_slot(dispute.deadline_ms)
        values["deadline_key"] = deadline_key(dispute.deadline_ms, dispute.dispute_id)
    return to_item(values)


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
        severity=Severity(v["severity"]) if "severity" in v else None,
        resolved_at_ms=as_int(v["resolved_at_ms"]) if "resolved_at_ms" in v else None,
        version=as_int(v["version"]),
    )


def _opened_key_of(dispute: Dispute) -> str:
    return opened_key(dispute.opened_at_ms, dispute.dispute_id)


class DynamoDisputes:
    def __init__(self, client: Any, tables: Tables, staged: Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

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

    def join(self, joined: Dispute, expected_version: int) -> None:
        self._staged.put(
            self._tables.disputes,
            dispute_to_item(joined),
            "#status = :open AND version = :version",
            lambda: ConcurrentUpdate(
                "the dispute changed while it was flagged; retry", dispute_id=joined.dispute_id
            ),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item(
                {":open": str(DisputeStatus.OPEN), ":version": expected_version}
            ),
        )

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

    def names(self) -> list[str]:
        items = query_all(
            self._client,
            TableName=self._tables.registry,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=to_item({":pk": VALIDATORS_PK, ":prefix": "VALIDATOR#"}),
            ConsistentRead=True,
        )
        return [item["name"]["S"] for item in items]

    def add(self, name: str) -> None:
        self._staged.update(
            self._tables.registry,
            validator_key(name),
            "SET #name = :name",
            None,
            lambda: ConcurrentUpdate("the validator registry changed; retry"),
            ExpressionAttributeNames={"#name": "name"},
            ExpressionAttributeValues=to_item({":name": name}),
        )

    def remove(self, name: str) -> None:
        self._staged.delete(
            self._tables.registry,
            validator_key(name),
            None,
            lambda: ConcurrentUpdate("the validator registry changed; retry"),
        )
