"""DynamoDB storage, one module per aggregate (its repository and item mapping).

layout has every key, index name and cursor (and the table layout); codec
the item codec; paging the query helpers; unit_of_work the staging, the
commit and the translation of DynamoDB's errors into domain errors.
"""

from __future__ import annotations

from chalicelib.adapters.dynamodb.codec import Item, from_item, to_item
from chalicelib.adapters.dynamodb.layout import Tables
from chalicelib.adapters.dynamodb.unit_of_work import MAX_TRANSACTION_WRITES, DynamoUnitOfWork

__all__ = [
    "MAX_TRANSACTION_WRITES",
    "DynamoUnitOfWork",
    "Item",
    "Tables",
    "from_item",
    "to_item",
]
