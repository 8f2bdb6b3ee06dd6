"""A metric line is, byte for byte, the JSON of its document with ``_aws`` last.

emit_metrics encodes the members and splices in the (cached) ``_aws``
directive rather than encoding one dictionary holding both; these tests hold
it to the line that encoding the whole document gives, key order included.
"""

from __future__ import annotations

import contextlib
import io
import json
import types
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib import observability
from chalicelib.domain.readings import Rejection
from tests.emf_spec import emf_violations


@pytest.fixture(autouse=True)
def metrics_on() -> None:
    observability.configure()


def expected_line(
    line: str,
    metrics: Mapping[str, int],
    dimensions: Mapping[str, str],
    dimension_sets: Sequence[Sequence[str]],
    properties: Mapping[str, Any],
    request_id: str | None = None,
    unit: str = "Count",
) -> str:
    """The document built member by member, as the EMF specification lays it out."""
    document: dict[str, Any] = dict(properties)
    if request_id is not None:
        document["aws_request_id"] = request_id
    document.update(dimensions)
    document.update(metrics)
    document["_aws"] = {
        "Timestamp": json.loads(line)["_aws"]["Timestamp"],  # the one value a test cannot fix
        "CloudWatchMetrics": [
            {
                "Namespace": "EnergyMarketplace",
                "Dimensions": [list(names) for names in dimension_sets],
                "Metrics": [{"Name": name, "Unit": unit} for name in metrics],
            }
        ],
    }
    return json.dumps(document, separators=(",", ":"), default=str)


CASES: list[dict[str, Any]] = [
    {
        "metrics": {"ReadingsAccepted": 1},
        "dimensions": {},
        "dimension_sets": [[]],
        "properties": {"meter_address": "solar_meter_001"},
    },
    {
        "metrics": {"ReadingsRejected": 1},
        "dimensions": {"reason": "bad_signature"},
        "dimension_sets": [[], ["reason"]],
        "properties": {"meter_address": None},
    },
    {  # the same names under another unit and other sets: its own directive
        "metrics": {"ReadingsRejected": 1},
        "dimensions": {"reason": "bad_signature", "consumer": "c"},
        "dimension_sets": (("consumer", "reason"),),
        "properties": {},
        "unit": "None",
    },
    {  # non-ASCII and a value JSON cannot hold (written with str())
        "metrics": {"SettledWh": 2_500, "SettledMicroBlock": 10**15},
        "dimensions": {},
        "dimension_sets": [[]],
        "properties": {"note": "Z\u00e4hler \u2603", "at": frozenset({3})},
    },
]


@pytest.mark.parametrize("case", CASES, ids=range(len(CASES)))
@pytest.mark.parametrize("request_id", [None, "req-7"])
def test_a_line_is_the_json_of_its_whole_document(
    case: dict[str, Any], request_id: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    context = types.SimpleNamespace(aws_request_id=request_id)
    written = []
    with observability.invocation(context):
        for _ in range(2):  # the second line comes from the cached directive
            line = observability.emit_metrics(**case)
            assert line is not None
            assert line == expected_line(line, request_id=request_id, **case)
            assert emf_violations(line) == []
            written.append(line)
    assert capsys.readouterr().out.splitlines() == written


def test_a_dimension_set_naming_a_missing_dimension_is_refused_as_before() -> None:
    with pytest.raises(observability.MetricError, match=r"dimension set \['reason'\]"):
        observability.emit_metrics({"ReadingsRejected": 1}, dimension_sets=(("reason",),))
    too_many = [f"d{n}" for n in range(31)]
    with pytest.raises(observability.MetricError):
        observability.emit_metrics(
            {"m": 1}, dimensions=dict.fromkeys(too_many, "x"), dimension_sets=[too_many]
        )


def test_a_member_named_like_the_directive_is_refused() -> None:
    with pytest.raises(observability.MetricError, match="_aws"):
        observability.emit_metrics({"ReadingsAccepted": 1}, properties={"_aws": "mine"})


# Strings (every code point, lone surrogates and quotes included), integers of
# any size, and the values that look like integers but are not written as one.
_VALUES = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=())),
    st.integers(),
    st.booleans(),
    st.sampled_from([Rejection.BAD_SIGNATURE, HTTPStatus.OK, None, 1.5]),
)


@given(
    properties=st.dictionaries(
        st.text(st.characters(codec=None, exclude_categories=())).filter(lambda k: k != "_aws"),
        _VALUES,
        max_size=4,
    ),
    count=st.integers(min_value=0, max_value=10**18),
)
def test_a_line_with_any_property_values_is_the_json_of_its_whole_document(
    properties: dict[str, Any], count: int
) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        line = observability.emit_metrics({"ReadingsAccepted": count}, properties=properties)
    assert line is not None
    assert line == expected_line(line, {"ReadingsAccepted": count}, {}, [[]], properties)
    assert json.loads(line)["ReadingsAccepted"] == count
