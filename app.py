"""Energy Marketplace: the Lambda entry points. Handlers only translate.

Imports of chalicelib happen inside the handlers (chalicelib.observability
aside: the standard library only): importing this module is every function's
cold start, and the routes that need pydantic, boto3 and the method registry
pay for them on first use only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from chalice import Chalice, Rate, Response

# Standard library only (json, logging, contextvars): cheap enough for every cold start.
from chalicelib import observability

app = Chalice(app_name="energy-marketplace")
# The WebSocket API (live events, docs/events.md): Chalice still marks it experimental.
app.experimental_feature_flags.update({"WEBSOCKETS"})
# JSON log lines (the marketplace's at INFO and above) and embedded metrics on stdout.
observability.configure(app.log, os.environ.get("LOG_LEVEL", "INFO"))


@app.middleware("all")
def carry_request_id(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Every log line of an invocation names its Lambda request id."""
    # A route's event is the Request, with lambda_context (its .context is API
    # Gateway's requestContext); every other event carries the Lambda context.
    context = getattr(event, "lambda_context", None) or getattr(event, "context", None)
    with observability.invocation(context):
        return get_response(event)


JSON_CONTENT_TYPES = ["application/json", "application/json-rpc", "text/plain"]
# The ledger table's stream. In AWS the merge template points the event source
# at the table's StreamArn; offline, infra/stream_poller.py reads the stream
# of the table this names and calls the same handler.
LEDGER_STREAM_ARN = os.environ.get(
    "LEDGER_STREAM_ARN",
    "arn:aws:dynamodb:us-east-1:123456789012:table/energy-marketplace-ledger/stream/unset",
)
# The registry table's stream (meters' readings and refusals, for the detectors).
REGISTRY_STREAM_ARN = os.environ.get(
    "REGISTRY_STREAM_ARN",
    "arn:aws:dynamodb:us-east-1:123456789012:table/energy-marketplace-registry/stream/unset",
)
# The disputes table's stream (disputes opened and decided, for live clients).
DISPUTES_STREAM_ARN = os.environ.get(
    "DISPUTES_STREAM_ARN",
    "arn:aws:dynamodb:us-east-1:123456789012:table/energy-marketplace-disputes/stream/unset",
)


@app.route("/rpc", methods=["POST"], content_types=JSON_CONTENT_TYPES)
def rpc() -> Response:
    from chalicelib.wiring import dispatcher

    request = app.current_request
    body = request.raw_body if request is not None else b""
    answer = dispatcher().handle(body if isinstance(body, bytes) else body.encode())
    if answer is None:  # only notifications: JSON-RPC sends nothing back
        return Response(body="", status_code=204)
    return Response(
        body=answer.decode(), status_code=200, headers={"Content-Type": "application/json"}
    )


@app.route("/openrpc.json", methods=["GET"])
def openrpc_document() -> Response:
    from chalicelib.rpc.methods import openrpc
    from chalicelib.rpc.protocol import encode

    return Response(
        body=encode(openrpc()).decode(),
        status_code=200,
        headers={"Content-Type": "application/json"},
    )


@app.lambda_function(name="ingest_reading")
def ingest_reading(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The IoT topic rule's target: one signed meter reading per invocation."""
    from chalicelib.iot_events import handle_reading_event
    from chalicelib.wiring import ingest_dependencies

    return handle_reading_event(ingest_dependencies(), event)


# Scheduled jobs (EventBridge rules). Each reads only the work due since its
# watermark; each is safe to run twice or concurrently. `make run` calls the
# same functions on a timer (infra/scheduler.py, started by infra/local_stack.py).
@app.schedule(Rate(5, unit=Rate.MINUTES), name="settle_due_purchases")
def settle_due_purchases(event: Any) -> dict[str, Any]:
    """Settle every purchase whose dispute window has passed."""
    from chalicelib.services.settlement import run_settlement
    from chalicelib.wiring import jobs_dependencies

    return run_settlement(jobs_dependencies()).as_log()


@app.schedule(Rate(15, unit=Rate.MINUTES), name="expire_unsold_credits")
def expire_unsold_credits(event: Any) -> dict[str, Any]:
    """Take credits unsold at their expiry out of the market."""
    from chalicelib.services.expiry import run_expiry
    from chalicelib.wiring import jobs_dependencies

    return run_expiry(jobs_dependencies()).as_log()


@app.schedule(Rate(5, unit=Rate.MINUTES), name="resolve_due_disputes")
def resolve_due_disputes(event: Any) -> dict[str, Any]:
    """Resolve disputes past their deadline; carry on revoking guilty ones."""
    from chalicelib.services.resolution import run_disputes
    from chalicelib.wiring import jobs_dependencies

    return run_disputes(jobs_dependencies()).as_log()


# The stream consumers: each stream has two readers at most (AWS's limit per
# shard). The ledger and registry consumers run with a tumbling window
# (infra/template.yaml) for the shard id it puts in the event: the analytics
# count each record once per shard. Each answers with the batch's checkpoint
# (batchItemFailures): a record that cannot be processed is reported, never
# skipped (chalicelib/streams/batch.py).
@app.on_dynamodb_record(stream_arn=LEDGER_STREAM_ARN, name="publish_market_events", batch_size=100)
def publish_market_events(event: Any) -> dict[str, Any]:
    """Trading events (purchases opened and settled) and the market's trade analytics."""
    from chalicelib.streams.consumers import publish_market_events as consume

    return consume(event.to_dict())


# Up to 1,000 records, gathered for up to 5 seconds (infra/template.yaml): at a
# million meters a batch, not a reading, is what costs a write per aggregate
# and a push per live client.
@app.on_dynamodb_record(stream_arn=REGISTRY_STREAM_ARN, name="watch_meters", batch_size=1000)
def watch_meters(event: Any) -> dict[str, Any]:
    """The fraud detectors and the market's meter and provider analytics."""
    from chalicelib.streams.consumers import watch_meters as consume

    return consume(event.to_dict())


@app.on_dynamodb_record(
    stream_arn=DISPUTES_STREAM_ARN, name="publish_dispute_events", batch_size=100
)
def publish_dispute_events(event: Any) -> dict[str, Any]:
    """Disputes opened and decided, to live clients (the disputes stream's one reader)."""
    from chalicelib.streams.consumers import publish_dispute_events as consume

    return consume(event.to_dict())


@app.schedule(Rate(1, unit=Rate.MINUTES), name="push_market_stats")
def push_market_stats(event: Any) -> dict[str, Any]:
    """The market_stats topic's snapshot, once a minute, if anyone listens."""
    from chalicelib.streams.live_events import push_market_stats as push

    return push()


# The WebSocket routes. API Gateway calls them for each client's connect,
# message and disconnect; answers to a message go back through @connections.
@app.on_ws_connect(name="websocket_connect")
def websocket_connect(event: Any) -> dict[str, int]:
    from chalicelib.services.live import connect
    from chalicelib.wiring import live_dependencies

    query = event.to_dict().get("queryStringParameters")
    accepted = connect(live_dependencies(), event.connection_id, query)
    return {"statusCode": 200 if accepted else 403}


@app.on_ws_message(name="websocket_message")
def websocket_message(event: Any) -> None:
    from chalicelib.services.live import receive
    from chalicelib.wiring import live_dependencies, live_pusher

    pusher = live_pusher()
    if pusher is not None:
        receive(live_dependencies(), pusher, event.connection_id, event.body)


@app.on_ws_disconnect(name="websocket_disconnect")
def websocket_disconnect(event: Any) -> None:
    from chalicelib.services.live import disconnect
    from chalicelib.wiring import live_dependencies

    disconnect(live_dependencies(), event.connection_id)
