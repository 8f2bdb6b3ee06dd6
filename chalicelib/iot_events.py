"""The IoT topic rule's event -> the ingest use case -> a small result.

The rule (infra/template.yaml) sends
``{"payload": <base64 of the MQTT payload>, "topic_meter_address": <topic(3)>,
"client_id": <clientid()>, "received_at_ms": <timestamp()>}``; the offline
rules bridge builds the same event. A reading that breaks a rule is a
*result* (recorded, counted); only an event that is not of this shape, or a
failure of storage, raises, so that the rule's error action sends the
message to the dead-letter queue.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from chalicelib.services import ingest
from chalicelib.services.dependencies import Dependencies


class MalformedEvent(ValueError):
    """The event is not what the topic rule sends: a wiring fault, not a bad reading."""


def handle_reading_event(deps: Dependencies, event: Any) -> dict[str, Any]:
    try:
        payload = base64.b64decode(event["payload"], validate=True)
        topic_meter_address = str(event["topic_meter_address"])
        received_at_ms = int(event["received_at_ms"])
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise MalformedEvent(f"not a reading event: {exc}") from exc
    outcome = ingest.record_payload(
        deps, payload, topic_meter_address=topic_meter_address, received_at_ms=received_at_ms
    )
    result: dict[str, Any] = {
        "status": str(outcome.status),
        "meter_address": outcome.meter_address,
        "reading_hash": outcome.reading_hash,
    }
    if outcome.reason is not None:
        result |= {"reason": str(outcome.reason), "detail": outcome.detail}
    if outcome.credit is not None:
        result |= {"credit_id": outcome.credit.credit_id, "wh": outcome.credit.wh}
    return result
