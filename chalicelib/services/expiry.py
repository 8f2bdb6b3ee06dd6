"""Expiry: credits unsold at their expiry leave the market.

A run takes the credits on sale whose expiry has come from the storage, where
the job left off (the storage reads only what is due, never the history
behind it), and expires them grouped by provider: one transaction takes a
group of credits out of the market and their Wh off the provider's energy on
sale.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import groupby

from chalicelib.domain.credits import Credit, CreditState
from chalicelib.domain.errors import DomainError
from chalicelib.services.dependencies import Dependencies
from chalicelib.services.ports import JobRun

logger = logging.getLogger(__name__)

EXPIRY_JOB = "expiry"
DEFAULT_RUN_BUDGET = 5_000
# Credits per transaction, with the provider's update: well under what one
# commit holds (UnitOfWork.max_writes).
GROUP = 50


def run_expiry(deps: Dependencies, budget: int = DEFAULT_RUN_BUDGET) -> JobRun:
    """The scheduled job: expire every credit on sale whose expiry has come.

    Safe to run twice or concurrently: each credit is expired only if it is
    still on sale with the Wh that was read.
    """
    now_ms = deps.clock() * 1000
    run = JobRun(EXPIRY_JOB)

    def expire_page(credits: Sequence[Credit]) -> bool:
        handled_all = True
        ordered = sorted(credits, key=lambda c: c.provider_id)
        for _, group in groupby(ordered, key=lambda c: c.provider_id):
            batch = list(group)
            for start in range(0, len(batch), GROUP):
                if not _expire_together(deps, batch[start : start + GROUP], run, now_ms):
                    handled_all = False
        return handled_all

    deps.unit_of_work().credits.each_expired(run, now_ms, budget, expire_page)
    logger.info("scheduled job finished", extra={"job_run": run.as_log()})
    return run


def _expire_together(
    deps: Dependencies, credits: Sequence[Credit], run: JobRun, now_ms: int
) -> bool:
    """Expire one provider's credits in one transaction; if any changed since
    it was read (sold, split), fall back to one credit at a time, re-read."""
    uow = deps.unit_of_work()
    for credit in credits:
        uow.credits.expire(credit)
    uow.providers.take_off_market(credits[0].provider_id, sum(c.wh for c in credits))
    try:
        uow.commit()
    except DomainError:
        return all(_expire_one(deps, credit.credit_id, run, now_ms) for credit in credits)
    run.done += len(credits)
    run.wh += sum(c.wh for c in credits)
    return True


def _expire_one(deps: Dependencies, credit_id: str, run: JobRun, now_ms: int) -> bool:
    uow = deps.unit_of_work()
    found = uow.credits.get_many([credit_id])
    if not found or found[0].state != CreditState.AVAILABLE or found[0].expires_at_ms > now_ms:
        return True  # sold or expired meanwhile: nothing left to do
    credit = found[0]
    uow.credits.expire(credit)
    uow.providers.take_off_market(credit.provider_id, credit.wh)
    try:
        uow.commit()
    except DomainError as exc:
        run.failed += 1
        logger.warning("expiry of %s failed: %s", credit_id, exc.reason)
        return False
    run.done += 1
    run.wh += credit.wh
    return True
