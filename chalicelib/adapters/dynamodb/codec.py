"""The item codec: Python values to DynamoDB's typed attributes and back."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

Item = dict[str, Any]  # a low-level DynamoDB item: {"attr": {"S": "..."}}

_serializer: Final = TypeSerializer()
_deserializer: Final = TypeDeserializer()


def to_item(values: dict[str, Any]) -> Item:
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: Item) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def as_int(value: Any) -> int:
    """A stored number: DynamoDB numbers come back as Decimal; ours are all integers."""
    if not isinstance(value, Decimal) or value != value.to_integral_value():
        raise ValueError(f"stored number is not an integer: {value!r}")
    return int(value)
