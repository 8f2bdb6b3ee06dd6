"""The fraud detectors at work: fold what meters did into their watch, flag what it reveals.

Off the ingest path: the registry's stream delivers, per meter and in order,
each accepted reading (the meter's record moving to a new counter) and each
reading refused for a bad signature. For each meter in a batch, one atomic
write stores its new watch state with what it adds to its peer cells and to
the replay index (``chalicelib.domain.fraud`` says what they are); the
suspicions at or above the flag threshold become automatic flags (no bond).

Flags are raised before the state is stored. A crash in between redelivers
the batch: the readings are observed again from the stored state and raise
the same flags, which find their disputes already flagged by that detector
(AlreadyExists) and change nothing. Cost per batch and meter: the meter's
state, its provider (for capacity, type and place), the peer cells of the
hours it closed and the replay entries of the days it closed; nothing reads
history.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from chalicelib.domain import fraud
from chalicelib.domain.errors import AlreadyExists, ConcurrentUpdate, DomainError, StorageBusy
from chalicelib.domain.fraud import (
    DayCurve,
    MeterContext,
    MintedReading,
    PeerHistogram,
    Suspicion,
    WatchState,
)
from chalicelib.services.dependencies import Dependencies, retry_on_conflict
from chalicelib.services.disputes import flag_by_detector
from chalicelib.services.ports import UnitOfWork

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeterEvent:
    """An accepted reading of a meter, or (``reading`` None) one refused for its signature."""

    meter_address: str
    at_ms: int
    reading: MintedReading | None = None
    provider_id: str | None = None  # when the event names it (saves reading the meter)


@dataclass
class WatchRun:
    meters: int = 0
    readings: int = 0
    bad_signatures: int = 0
    suspicions: int = 0
    flags: Counter[str] = field(default_factory=Counter)  # opened, joined, or why not

    def as_log(self) -> dict[str, Any]:
        return {
            "meters": self.meters,
            "readings": self.readings,
            "bad_signatures": self.bad_signatures,
            "suspicions": self.suspicions,
            "flags": dict(self.flags),
        }


class SharedWatch(Protocol):
    """What the cross-meter detectors share: peer cells and the replay index."""

    def cell(self, key: str) -> PeerHistogram | None: ...

    def add(self, key: str, capacity_factor_bps: int) -> None: ...

    def entry(self, key: str) -> tuple[DayCurve, ...]: ...

    def remember(self, key: str, curve: DayCurve) -> None: ...


class _Shared:
    """Peer cells and replay entries read once per batch, with this batch's changes."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.cells: dict[str, PeerHistogram | None] = {}
        self.added: list[tuple[str, int]] = []
        self.curves: dict[str, tuple[tuple[DayCurve, ...], int]] = {}
        self.changed: set[str] = set()

    def cell(self, key: str) -> PeerHistogram | None:
        if key not in self.cells:
            self.cells[key] = self.uow.watch.peers(key)
        return self.cells[key]

    def add(self, key: str, capacity_factor_bps: int) -> None:
        self.cells[key] = (self.cell(key) or PeerHistogram()).adding(capacity_factor_bps)
        self.added.append((key, capacity_factor_bps))

    def entry(self, key: str) -> tuple[DayCurve, ...]:
        if key not in self.curves:
            self.curves[key] = self.uow.watch.curves(key)
        return self.curves[key][0]

    def remember(self, key: str, curve: DayCurve) -> None:
        curves, version = self.curves[key]
        self.curves[key] = (fraud.remember(curves, curve), version)
        self.changed.add(key)

    def stage(self) -> None:
        for key, capacity_factor_bps in self.added:
            self.uow.watch.add_to_peers(key, capacity_factor_bps)
        for key in sorted(self.changed):
            curves, version = self.curves[key]
            self.uow.watch.save_curves(key, curves, version)


def fold(
    state: WatchState,
    events: Sequence[MeterEvent],
    context: MeterContext,
    shared: SharedWatch,
) -> tuple[WatchState, list[Suspicion]]:
    """A meter's watch after ``events`` (in order), and what it found."""
    found: list[Suspicion] = []
    for event in events:
        if event.reading is None:
            state, suspicions = fraud.observe_bad_signature(
                state, context.meter_address, event.at_ms
            )
            found.extend(suspicions)
            continue
        observation = fraud.observe(state, event.reading, context)
        state = observation.state
        found.extend(observation.suspicions)
        if context.energy_type in fraud.PEER_RULES:
            cell = fraud.peer_cell(context)
            for bucket in observation.closed_hours:
                shared.add(fraud.peer_key(cell, bucket.hour), bucket.capacity_factor_bps)
                # An hour after it closed, every peer reading each 15 minutes has added to it.
                before = shared.cell(fraud.peer_key(cell, bucket.hour - 1))
                if before is not None and before.total:
                    state, suspicions = fraud.peer_review(state, context, bucket.hour - 1, before)
                    found.extend(suspicions)
        for curve in observation.closed_days:
            keys = curve.keys()
            candidates = {(c.meter_address, c.day): c for k in keys for c in shared.entry(k)}
            suspicion = fraud.replay_check(curve, candidates.values())
            if suspicion is not None:
                found.append(suspicion)
            for key in keys:
                shared.remember(key, curve)
    return state, [s for s in found if s.flags]


def watch_meters(deps: Dependencies, events: Sequence[MeterEvent]) -> WatchRun:
    """Run the detectors over a batch of meter events; raise their flags."""
    run = WatchRun()
    by_meter: dict[str, list[MeterEvent]] = {}
    for event in events:
        by_meter.setdefault(event.meter_address, []).append(event)
    for meter_address, meter_events in by_meter.items():
        run.meters += 1
        run.readings += sum(1 for e in meter_events if e.reading is not None)
        run.bad_signatures += sum(1 for e in meter_events if e.reading is None)
        retry_on_conflict(partial(_watch_meter, deps, meter_address, meter_events, run))
    if run.suspicions:
        logger.info("fraud watch", extra={"watch_run": run.as_log()})
    return run


def _watch_meter(
    deps: Dependencies, meter_address: str, events: Sequence[MeterEvent], run: WatchRun
) -> None:
    uow = deps.unit_of_work()
    provider_id = next((e.provider_id for e in events if e.provider_id is not None), None)
    if provider_id is None:
        meter = uow.meters.get(meter_address)
        provider_id = meter.provider_id if meter is not None else None
    provider = uow.providers.get(provider_id) if provider_id is not None else None
    if provider is None:
        return  # a reading of a meter the registry does not know was never minted
    before, version = uow.watch.state(meter_address)
    shared = _Shared(uow)
    state, suspicions = fold(before, events, MeterContext.of(provider), shared)
    flags = Counter(_raise(deps, suspicion) for suspicion in suspicions)
    if state == before and not shared.added and not shared.changed:
        return  # a redelivered batch: nothing to write
    uow.watch.save_state(meter_address, state, version)
    shared.stage()
    uow.commit()
    # Counted once the watch moved on: a retried attempt raised them again.
    run.suspicions += len(suspicions)
    run.flags.update(flags)


def _raise(deps: Dependencies, suspicion: Suspicion) -> str:
    """Flag a suspicion; what happened, as a word for the run's counters."""
    try:
        dispute = flag_by_detector(deps, suspicion.flag(deps.now_ms()), suspicion.subject())
    except AlreadyExists:
        return "already_flagged"
    except (StorageBusy, ConcurrentUpdate):
        # Not a refusal of the flag: the database's moment. Raised before the
        # watch moves on (_watch_meter), so the batch is retried and the
        # detectors raise the flag again, where a refusal would lose it.
        raise
    except DomainError as refused:
        logger.warning(
            "an automatic flag was not raised",
            extra={
                "detector": suspicion.detector,
                "meter": suspicion.meter_address,
                "reason": refused.reason,
            },
        )
        return str(refused.reason)
    logger.info(
        "automatic flag",
        extra={
            "detector": suspicion.detector,
            "dispute_id": dispute.dispute_id,
            "score_bps": suspicion.score_bps,
        },
    )
    return "opened" if len(dispute.flags) == 1 else "joined"
