"""The item codec: Python values to DynamoDB's typed attributes and back."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

Item = dict[str, Any]  # a low-level DynamoDB item: {"attr": {"S": "..."}}

_serializer: Final = TypeSerializer()
_deserializer: Final = TypeDeserializer()


# Strings, integers and booleans are most of every item; boto3's serializer
# inspects each value against every type in turn, which made the item mapping
# the largest CPU cost of ingesting a reading. They take a short path here,
# with the same result; everything else goes to boto3's. The loops are written
# out (no helper call per attribute): ingest maps about 35 attributes a reading.
_MAX_DIGITS_INT: Final = 10**38  # DynamoDB numbers hold 38 significant digits


def to_item(values: dict[str, Any]) -> Item:
    item: Item = {}
    for name, value in values.items():
        kind = type(value)
        if kind is str:
            item[name] = {"S": value}
        elif kind is int and -_MAX_DIGITS_INT < value < _MAX_DIGITS_INT:
            item[name] = {"N": str(value)}
        elif value is None:
            continue  # an absent attribute, not a NULL one
        elif kind is bool:
            item[name] = {"BOOL": value}
        else:
            item[name] = _serializer.serialize(value)
    return item


def from_item(item: Item) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, attribute in item.items():
        if "S" in attribute:
            values[name] = attribute["S"]
        elif "N" in attribute:
            values[name] = Decimal(attribute["N"])
        else:
            values[name] = _deserializer.deserialize(attribute)
    return values


def as_int(value: Any) -> int:
    """A stored number: DynamoDB numbers come back as Decimal; ours are all integers."""
    if not isinstance(value, Decimal) or value != value.to_integral_value():
        raise ValueError(f"stored number is not an integer: {value!r}")
    return int(value)
