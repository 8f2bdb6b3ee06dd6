"""In-memory storage with the same interface and conditions as DynamoDB.

One module per aggregate, mirroring chalicelib.adapters.dynamodb (the sort
keys, cursors and due-work scans are the DynamoDB adapter's, so listings page
and jobs read alike). Used by the fast tests and the property tests. Tests
under tests/integration that take the ``market`` fixture run once on this
adapter and once on DynamoDB (moto), so the two cannot drift.
"""

from __future__ import annotations

from chalicelib.adapters.memory.state import MemoryState
from chalicelib.adapters.memory.unit_of_work import MemoryUnitOfWork, memory_unit_of_work_factory

__all__ = ["MemoryState", "MemoryUnitOfWork", "memory_unit_of_work_factory"]
