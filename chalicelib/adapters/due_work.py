"""Reading due work by the hour it falls due in, from a job's watermark to now.

Storage layout, shared by both adapters (the in-memory one mirrors DynamoDB's
access pattern, so that a job reads and reports the same on either). Work
that falls due is indexed by the hour it falls due in (purchases by
settlement time in PurchasesDue, credits on sale by expiry in ExpiringBySlot,
sharded). A job reads the hours from its watermark, the first hour that may
still hold work, up to now; it moves the watermark past every hour it has
emptied. So a run reads what is due, and what stayed due because it could
not be done, never the history behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Final, Protocol, TypeVar

from chalicelib.domain.credits import Credit
from chalicelib.domain.errors import ConcurrentUpdate
from chalicelib.domain.trading import Purchase
from chalicelib.services.ports import DueHandler, JobRun

logger = logging.getLogger(__name__)

T = TypeVar("T")

HOUR_MS: Final = 3_600_000
# The first run of a job (no watermark yet) looks this far back.
FIRST_RUN_LOOKBACK_HOURS: Final = 48
# An hour is left behind only once it ended this long ago: work is indexed by
# a time taken just before its write commits, so an hour that has just ended
# may still receive an item.
WATERMARK_MARGIN_MS: Final = 10 * 60_000
# Items read per query.
PAGE: Final = 100


class Watermarks(Protocol):
    """Where each job stands, in hours: what the scan reads and moves."""

    def hour(self, job: str) -> int | None: ...

    def advance_alone(self, job: str, hour: int) -> None:
        """Move the watermark forward to ``hour`` in a commit of its own;
        ConcurrentUpdate when another run moved it first."""


def hours_to_read(watermark: int | None, now_ms: int) -> range:
    current = now_ms // HOUR_MS
    start = watermark if watermark is not None else current - FIRST_RUN_LOOKBACK_HOURS
    return range(start, current + 1)


def drain(
    run: JobRun,
    budget: int,
    fetch: Callable[[int], Sequence[T]],
    key: Callable[[T], str],
    process: DueHandler[T],
) -> bool:
    """Fetch due items page by page and process them until none are left.

    True when the source is empty of due work: every item fetched was handled
    (``process`` says so) and the last page was short. Items already seen are
    skipped, so an index that lags behind a write cannot loop a run.
    """
    seen: set[str] = set()
    handled_all = True
    while True:
        limit = min(PAGE, budget - run.done)
        if limit <= 0:
            return False
        page = fetch(limit)
        run.queries += 1
        run.items_read += len(page)
        fresh = [item for item in page if key(item) not in seen]
        seen.update(key(item) for item in fresh)
        if fresh and not process(fresh):
            handled_all = False
        if len(page) < limit:
            return handled_all
        if not fresh:
            return False  # the index still shows what we handled: next run


def _move_watermark(
    watermarks: Watermarks, job: str, first_hour: int, emptied_through: int | None, now_ms: int
) -> int:
    """Record that hours up to ``emptied_through`` hold no more work; return the watermark."""
    if emptied_through is None:
        return first_hour
    target = min(emptied_through + 1, (now_ms - WATERMARK_MARGIN_MS) // HOUR_MS)
    if target <= first_hour:
        return first_hour
    try:
        watermarks.advance_alone(job, target)
    except ConcurrentUpdate:
        logger.info("%s: another run moved the watermark first", job)
    return target


def over_hours(
    watermarks: Watermarks, run: JobRun, now_ms: int, empty_hour: Callable[[int], bool]
) -> None:
    """Call ``empty_hour`` for each hour from the watermark to now; move the
    watermark past the leading hours it emptied."""
    hours = hours_to_read(watermarks.hour(run.job), now_ms)
    emptied_through: int | None = None
    contiguous = True
    for hour in hours:
        run.hours_read += 1
        emptied = empty_hour(hour)
        if emptied and contiguous:
            emptied_through = hour
        else:
            contiguous = False
    hour = _move_watermark(watermarks, run.job, hours.start, emptied_through, now_ms)
    run.watermark = hour * HOUR_MS


def items_due(
    watermarks: Watermarks,
    due_in_hour: Callable[[int, int, int], Sequence[T]],
    key: Callable[[T], str],
    run: JobRun,
    now_ms: int,
    budget: int,
    handle: DueHandler[T],
) -> None:
    """The items due by ``now_ms`` (open purchases to settle, disputes to
    resolve), an hour's index partition at a time."""

    def empty_hour(hour: int) -> bool:
        return drain(run, budget, lambda limit: due_in_hour(hour, now_ms, limit), key, handle)

    over_hours(watermarks, run, now_ms, empty_hour)


def purchases_due(
    watermarks: Watermarks,
    due_in_hour: Callable[[int, int, int], Sequence[Purchase]],
    run: JobRun,
    now_ms: int,
    budget: int,
    settle: DueHandler[Purchase],
) -> None:
    """The open purchases due by ``now_ms``, an hour's index partition at a time."""
    items_due(watermarks, due_in_hour, lambda p: p.purchase_id, run, now_ms, budget, settle)


def credits_expired(
    watermarks: Watermarks,
    slots_of_hour: Callable[[int], list[str]],
    expired_in_slot: Callable[[str, int, int], Sequence[Credit]],
    run: JobRun,
    now_ms: int,
    budget: int,
    expire: DueHandler[Credit],
) -> None:
    """The credits on sale expired by ``now_ms``, every shard of an hour at a time."""

    def empty_hour(hour: int) -> bool:
        # A round reads a page from every shard of the hour and hands over what
        # it found together, so a provider's credits share transactions across shards.
        emptied = True
        seen: set[str] = set()
        shards = slots_of_hour(hour)
        while shards and run.done < budget:
            found: list[Credit] = []
            more = []
            for slot in shards:
                page = expired_in_slot(slot, now_ms, PAGE)
                run.queries += 1
                run.items_read += len(page)
                fresh = [c for c in page if c.credit_id not in seen]
                seen.update(c.credit_id for c in fresh)
                found.extend(fresh)
                if len(page) == PAGE:
                    if fresh:
                        more.append(slot)
                    else:
                        emptied = False  # the index still lists what we expired: next run
            if found and not expire(found):
                emptied = False
            shards = more
        return emptied and not shards

    over_hours(watermarks, run, now_ms, empty_hour)
