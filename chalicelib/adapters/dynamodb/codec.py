"""The item codec: Python values to DynamoDB's typed attributes and back."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

Item = dict[str, Any]  # a low-level DynamoDB item: {"attr": {"S": "..."}}

_serializer: Final = TypeSerializer()
_deserializer: Final = TypeDeserializer()


def to_item(values: dict[str, Any]) -> Item:
    return {k: _attribute(v) for k, v in values.items() if v is not None}


def from_item(item: Item) -> dict[str, Any]:
    return {k: _value(v) for k, v in item.items()}


# Strings, integers and booleans are most of every item; boto3's serializer
# inspects each value against every type in turn, which made the item mapping
# the largest CPU cost of ingesting a reading. They take a short path here,
# with the same result; everything else goes to boto3's.
_MAX_DIGITS_INT: Final = 10**38  # DynamoDB numbers hold 38 significant digits


def _attribute(value: Any) -> dict[str, Any]:
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is int and -_MAX_DIGITS_INT < value < _MAX_DIGITS_INT:
        return {"N": str(value)}
    if kind is bool:
        return {"BOOL": value}
    return _serializer.serialize(value)  # type: ignore[no-any-return]


def _value(attribute: dict[str, Any]) -> Any:
    if "S" in attribute:
        return attribute["S"]
    if "N" in attribute:
        return Decimal(attribute["N"])
    return _deserializer.deserialize(attribute)


def as_int(value: Any) -> int:
    """A stored number: DynamoDB numbers come back as Decimal; ours are all integers."""
    if not isinstance(value, Decimal) or value != value.to_integral_value():
        raise ValueError(f"stored number is not an integer: {value!r}")
    return int(value)
