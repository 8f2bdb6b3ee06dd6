"""A checker for CloudWatch embedded metric format documents, written from the specification.

https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html

It checks what CloudWatch Logs needs to extract metrics from a log event:

- the log event is one JSON object, with nothing before or after it;
- the root has ``_aws``, an object with ``Timestamp`` (a number: milliseconds
  since the epoch) and ``CloudWatchMetrics`` (an array of metric directives);
- a metric directive has ``Namespace`` (a non-empty string), ``Dimensions``
  (an array of dimension sets: arrays of at most 30 strings) and ``Metrics``
  (an array of at most 100 metric definitions);
- a metric definition has ``Name`` (a non-empty string) and may have ``Unit``
  (one of CloudWatch's units) and ``StorageResolution`` (1 or 60);
- every name a directive refers to is a member of the root (a target member):
  a dimension's value is a string, a metric's a number or an array of at most
  100 numbers.

It returns what is wrong, so a test names the broken rule.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

MAX_METRICS: Final = 100
MAX_DIMENSIONS: Final = 30
MAX_VALUES: Final = 100
UNITS: Final = frozenset(
    {
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    }
)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _non_empty_string(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def emf_violations(log_event: str) -> list[str]:
    """What keeps ``log_event`` (one log line) from being a valid EMF document."""
    if log_event != log_event.strip() or not log_event.startswith("{"):
        return ["the log event is not a JSON object alone (data before or after it)"]
    try:
        root = json.loads(log_event)
    except json.JSONDecodeError as exc:
        return [f"not JSON: {exc}"]
    if not isinstance(root, dict):
        return ["the root is not an object"]
    metadata = root.get("_aws")
    if not isinstance(metadata, dict):
        return ["_aws is missing or not an object"]
    problems: list[str] = []
    if "Timestamp" not in metadata:
        problems.append("_aws.Timestamp is missing")
    elif not _is_number(metadata["Timestamp"]) or metadata["Timestamp"] < 1e12:
        problems.append("_aws.Timestamp is not a number of milliseconds since the epoch")
    directives = metadata.get("CloudWatchMetrics")
    if not isinstance(directives, list):
        return [*problems, "_aws.CloudWatchMetrics is missing or not an array"]
    for index, directive in enumerate(directives):
        problems += [f"CloudWatchMetrics[{index}]: {p}" for p in _directive(directive, root)]
    return problems


def _directive(directive: Any, root: dict[str, Any]) -> list[str]:
    if not isinstance(directive, dict):
        return ["not an object"]
    problems: list[str] = []
    if not _non_empty_string(directive.get("Namespace")):
        problems.append("Namespace is missing or not a non-empty string")
    dimension_sets = directive.get("Dimensions")
    if not isinstance(dimension_sets, list):
        problems.append("Dimensions is missing or not an array")
        dimension_sets = []
    for dimension_set in dimension_sets:
        if not isinstance(dimension_set, list) or not all(
            _non_empty_string(name) for name in dimension_set
        ):
            problems.append(f"dimension set {dimension_set!r} is not an array of names")
            continue
        if len(dimension_set) > MAX_DIMENSIONS:
            problems.append(f"dimension set has {len(dimension_set)} dimensions (> 30)")
        for name in dimension_set:
            if name not in root:
                problems.append(f"dimension {name!r} has no target member at the root")
            elif not isinstance(root[name], str):
                problems.append(f"dimension {name!r} is not a string at the root")
    metrics = directive.get("Metrics")
    if not isinstance(metrics, list):
        return [*problems, "Metrics is missing or not an array"]
    if len(metrics) > MAX_METRICS:
        problems.append(f"{len(metrics)} metrics (> 100)")
    for metric in metrics:
        problems += _metric(metric, root)
    return problems


def _metric(metric: Any, root: dict[str, Any]) -> list[str]:
    if not isinstance(metric, dict) or not _non_empty_string(metric.get("Name")):
        return [f"metric {metric!r} has no Name"]
    name = metric["Name"]
    problems: list[str] = []
    if "Unit" in metric and metric["Unit"] not in UNITS:
        problems.append(f"metric {name!r} has an unknown Unit {metric['Unit']!r}")
    if "StorageResolution" in metric and metric["StorageResolution"] not in (1, 60):
        problems.append(f"metric {name!r} has StorageResolution other than 1 or 60")
    value = root.get(name)
    if name not in root:
        problems.append(f"metric {name!r} has no target member at the root")
    elif isinstance(value, list):
        if len(value) > MAX_VALUES or not all(_is_number(v) for v in value):
            problems.append(f"metric {name!r} is not an array of at most 100 numbers")
    elif not _is_number(value):
        problems.append(f"metric {name!r} is not a number at the root")
    return problems
