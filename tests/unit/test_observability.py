"""Embedded metric lines against the EMF specification, and JSON log lines with the request id."""

from __future__ import annotations

import copy
import io
import json
import logging
import types
from collections.abc import Callable
from typing import Any

import pytest

from chalicelib import observability
from tests.emf_spec import emf_violations

# The specification's own example document.
SPEC_EXAMPLE: dict[str, Any] = {
    "_aws": {
        "Timestamp": 1574109732004,
        "CloudWatchMetrics": [
            {
                "Namespace": "lambda-function-metrics",
                "Dimensions": [["functionVersion"]],
                "Metrics": [{"Name": "time", "Unit": "Milliseconds", "StorageResolution": 60}],
            }
        ],
    },
    "functionVersion": "$LATEST",
    "time": 100,
    "requestId": "989ffbf8-9ace-4817-a57c-e4dd734019ee",
}


def _directive(document: dict[str, Any]) -> dict[str, Any]:
    directive: dict[str, Any] = document["_aws"]["CloudWatchMetrics"][0]
    return directive


BROKEN: dict[str, Callable[[dict[str, Any]], None]] = {
    "no _aws": lambda d: d.pop("_aws"),
    "no Timestamp": lambda d: d["_aws"].pop("Timestamp"),
    "Timestamp in seconds": lambda d: d["_aws"].update(Timestamp=1574109732),
    "Timestamp a string": lambda d: d["_aws"].update(Timestamp="1574109732004"),
    "no CloudWatchMetrics": lambda d: d["_aws"].pop("CloudWatchMetrics"),
    "no Namespace": lambda d: _directive(d).pop("Namespace"),
    "no Dimensions": lambda d: _directive(d).pop("Dimensions"),
    "no Metrics": lambda d: _directive(d).pop("Metrics"),
    "metric without Name": lambda d: _directive(d)["Metrics"][0].pop("Name"),
    "metric member missing": lambda d: d.pop("time"),
    "metric member a string": lambda d: d.update(time="100"),
    "dimension member missing": lambda d: d.pop("functionVersion"),
    "dimension member a number": lambda d: d.update(functionVersion=1),
    "unknown unit": lambda d: _directive(d)["Metrics"][0].update(Unit="Wh"),
    "101 metrics": lambda d: _directive(d).update(Metrics=[{"Name": "time"} for _ in range(101)]),
    "31 dimensions": lambda d: _thirty_one_dimensions(d),
}


def _thirty_one_dimensions(document: dict[str, Any]) -> None:
    document.update({f"d{i}": "x" for i in range(31)})
    _directive(document)["Dimensions"] = [[f"d{i}" for i in range(31)]]


def test_the_checker_accepts_the_specifications_example() -> None:
    assert emf_violations(json.dumps(SPEC_EXAMPLE)) == []


@pytest.mark.parametrize("breakage", sorted(BROKEN))
def test_the_checker_rejects_a_document_that_breaks_a_rule(breakage: str) -> None:
    document = copy.deepcopy(SPEC_EXAMPLE)
    BROKEN[breakage](document)
    assert emf_violations(json.dumps(document)) != []


def test_the_checker_rejects_a_line_behind_a_log_prefix() -> None:
    # What the old lines were: the logging formatter's prefix before the JSON.
    line = "[INFO]\t2026-12-01T13:00:00.000Z\tabc-123\t" + json.dumps(SPEC_EXAMPLE)
    assert emf_violations(line) != []


@pytest.fixture
def metrics_on() -> None:
    observability.configure()


def test_a_metric_line_is_valid_emf_and_a_bare_line_on_stdout(
    metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    line = observability.emit_metrics(
        {"ReadingsRejected": 1},
        dimensions={"reason": "bad_signature"},
        dimension_sets=[[], ["reason"]],
        properties={"meter_address": "0xabc"},
    )
    assert line is not None and capsys.readouterr().out == line + "\n"
    assert emf_violations(line) == []
    document = json.loads(line)
    directive = document["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "EnergyMarketplace"
    assert directive["Dimensions"] == [[], ["reason"]]
    assert document["meter_address"] == "0xabc"  # a property, in no dimension set


@pytest.mark.parametrize(
    ("metrics", "dimension_sets"),
    [
        ({}, [[]]),
        ({f"m{i}": 1 for i in range(101)}, [[]]),
        ({"ReadingsRejected": 1}, [["reason"]]),  # a dimension without a value
    ],
)
def test_a_document_cloudwatch_would_refuse_is_not_written(
    metrics: dict[str, int], dimension_sets: list[list[str]]
) -> None:
    with pytest.raises(observability.MetricError):
        observability.emit_metrics(metrics, dimension_sets=dimension_sets)


def test_a_log_line_is_one_json_object_with_the_request_id_and_the_extra_fields() -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(observability.JsonFormatter())
    logger = logging.getLogger("chalicelib.test_observability")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with observability.invocation(types.SimpleNamespace(aws_request_id="req-1")):
            logger.info("job finished: %s", "settle", extra={"job_run": {"settled": 2}})
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("failed")
        logger.info("between invocations")
    finally:
        logger.removeHandler(handler)
    first, failed, after = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert first["message"] == "job finished: settle"
    assert first["aws_request_id"] == "req-1" and first["job_run"] == {"settled": 2}
    assert first["level"] == "INFO" and first["logger"] == "chalicelib.test_observability"
    assert first["timestamp"].endswith("Z")
    assert failed["aws_request_id"] == "req-1" and "ValueError: boom" in failed["exception"]
    assert after["aws_request_id"] is None
