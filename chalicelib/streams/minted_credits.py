"""Accepted readings' credits, from the registry table's stream, to restore.

An accepted reading is written in two steps: its provider's item, which
carries the credit, then the credit's own record (services/ingest.py). Every
change of a provider's item that accepted a reading is in the registry's
stream; this finds the credits in a batch of records, for
``restore_credits`` to write any whose own record was lost between the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from chalicelib.adapters.dynamodb.meters import credit_from_provider_image
from chalicelib.domain.credits import Credit


def credits_from_records(
    records: Iterable[Mapping[str, Any]], credit_lifetime_ms: int
) -> list[Credit]:
    """The credits minted by the changes in a batch of registry stream records."""
    credits = []
    for record in records:
        if record.get("eventName") not in ("INSERT", "MODIFY"):
            continue
        change = record.get("dynamodb") or {}
        new = change.get("NewImage") or {}
        if new.get("sk", {}).get("S") != "PROVIDER":
            continue
        credit = credit_from_provider_image(
            dict(new), dict(change.get("OldImage") or {}), credit_lifetime_ms
        )
        if credit is not None:
            credits.append(credit)
    return credits
