"""What the demo's disputes came to: opened, voted, decided, slashed; for the status file and the log.

The tally reads the marketplace's own records (``energy.getDisputes`` by
status, newest first), never the validators' word, so what it shows is what
an operator would find with ``python -m energy_client disputes``. It knows
which meters cheat, so it can say whether a flag hit a cheater or an honest
meter; each change it sees (a dispute opened, decided, its slash receipt
written) is logged once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from iot.demo.validators import PublicApi, detectors_of

logger = logging.getLogger("iot.demo")

STATUSES: Final = ("open", "revoking", "guilty", "cleared")
MAX_PAGES: Final = 10
LATEST: Final = 8
BLOCK: Final = 1_000_000


@dataclass(frozen=True)
class DisputeSummary:
    """One dispute, as the status file shows it."""

    dispute_id: str
    status: str
    meter_address: str
    provider_id: str
    owner: str
    detectors: tuple[str, ...]
    opened_at_ms: int
    guilty_votes: int
    cleared_votes: int
    severity: str | None
    slash_micro_block: int
    stake_after_micro_block: int | None
    slash_receipt: str | None  # "<chain>#<sequence>"

    @classmethod
    def of(cls, dispute: Mapping[str, Any]) -> DisputeSummary:
        subject = dispute.get("subject") or {}
        votes = Counter(str(v["verdict"]) for v in dispute.get("votes", []))
        revocation = dispute.get("revocation") or {}
        receipt = revocation.get("slash_receipt")
        return cls(
            dispute_id=str(dispute["dispute_id"]),
            status=str(dispute["status"]),
            meter_address=str(subject.get("meter_address") or ""),
            provider_id=str(dispute["provider_id"]),
            owner=str(dispute.get("provider_owner", "")),
            detectors=tuple(detectors_of(dispute)) or ("by hand",),
            opened_at_ms=int(dispute["opened_at_ms"]),
            guilty_votes=votes["guilty"],
            cleared_votes=votes["cleared"],
            severity=dispute.get("severity"),
            slash_micro_block=int(revocation.get("slash_micro_block", 0)),
            stake_after_micro_block=(
                int(revocation["stake_after_micro_block"]) if revocation else None
            ),
            slash_receipt=f"{receipt['chain']}#{receipt['sequence']}" if receipt else None,
        )

    def as_status(self) -> dict[str, Any]:
        return {
            "dispute_id": self.dispute_id,
            "status": self.status,
            "meter": self.meter_address,
            "owner": self.owner,
            "detectors": list(self.detectors),
            "votes": {"guilty": self.guilty_votes, "cleared": self.cleared_votes},
            "severity": self.severity,
            "slash_micro_block": self.slash_micro_block,
            "slash_receipt": self.slash_receipt,
        }


class DisputeTally:
    """Every dispute the marketplace holds, refreshed from its records; changes logged once."""

    def __init__(self, api: PublicApi, cheaters: Mapping[str, str]) -> None:
        self.api = api
        self.cheaters = dict(cheaters)  # meter address -> strategy
        self.disputes: dict[str, DisputeSummary] = {}
        self.errors = 0

    def refresh(self) -> None:
        """Read every status's disputes (newest first, up to ``MAX_PAGES`` pages each)."""
        for status in STATUSES:
            cursor: str | None = None
            for _ in range(MAX_PAGES):
                params: dict[str, Any] = {"status": status, "limit": 100}
                if cursor:
                    params["cursor"] = cursor
                page = self.api.call("energy.getDisputes", params)
                self.update(page["disputes"])
                cursor = page.get("next_cursor")
                if not cursor:
                    break

    def update(self, disputes: Iterable[Mapping[str, Any]]) -> None:
        for dispute in disputes:
            summary = DisputeSummary.of(dispute)
            before = self.disputes.get(summary.dispute_id)
            self.disputes[summary.dispute_id] = summary
            self._log_change(before, summary)

    def honest(self, summary: DisputeSummary) -> bool:
        return summary.meter_address not in self.cheaters

    def _log_change(self, before: DisputeSummary | None, now: DisputeSummary) -> None:
        whose = (
            f"cheater, {self.cheaters[now.meter_address]}"
            if not self.honest(now)
            else "an HONEST meter"
        )
        if before is None:
            log = logger.warning if self.honest(now) else logger.info
            log(
                "dispute %s opened at %s: meter %s (%s) flagged by %s",
                now.dispute_id,
                datetime.fromtimestamp(now.opened_at_ms / 1000, UTC).strftime("%H:%M:%S UTC"),
                now.meter_address or now.provider_id,
                whose,
                ", ".join(now.detectors),
            )
        if now.status == "cleared" and (before is None or before.status != "cleared"):
            logger.info(
                "dispute %s cleared (%d cleared, %d guilty votes): meter %s keeps its stake",
                now.dispute_id,
                now.cleared_votes,
                now.guilty_votes,
                now.meter_address,
            )
        if now.slash_micro_block and (before is None or not before.slash_micro_block):
            logger.info(
                "dispute %s guilty (%s, %d guilty votes): %s slashed %s BLOCK, stake now %s BLOCK",
                now.dispute_id,
                now.severity,
                now.guilty_votes,
                now.owner,
                _block(now.slash_micro_block),
                _block(now.stake_after_micro_block or 0),
            )
        if now.slash_receipt and (before is None or not before.slash_receipt):
            logger.info(
                "dispute %s closed: credits revoked, slash receipt %s written",
                now.dispute_id,
                now.slash_receipt,
            )

    def status(self) -> dict[str, Any]:
        summaries = sorted(self.disputes.values(), key=lambda s: s.opened_at_ms)
        by_status = Counter(s.status for s in summaries)
        return {
            "opened": len(summaries),
            **{status: by_status[status] for status in STATUSES},
            "by_detector": dict(Counter(d for s in summaries for d in s.detectors)),
            "against_cheaters": sum(1 for s in summaries if not self.honest(s)),
            "against_honest": sum(1 for s in summaries if self.honest(s)),
            "votes": {
                "guilty": sum(s.guilty_votes for s in summaries),
                "cleared": sum(s.cleared_votes for s in summaries),
            },
            "slashed_micro_block": sum(s.slash_micro_block for s in summaries),
            "slash_receipts": sum(1 for s in summaries if s.slash_receipt),
            "latest": [s.as_status() for s in summaries[-LATEST:]],
            "errors": self.errors,
        }


def _block(micro_block: int) -> str:
    whole, fraction = divmod(micro_block, BLOCK)
    return f"{whole:,}" + (f".{fraction:06d}".rstrip("0") if fraction else "")
