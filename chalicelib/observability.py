"""CloudWatch embedded metrics and JSON log lines that carry the Lambda request id.

Metrics. Each call of :func:`emit_metrics` writes one CloudWatch embedded
metric format (EMF) document as a bare JSON line on stdout: in Lambda every
stdout line is its own log event, and CloudWatch Logs turns a log event that
is an EMF document into metrics, with no API call on the hot path. The line
must not go through a logging formatter: a prefix (level, time, request id)
makes it an ordinary log line and the metrics never arrive. Until
:func:`configure` is called (``app.py`` calls it when a function's process
imports it), the arguments are checked and no line is built, so a benchmark
or a script that calls the services directly prints none.

Logs. :func:`configure` gives the process's log handlers (the Lambda
runtime's, Chalice's app logger's, or one of its own on stdout) a formatter
that writes one JSON object per line: time, level, logger, message, the
invocation's ``aws_request_id``, the fields passed as ``extra`` and, for an
exception, its traceback. ``app.py`` sets the request id for each invocation
(:func:`invocation`), so every line a handler and the code under it log
names the invocation it belongs to.

Why not AWS Lambda Powertools' Logger and Metrics: they do the same, and
importing them adds to every function's cold start. docs/architecture.md
("Logs and metrics") has the figures measured with bench/registry.py.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final, TextIO

NAMESPACE: Final = "EnergyMarketplace"
# The EMF specification's limits per metric directive.
MAX_METRICS: Final = 100
MAX_DIMENSIONS: Final = 30

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "aws_request_id", default=None
)
_configured = False
# One encoder for every line: json.dumps with arguments builds a new one per call.
_COMPACT: Final = json.JSONEncoder(separators=(",", ":"), default=str)
_write_to_stdout = False


class MetricError(ValueError):
    """A metric document that CloudWatch would not accept: a mistake in the caller."""


def emit_metrics(
    metrics: Mapping[str, int],
    *,
    dimensions: Mapping[str, str] | None = None,
    dimension_sets: Sequence[Sequence[str]] = ((),),
    properties: Mapping[str, Any] | None = None,
    unit: str = "Count",
) -> str | None:
    """Write one EMF document for ``metrics``; return its line (None: output is off).

    ``dimension_sets`` lists the dimension combinations each metric is
    published under; the empty set publishes the metric's total (the one an
    alarm divides). Every name in a set must be a key of ``dimensions``,
    whose values are strings. ``properties`` are plain members: searchable
    in CloudWatch Logs Insights, never dimensions (no per-meter metrics).
    """
    named = dimensions or {}
    if not 0 < len(metrics) <= MAX_METRICS:
        raise MetricError(f"a document holds 1 to {MAX_METRICS} metrics, not {len(metrics)}")
    for names in dimension_sets:
        # (The empty set, the usual one, needs no subset test.)
        if names and (len(names) > MAX_DIMENSIONS or not named.keys() >= set(names)):
            raise MetricError(f"dimension set {list(names)} is not among {sorted(named)}")
    if "_aws" in metrics or "_aws" in named or (properties and "_aws" in properties):
        raise MetricError("_aws is the metric directive's member, not a property's")
    if not _write_to_stdout:
        return None  # no function's process: a benchmark or a script; the line costs nothing
    document: dict[str, Any] = dict(properties or {})
    request_id = _request_id.get()
    if request_id is not None:  # a plain member, like any property: the line's invocation
        document["aws_request_id"] = request_id
    document.update(named)
    document.update(metrics)
    timestamp = int(time.time() * 1000)
    directives = _directives_json(metrics, dimension_sets, unit)
    # The members encoded, then "_aws" spliced in as their last member: the
    # same line as encoding it with them, for half the CPU (one per reading).
    line = (
        f"{{{_members_json(document)},"
        f'"_aws":{{"Timestamp":{timestamp},"CloudWatchMetrics":{directives}}}}}'
    )
    # sys.stdout looked up per line: the runtime's, or a test's capture.
    sys.stdout.write(line + "\n")
    return line


# json's own string encoder (ensure_ascii, as _COMPACT): escapes as it does.
_quoted: Final = json.encoder.encode_basestring_ascii


def _members_json(document: Mapping[str, Any]) -> str:
    """The members of ``document`` as JSON, without the braces: the same text
    as the line's encoder writes. Strings and integers (nearly every line's
    members: a reading's are its meter and count) are written here; setting up
    json's encoder for a document costs more than encoding these few members."""
    parts = []
    for name, value in document.items():
        kind = type(value)
        if kind is str:
            parts.append(f"{_quoted(name)}:{_quoted(value)}")
        elif kind is int:  # exactly: a bool or an int subclass may print otherwise
            parts.append(f"{_quoted(name)}:{value}")
        else:
            return _COMPACT.encode(document)[1:-1]
    return ",".join(parts)


# The JSON of each distinct metric directive, built once: its metric names,
# dimension sets and unit come from the code (a few dozen at most), never
# from a request; the bound only keeps a mistake from growing it.
_DIRECTIVES: dict[tuple[Any, ...], str] = {}
_MAX_DIRECTIVES: Final = 256


def _directives_json(
    metrics: Mapping[str, int], dimension_sets: Sequence[Sequence[str]], unit: str
) -> str:
    key = (tuple(metrics), tuple(map(tuple, dimension_sets)), unit)
    cached = _DIRECTIVES.get(key)
    if cached is not None:
        return cached
    text = _COMPACT.encode(
        [
            {
                "Namespace": NAMESPACE,
                "Dimensions": [list(names) for names in dimension_sets],
                "Metrics": [{"Name": name, "Unit": unit} for name in metrics],
            }
        ]
    )
    if len(_DIRECTIVES) < _MAX_DIRECTIVES:
        _DIRECTIVES[key] = text
    return text


# --- logs --------------------------------------------------------------------------


def current_request_id() -> str | None:
    return _request_id.get()


@contextmanager
def invocation(context: Any) -> Iterator[None]:
    """The request id of the Lambda ``context`` on every log line inside the block."""
    token = _request_id.set(getattr(context, "aws_request_id", None))
    try:
        yield
    finally:
        _request_id.reset(token)


# What a LogRecord carries by itself; everything else on it came as ``extra``.
_RECORD_ATTRIBUTES: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "aws_request_id",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": _iso_ms(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            # The invocation's, else the runtime's own (its filter sets it on records).
            "aws_request_id": _request_id.get() or getattr(record, "aws_request_id", None),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(entry, separators=(",", ":"), default=str)


def _iso_ms(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created * 1000) % 1000:03d}Z"


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler on the current sys.stdout (not the one at import: tests swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure(app_logger: logging.Logger | None = None, level: str = "INFO") -> None:
    """Turn metric lines on and make the process's log lines JSON. Idempotent."""
    global _configured, _write_to_stdout
    _write_to_stdout = True
    if _configured:
        return
    _configured = True
    logging.getLogger("chalicelib").setLevel(level)
    # The SDK's INFO lines ("Found credentials in environment variables", one per
    # client) say nothing an operator acts on; `make run` would print them by the
    # dozen. Its warnings and errors still pass.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    root = logging.getLogger()
    if not root.handlers:  # not under the Lambda runtime, which installs one
        root.addHandler(_StdoutHandler())
    loggers = [root] + ([app_logger] if app_logger is not None else [])
    formatter = JsonFormatter()
    for logger in loggers:
        for handler in logger.handlers:
            handler.setFormatter(formatter)
