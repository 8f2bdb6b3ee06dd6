"""What the scheduled jobs share: which hours to read, and a watermark.

Work that falls due is indexed by the hour it falls due in (purchases by
settlement time, credits by expiry). A job reads the hours from its watermark,
the first hour that may still hold work, up to now; it moves the watermark
past every hour it has emptied. So a run reads what is due, and what stayed
due because it could not be done, never the history behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from chalicelib.domain.errors import ConcurrentUpdate
from chalicelib.services.market import Market

logger = logging.getLogger(__name__)

T = TypeVar("T")

HOUR_MS = 3_600_000
# The first run of a job (no watermark yet) looks this far back.
FIRST_RUN_LOOKBACK_HOURS = 48
# An hour is left behind only once it ended this long ago: work is indexed by
# a time taken just before its write commits, so an hour that has just ended
# may still receive an item.
WATERMARK_MARGIN_MS = 10 * 60_000
# Items read per query.
PAGE = 100


@dataclass
class JobRun:
    """What one run did, for its log line and the benchmarks."""

    job: str
    hours_read: int = 0
    queries: int = 0
    items_read: int = 0
    done: int = 0  # purchases settled, credits expired
    failed: int = 0  # left for the next run
    wh: int = 0
    watermark: int | None = None

    def as_log(self) -> dict[str, object]:
        return dict(vars(self))


def hours_to_read(watermark: int | None, now_ms: int) -> range:
    current = now_ms // HOUR_MS
    start = watermark if watermark is not None else current - FIRST_RUN_LOOKBACK_HOURS
    return range(start, current + 1)


def drain(
    run: JobRun,
    budget: int,
    fetch: Callable[[int], Sequence[T]],
    key: Callable[[T], str],
    process: Callable[[Sequence[T]], bool],
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


def move_watermark(
    market: Market, job: str, first_hour: int, emptied_through: int | None, now_ms: int
) -> int:
    """Record that hours up to ``emptied_through`` hold no more work; return the watermark."""
    if emptied_through is None:
        return first_hour
    target = min(emptied_through + 1, (now_ms - WATERMARK_MARGIN_MS) // HOUR_MS)
    if target <= first_hour:
        return first_hour
    uow = market.unit_of_work()
    uow.jobs.advance(job, target)
    try:
        uow.commit()
    except ConcurrentUpdate:
        logger.info("%s: another run moved the watermark first", job)
    return target


def run_over_hours(
    market: Market,
    run: JobRun,
    now_ms: int,
    empty_hour: Callable[[int], bool],
) -> JobRun:
    """Call ``empty_hour`` for each hour from the watermark to now; move the
    watermark past the leading hours it emptied."""
    hours = hours_to_read(market.unit_of_work().jobs.watermark(run.job), now_ms)
    emptied_through: int | None = None
    contiguous = True
    for hour in hours:
        run.hours_read += 1
        emptied = empty_hour(hour)
        if emptied and contiguous:
            emptied_through = hour
        else:
            contiguous = False
    run.watermark = move_watermark(market, run.job, hours.start, emptied_through, now_ms)
    logger.info("scheduled job finished", extra={"job_run": run.as_log()})
    return run
