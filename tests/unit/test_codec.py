"""The item codec's short path (strings, integers, booleans) agrees with boto3's own."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.adapters.dynamodb.codec import from_item, to_item

scalars = (
    st.text(max_size=20)
    | st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1)
    | st.booleans()
    | st.decimals(
        allow_nan=False, allow_infinity=False, places=3, max_value=10**12, min_value=-(10**12)
    )
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(min_size=1, max_size=8), values | st.none(), max_size=6))
def test_to_item_and_from_item_agree_with_boto3(attributes: dict[str, Any]) -> None:
    serializer, deserializer = TypeSerializer(), TypeDeserializer()
    expected = {k: serializer.serialize(v) for k, v in attributes.items() if v is not None}
    assert to_item(attributes) == expected
    assert from_item(expected) == {k: deserializer.deserialize(v) for k, v in expected.items()}


def test_numbers_come_back_as_decimals_and_booleans_stay_booleans() -> None:
    item = to_item({"wh": 2_500, "paused": False, "name": "x"})
    assert item == {"wh": {"N": "2500"}, "paused": {"BOOL": False}, "name": {"S": "x"}}
    back = from_item(item)
    assert back == {"wh": Decimal(2500), "paused": False, "name": "x"}
    assert type(back["wh"]) is Decimal and type(back["paused"]) is bool
