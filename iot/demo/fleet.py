"""The demo market `make run` starts: prosumers with real meters, buyers, validators and cheaters.

    python -m iot.demo.fleet --rpc-url http://127.0.0.1:8000/rpc --state-dir .local \\
        --mqtt-port 8883 --meters 12 --buyers 4 --validators 5 --cheaters 2

Everything goes through the product's own doors, as a real participant's would:

- accounts are opened and funded over the JSON-RPC API (the operator's key
  from the state directory signs the deposits); five validators are granted
  their role by the operator and stake 1,500 BLOCK each
  (``energy.stakeAsValidator``); every prosumer registers a provider with a
  stake;
- every meter is provisioned as an IoT thing with a certificate from the local
  CA (``iot.provision``, against moto's IoT), and runs the real meter client
  (``iot.meter.MeterClient``: awsiotsdk over mTLS to mosquitto), measuring a
  generation profile from ``iot.demo.profiles`` with its own variation
  (``Varied``: derating, the panels' lean, its own local weather), so that no
  two meters report scaled copies of each other;
- solar meters stand at their weather station (Greensboro, NC and Sand Point,
  AK) and run in real time, so the sun the fraud detectors compute at their
  registered location is the sun their profile saw. ``--speedup`` runs the
  weather of wind and hydro faster than real time (a day in 24 minutes at
  60x), and of batteries at most 12x (so that a battery's idle hours between
  discharges still last more than an hour: a rest, to the detectors), while
  readings keep real timestamps and power never exceeds capacity;
- one meter is faulty: now and then a reading with a bad signature, or a
  counter jump no generator could make, arrives on its channel; the
  marketplace refuses and records them (``energy.getRejections``) and three
  bad signatures within 24 hours are flagged;
- ``--cheaters`` more prosumers cheat (``iot.demo.cheaters``): a solar meter
  on the night side of the Earth reporting a generator's output, a hydro
  meter reporting 4 % above its capacity;
- validators (``iot.demo.validators``) find the disputes they were drawn for,
  re-check each from public data and vote; a quorum decides, a guilty
  verdict slashes the provider's stake;
- buyers browse ``energy.getOffers`` and buy within their budgets; some
  settle early, the rest are settled by the scheduled job.

Keys of the demo accounts are kept in ``<state-dir>/demo/keys`` (hex seeds),
so ``python -m energy_client --keys .local/demo/keys`` can act as them.
Progress is written to ``<state-dir>/demo/status.json`` every few seconds:
meters, buyers, validators' votes and the disputes (opened, decided, slashed),
and each dispute's progress is logged as it happens.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import boto3

from chalicelib.domain import fraud
from chalicelib.domain.providers import provider_id_for
from energy_client import keyfiles
from energy_client.rpc_client import MarketplaceClient, RpcError, Signer, http_transport
from infra.emulation import OFFLINE_ACCOUNT_ID
from iot.ca import CertificateAuthority
from iot.demo import cheaters
from iot.demo.cheaters import FaultyMeter, NightGenerator, OverCapacity, night_sites
from iot.demo.profiles import (
    GREENSBORO_NC,
    SAND_POINT_AK,
    Variation,
    Varied,
    bundled_weather,
    source_for,
)
from iot.demo.tally import DisputeTally
from iot.demo.validators import ValidatorBot
from iot.lifecycle import set_on_signals, write_status
from iot.meter import GenerationSource, MeterClient, MeterError
from iot.provision import MeterCredentials, ProvisioningError, provision_meter

logger = logging.getLogger("iot.demo")

BLOCK: Final = 1_000_000
DEMO_DIR: Final = "demo"
STATUS_SECONDS: Final = 2.0
TALLY_SECONDS: Final = 5.0
# The vote that decides a guilty dispute revokes its credits in the same call:
# an hour of 30-second readings takes longer than the usual 10 seconds locally.
VOTE_TIMEOUT_SECONDS: Final = 120.0
PROVIDER_STAKE: Final = 1_500 * BLOCK
# Validators: the panel draw counts a stake of at least 1,000 BLOCK.
VALIDATOR_DEPOSIT_BLOCK: Final = 2_000
VALIDATOR_STAKE: Final = 1_500 * BLOCK
# A battery idles about 20 hours of its weather between discharges; at 12x
# that is over an hour and a half of real time: a rest, to the detectors
# (``battery_over_storage`` wants an hour under 10 % of capacity between
# runs). Faster, a battery would export days of energy without a rest.
BATTERY_MAX_SPEEDUP: Final = 12
# Meters of a site stand apart, within its peer cell (a 3-character geohash).
LOCATION_JITTER_DEG: Final = 0.15


@dataclass(frozen=True)
class Site:
    """Where a kind of demo prosumer stands, and what its plants are like."""

    energy_type: str
    jurisdiction: str
    latitude: float
    longitude: float
    capacity_kw: tuple[int, int]
    price: tuple[str, str]  # BLOCK/kWh, the range a price is drawn from
    # Solar stands at its weather station: the registered place is where its sun shines.
    weather: Path | None = None


SITES: Final = (
    Site("solar", "US_NC", 36.100, -79.950, (5, 20), ("0.07", "0.10"), GREENSBORO_NC),
    Site("wind", "DK", 55.6761, 12.5683, (150, 500), ("0.05", "0.08")),
    Site("hydro", "NO", 60.3913, 5.3221, (300, 800), ("0.04", "0.07")),
    Site("battery", "DE", 52.5200, 13.4050, (10, 40), ("0.12", "0.18")),
    Site("solar", "US_AK", 55.317, -160.517, (5, 20), ("0.06", "0.09"), SAND_POINT_AK),
    Site("wind", "GB", 57.4778, -4.2247, (200, 800), ("0.05", "0.09")),
    Site("hydro", "US_WA", 47.6062, -122.3321, (200, 600), ("0.04", "0.06")),
    Site("battery", "US_TX", 30.2672, -97.7431, (20, 60), ("0.11", "0.16")),
)
# The over-capacity cheater: a run-of-river plant in western Norway.
OVER_CAPACITY_SITE: Final = Site("hydro", "NO", 61.2297, 7.1023, (300, 600), ("0.04", "0.06"))
NIGHT_SOLAR_KW: Final = (15, 20)


@dataclass(frozen=True)
class ProviderPlan:
    owner: str
    meter_address: str
    energy_type: str
    jurisdiction: str
    latitude: str
    longitude: str
    capacity_kw: int
    price_per_kwh: Decimal
    seed: int
    weather: Path | None = None
    strategy: str | None = None  # a cheater's (iot.demo.cheaters); None: honest

    @property
    def provider_id(self) -> str:
        return provider_id_for(self.owner, self.meter_address)

    @property
    def capacity_w(self) -> int:
        return self.capacity_kw * 1000

    @property
    def micro_degrees(self) -> tuple[int, int]:
        return _micro(self.latitude), _micro(self.longitude)

    def registration(self, meter_public_key: str) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "display_name": f"{self.energy_type.title()} {self.jurisdiction} #{self.seed:02d}",
            "capacity_kwh": self.capacity_kw,
            "price_per_kwh": self.price_per_kwh,
            "meter_address": self.meter_address,
            "jurisdiction": self.jurisdiction,
            "stake": PROVIDER_STAKE,
            "energy_type": self.energy_type,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "meter_public_key": meter_public_key,
        }


def _micro(degrees: str) -> int:
    return int(Decimal(degrees).scaleb(6))


def _nearby(site: Site, chooser: random.Random) -> tuple[str, str]:
    """A place within ``LOCATION_JITTER_DEG`` of the site, in the site's peer cell."""
    cell = fraud.geohash(
        round(site.latitude * 1e6), round(site.longitude * 1e6), fraud.PEER_CELL_PRECISION
    )
    for _ in range(100):
        latitude = site.latitude + chooser.uniform(-LOCATION_JITTER_DEG, LOCATION_JITTER_DEG)
        longitude = site.longitude + chooser.uniform(-LOCATION_JITTER_DEG, LOCATION_JITTER_DEG)
        where = (f"{latitude:.4f}", f"{longitude:.4f}")
        if fraud.geohash(_micro(where[0]), _micro(where[1]), fraud.PEER_CELL_PRECISION) == cell:
            return where
    return f"{site.latitude:.4f}", f"{site.longitude:.4f}"


def _plan(
    site: Site,
    number: int,
    chooser: random.Random,
    *,
    where: tuple[str, str] | None = None,
    jurisdiction: str | None = None,
    capacity_kw: tuple[int, int] | None = None,
    strategy: str | None = None,
) -> ProviderPlan:
    cheap, dear = site.price
    cents = chooser.randint(int(Decimal(cheap) * 1000), int(Decimal(dear) * 1000))
    low, high = capacity_kw or site.capacity_kw
    latitude, longitude = where or _nearby(site, chooser)
    return ProviderPlan(
        owner=f"prosumer{number:02d}.demo",
        meter_address=f"demo_{site.energy_type}_{number:03d}",
        energy_type=site.energy_type,
        jurisdiction=jurisdiction or site.jurisdiction,
        latitude=latitude,
        longitude=longitude,
        capacity_kw=chooser.randint(low, high),
        price_per_kwh=Decimal(cents).scaleb(-3),
        seed=number,
        weather=site.weather,
        strategy=strategy,
    )


def plan_fleet(meters: int, seed: int = 7) -> list[ProviderPlan]:
    """``meters`` honest providers over every energy type and several jurisdictions; deterministic."""
    chooser = random.Random(seed)  # noqa: S311 - a demo's variety, not a secret
    return [_plan(SITES[(n - 1) % len(SITES)], n, chooser) for n in range(1, meters + 1)]


def plan_cheaters(count: int, now_ms: int, first: int, seed: int = 7) -> list[ProviderPlan]:
    """``count`` cheating providers, numbered from ``first``: the strategies in turn.

    A night-side solar cheater registers where the sun will stay down longest
    from ``now_ms`` (a second one at the next such place).
    """
    chooser = random.Random(seed * 7919 + count)  # noqa: S311
    dark = night_sites(now_ms)
    plans = []
    for n in range(count):
        strategy = cheaters.STRATEGIES[n % len(cheaters.STRATEGIES)]
        number = first + n
        if strategy == cheaters.SOLAR_AT_NIGHT:
            place = dark[(n // len(cheaters.STRATEGIES)) % len(dark)]
            site = Site("solar", place.jurisdiction, 0.0, 0.0, NIGHT_SOLAR_KW, ("0.06", "0.09"))
            plans.append(
                _plan(
                    site,
                    number,
                    chooser,
                    where=(place.latitude, place.longitude),
                    strategy=strategy,
                )
            )
        else:
            plans.append(_plan(OVER_CAPACITY_SITE, number, chooser, strategy=strategy))
    return plans


@dataclass(frozen=True)
class Accelerated:
    """A generation profile whose weather runs ``speedup`` times faster than the clock.

    Power at real instant t is the profile's power at weather time
    ``epoch + (t - epoch) * speedup``, so it never exceeds capacity and the
    readings' real timestamps stay plausible to the marketplace.
    """

    profile: GenerationSource
    speedup: int
    epoch_ms: int
    weather_epoch_ms: int

    def _weather_ms(self, real_ms: int) -> int:
        return self.weather_epoch_ms + (real_ms - self.epoch_ms) * self.speedup

    def watt_milliseconds(self, start_ms: int, end_ms: int) -> int:
        energy = self.profile.watt_milliseconds(
            self._weather_ms(start_ms), self._weather_ms(end_ms)
        )
        return energy // self.speedup


def speedup_for(energy_type: str, speedup: int) -> int:
    """How much faster than the clock a type's weather runs in the demo.

    Solar runs in real time: the detectors compute the sun at the registered
    place and the real time (``solar_at_night``), which must be the sun the
    profile saw. Batteries at most ``BATTERY_MAX_SPEEDUP``: they must rest.
    """
    if energy_type == "solar":
        return 1
    if energy_type == "battery":
        return min(speedup, BATTERY_MAX_SPEEDUP)
    return speedup


def honest_source(
    plan: ProviderPlan, speedup: int, epoch_ms: int, weather_epoch_ms: int
) -> GenerationSource:
    """What an honest meter measures: its profile, at its speed, with its own variation."""
    weather = bundled_weather(plan.weather) if plan.weather is not None else None
    profile = source_for(plan.energy_type, plan.capacity_w, seed=plan.seed, weather=weather)
    speed = speedup_for(plan.energy_type, speedup)
    measured: GenerationSource = (
        profile if speed == 1 else Accelerated(profile, speed, epoch_ms, weather_epoch_ms)
    )
    return Varied(measured, Variation.for_meter(plan.energy_type, plan.seed, float(plan.longitude)))


def cheater_source(plan: ProviderPlan) -> GenerationSource:
    """What a cheater's meter reports (iot.demo.cheaters)."""
    if plan.strategy == cheaters.SOLAR_AT_NIGHT:
        return NightGenerator(plan.capacity_w, *plan.micro_degrees, share=cheaters.NIGHT_SHARE)
    if plan.strategy == cheaters.OVER_CAPACITY:
        return OverCapacity(plan.capacity_w)
    raise ValueError(f"no such cheat: {plan.strategy!r}")


class Keyring:
    """The demo accounts' keys, one hex seed file each (created once, mode 0600)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def signer(self, name: str) -> Signer:
        return Signer(
            name, keyfiles.load_or_create_key(self.directory / f"{name}{keyfiles.KEY_SUFFIX}")
        )


@dataclass
class BuyerStats:
    purchases: int = 0
    wh: int = 0
    settled_early: int = 0
    refusals: Counter[str] = field(default_factory=Counter)


class Buyer:
    """Browses offers and buys within a budget; settles early now and then."""

    def __init__(self, api: MarketplaceClient, signer: Signer, *, seed: int, pause: float) -> None:
        self.api = api
        self.signer = signer
        self.random = random.Random(seed)  # noqa: S311
        self.pause = pause
        self.stats = BuyerStats()

    def step(self) -> None:
        filters: dict[str, Any] = {"limit": 20}
        if self.random.random() < 0.5:
            filters["energy_type"] = self.random.choice(["solar", "wind", "hydro", "battery"])
        offers = self.api.call("energy.getOffers", filters)["offers"]
        if not offers:
            return
        offer = self.random.choice(offers)
        available_wh = int(offer["available_wh"])
        balance = int(self.api.call("energy.getAccount", {"name": self.signer.account})["balance"])
        price = int(offer["price_micro_block_per_kwh"])
        affordable_wh = balance * 1000 // max(price, 1)
        wh = min(available_wh, affordable_wh, self.random.randint(100, 5_000))
        if wh < 100:
            return
        try:
            purchase = self.api.call(
                "energy.purchaseEnergy",
                {
                    "provider_id": offer["provider_id"],
                    "kwh_amount": Decimal(wh).scaleb(-3),
                    "max_price_per_kwh": offer["price_per_kwh"],
                    "idempotency_key": uuid.uuid4().hex,
                },
                self.signer,
            )
        except RpcError as refused:
            self.stats.refusals[refused.reason or str(refused.code)] += 1
            return
        self.stats.purchases += 1
        self.stats.wh += wh
        if self.random.random() < 0.3:
            self.api.call(
                "energy.settle", {"transaction_id": purchase["transaction_id"]}, self.signer
            )
            self.stats.settled_early += 1

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.random.uniform(0.5, 1.5) * self.pause):
            try:
                self.step()
            except RpcError as refused:
                self.stats.refusals[refused.reason or str(refused.code)] += 1
            except OSError as exc:  # the API restarting: try again later
                self.stats.refusals["unreachable"] += 1
                logger.warning("%s: %s", self.signer.account, exc)


class DemoMarket:
    def __init__(
        self,
        *,
        api: MarketplaceClient,
        state_dir: Path,
        stack_name: str,
        mqtt_port: int,
        meters: int,
        buyers: int,
        interval: float,
        speedup: int,
        buyer_pause: float,
        faulty_every: float,
        validators: int = 5,
        validator_pause: float = 5.0,
        cheaters: int = 0,
        validator_api: MarketplaceClient | None = None,
        seed: int = 7,
    ) -> None:
        self.api = api
        self.validator_api = validator_api or api
        self.state_dir = state_dir
        self.demo_dir = state_dir / DEMO_DIR
        self.keyring = Keyring(self.demo_dir / "keys")
        self.stack_name = stack_name
        self.mqtt_port = mqtt_port
        self.started_at = time.time()
        self.plans = plan_fleet(meters, seed)
        self.cheater_plans = plan_cheaters(cheaters, int(self.started_at * 1000), meters + 1, seed)
        self.buyer_count = buyers
        self.validator_count = validators
        self.validator_pause = validator_pause
        self.interval = interval
        self.speedup = speedup
        self.buyer_pause = buyer_pause
        self.faulty_every = faulty_every
        self.seed = seed
        self.meters: list[MeterClient] = []
        self.cheater_meters: list[MeterClient] = []
        self.buyers: list[Buyer] = []
        self.validators: list[ValidatorBot] = []
        self.faulty: FaultyMeter | None = None
        self.tally = DisputeTally(api, self.cheaters())
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def status_path(self) -> Path:
        return self.demo_dir / "status.json"

    @property
    def faulty_plan(self) -> ProviderPlan | None:
        """The fleet's faulty meter: the first, when forged readings are on."""
        return self.plans[0] if self.plans and self.faulty_every > 0 else None

    def cheaters(self) -> dict[str, str]:
        """Every meter that cheats, by address, with its strategy (the faulty one too)."""
        found = {plan.meter_address: str(plan.strategy) for plan in self.cheater_plans}
        faulty = self.faulty_plan
        if faulty is not None:
            found[faulty.meter_address] = cheaters.BAD_SIGNATURES
        return found

    # -- set-up ----------------------------------------------------------------------

    def _account(self, name: str, block: int, operator: Signer) -> Signer:
        signer = self.keyring.signer(name)
        try:
            self.api.create_account(signer)
        except RpcError as refused:
            if refused.reason != "already_exists":
                raise
            return signer
        if block:
            self.api.deposit(operator, name, block * BLOCK, f"demo-deposit-{name}-{block}")
        return signer

    def _validator(self, name: str, operator: Signer) -> Signer:
        """An account the operator makes a validator, staked for the panel draw."""
        signer = self._account(name, VALIDATOR_DEPOSIT_BLOCK, operator)
        self.api.call("energy.grantRole", {"account": name, "role": "validator"}, operator)
        staked = int(self.api.call("energy.getAccount", {"name": name}).get("validator_stake", 0))
        if staked < VALIDATOR_STAKE:
            self.api.call(
                "energy.stakeAsValidator", {"amount_micro_block": VALIDATOR_STAKE - staked}, signer
            )
        return signer

    def set_up(self) -> None:
        operator_seed = (self.state_dir / "operator.key").read_text(encoding="ascii").strip()
        operator = Signer.from_seed_hex("operator", operator_seed)
        # Validators first: an automatic flag needs a panel of three to open a dispute.
        for number in range(1, self.validator_count + 1):
            signer = self._validator(f"validator{number:02d}.demo", operator)
            self.validators.append(
                ValidatorBot(
                    self.validator_api,
                    signer,
                    pause=self.validator_pause,
                    seed=self.seed * 100 + number,
                )
            )
        region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        iot = boto3.client("iot", region_name=region)
        ca = CertificateAuthority.load_or_create(self.state_dir / "ca")
        for plan in [*self.plans, *self.cheater_plans]:
            owner = self._account(plan.owner, 2_000, operator)
            directory = self.demo_dir / "meters" / plan.meter_address
            # A new local market (moto starts empty): the meter starts its register afresh.
            (directory / "state.json").unlink(missing_ok=True)
            credentials = provision_meter(
                iot,
                meter_address=plan.meter_address,
                provider_id=plan.provider_id,
                out_dir=directory,
                stack_name=self.stack_name,
                region=region,
                account_id=OFFLINE_ACCOUNT_ID,
                ca=ca,
                port=self.mqtt_port,
                force=True,
            )
            try:
                self.api.call(
                    "energy.registerProvider", plan.registration(credentials.public_key), owner
                )
            except RpcError as refused:
                if refused.reason != "already_exists":
                    raise
        for number in range(1, self.buyer_count + 1):
            signer = self._account(f"buyer{number:02d}.demo", 5_000, operator)
            self.buyers.append(
                Buyer(self.api, signer, seed=self.seed * 1000 + number, pause=self.buyer_pause)
            )

    # -- running ------------------------------------------------------------------------

    def _meter(self, plan: ProviderPlan, source: GenerationSource) -> MeterClient:
        credentials = MeterCredentials.load(self.demo_dir / "meters" / plan.meter_address)
        meter = MeterClient(credentials, source)
        meter.connect()
        self._spawn(meter.run, int(self.interval * 1000), self.stop, name=plan.meter_address)
        return meter

    def start(self) -> None:
        now_ms = time.time_ns() // 1_000_000
        # The accelerated weather starts at 11:00 UTC today (early morning at the
        # weather stations, in US time zones), so a windy or a sunny spell comes soon.
        weather_epoch_ms = now_ms - now_ms % 86_400_000 + 11 * 3_600_000
        for plan in self.plans:
            source = honest_source(plan, self.speedup, now_ms, weather_epoch_ms)
            self.meters.append(self._meter(plan, source))
        faulty = self.faulty_plan
        if faulty is not None:
            self.faulty = FaultyMeter(self.meters[0], faulty.capacity_w, self.faulty_every)
            self._spawn(self.faulty.run, self.stop, name="faulty-meter")
        for plan in self.cheater_plans:
            self.cheater_meters.append(self._meter(plan, cheater_source(plan)))
            logger.info(
                "cheater %s (%s): %s %d kW at %s, %s",
                plan.meter_address,
                plan.owner,
                plan.energy_type,
                plan.capacity_kw,
                f"{plan.latitude}, {plan.longitude}",
                plan.strategy,
            )
        for buyer in self.buyers:
            self._spawn(buyer.run, self.stop, name=buyer.signer.account)
        for validator in self.validators:
            self._spawn(validator.run, self.stop, name=validator.name)

    def _spawn(self, target: Any, *args: Any, name: str) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def status(self) -> dict[str, Any]:
        stats = [m.stats for m in self.meters]
        cheater_stats = [m.stats for m in self.cheater_meters]
        refusals: Counter[str] = Counter()
        for buyer in self.buyers:
            refusals.update(buyer.stats.refusals)
        votes: Counter[str] = Counter()
        severities: Counter[str] = Counter()
        vote_refusals: Counter[str] = Counter()
        for validator in self.validators:
            votes.update(validator.stats.votes)
            severities.update(validator.stats.severities)
            vote_refusals.update(validator.stats.refusals)
        cheating = self.cheaters()
        addresses = [m.credentials.meter_address for m in self.meters]
        return {
            "started_at": self.started_at,
            "updated_at": time.time(),
            "speedup": self.speedup,
            "speedups": {
                kind: speedup_for(kind, self.speedup)
                for kind in ("solar", "wind", "hydro", "battery")
            },
            "interval_seconds": self.interval,
            # The --meters fleet (the faulty meter first); the cheaters' own meters below.
            "meters": {
                "count": len(self.meters),
                "connected": sum(m.connected for m in self.meters),
                "produced": sum(s.produced for s in stats),
                "acknowledged": sum(s.acknowledged for s in stats),
                "refused_by_broker": sum(s.refused for s in stats),
                "send_failures": sum(s.send_failures for s in stats),
                "pending": sum(len(m.pending) for m in self.meters),
                "forged": dict(self.faulty.sent) if self.faulty else {},
                "addresses": addresses,
                "honest": [a for a in addresses if a not in cheating],
                "faulty": self.faulty_plan.meter_address if self.faulty_plan else None,
            },
            "cheaters": {
                "count": len(cheating),
                # The --cheaters' own meters (the faulty meter is one of the fleet's).
                "own_meters": {
                    "count": len(self.cheater_meters),
                    "connected": sum(m.connected for m in self.cheater_meters),
                    "produced": sum(s.produced for s in cheater_stats),
                    "acknowledged": sum(s.acknowledged for s in cheater_stats),
                },
                "meters": {
                    plan.meter_address: {
                        "strategy": cheating[plan.meter_address],
                        "owner": plan.owner,
                        "provider_id": plan.provider_id,
                        "energy_type": plan.energy_type,
                        "jurisdiction": plan.jurisdiction,
                        "location": f"{plan.latitude}, {plan.longitude}",
                    }
                    for plan in [*self.plans, *self.cheater_plans]
                    if plan.meter_address in cheating
                },
            },
            "validators": {
                "count": len(self.validators),
                "accounts": [v.name for v in self.validators],
                "stake_micro_block_each": VALIDATOR_STAKE,
                "votes": dict(votes),
                "severities": dict(severities),
                "undecided": sum(v.stats.undecided for v in self.validators),
                "refusals": dict(vote_refusals),
                "unanswered": sum(v.stats.unanswered for v in self.validators),
                "errors": sum(v.stats.errors for v in self.validators),
            },
            "disputes": self.tally.status(),
            "buyers": {
                "count": len(self.buyers),
                "purchases": sum(b.stats.purchases for b in self.buyers),
                "wh": sum(b.stats.wh for b in self.buyers),
                "settled_early": sum(b.stats.settled_early for b in self.buyers),
                "refusals": dict(refusals),
            },
        }

    def write_status(self) -> None:
        write_status(self.status_path, self.status())

    def refresh_tally(self) -> None:
        try:
            self.tally.refresh()
        except (RpcError, OSError) as exc:  # the API restarting: count it, look again later
            self.tally.errors += 1
            logger.warning("disputes: %s", exc)

    def run_until_stopped(self) -> None:
        next_tally = 0.0
        while not self.stop.wait(STATUS_SECONDS):
            if time.monotonic() >= next_tally:
                self.refresh_tally()
                next_tally = time.monotonic() + TALLY_SECONDS
            self.write_status()
        self.write_status()

    def close(self, drain_seconds: float = 6.0) -> None:
        """Stop buying, voting and measuring; send what the meters still hold, then disconnect."""
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        every_meter = [*self.meters, *self.cheater_meters]
        deadline = time.monotonic() + drain_seconds
        for meter in every_meter:
            meter.wait_until_settled(max(0.0, deadline - time.monotonic()))
        for meter in every_meter:
            meter.close()
        self.write_status()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m iot.demo.fleet", description=__doc__)
    parser.add_argument("--rpc-url", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--stack-name", default="energy-marketplace-local")
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--meters", type=int, default=12, help="honest meters (the first faulty)")
    parser.add_argument("--buyers", type=int, default=4)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between readings")
    parser.add_argument(
        "--speedup",
        type=int,
        default=60,
        help="wind and hydro weather runs this much faster (batteries at most 12x, solar 1x)",
    )
    parser.add_argument("--buyer-pause", type=float, default=10.0, help="seconds between buys")
    parser.add_argument(
        "--faulty-every", type=float, default=60.0, help="seconds between forged readings (0: off)"
    )
    parser.add_argument(
        "--validators", type=int, default=5, help="staked validators who vote (3 make a panel)"
    )
    parser.add_argument(
        "--validator-pause", type=float, default=5.0, help="seconds between a validator's looks"
    )
    parser.add_argument(
        "--cheaters",
        type=int,
        default=2,
        help="cheating prosumers: solar at night, over capacity, in turn (0: none)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if (
        min(args.meters, args.buyers, args.validators, args.cheaters) < 0
        or args.interval <= 0
        or args.speedup < 1
    ):
        print(
            "error: --meters/--buyers/--validators/--cheaters >= 0, --interval > 0, --speedup >= 1",
            file=sys.stderr,
        )
        return 2
    if 0 < args.validators < 3:
        logger.warning("fewer than 3 validators: no panel can be drawn, flags will be refused")
    api = MarketplaceClient.over_http(args.rpc_url)
    demo = DemoMarket(
        api=api,
        state_dir=args.state_dir.resolve(),
        stack_name=args.stack_name,
        mqtt_port=args.mqtt_port,
        meters=args.meters,
        buyers=args.buyers,
        interval=args.interval,
        speedup=args.speedup,
        buyer_pause=args.buyer_pause,
        faulty_every=args.faulty_every,
        validators=args.validators,
        validator_pause=args.validator_pause,
        cheaters=args.cheaters,
        validator_api=MarketplaceClient(
            http_transport(args.rpc_url, timeout=VOTE_TIMEOUT_SECONDS), api.marketplace_id
        ),
    )

    set_on_signals(demo.stop)
    try:
        demo.demo_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        demo.set_up()
        demo.start()
    except (RpcError, ProvisioningError, MeterError, OSError) as exc:
        print(f"error: the demo could not start: {exc}", file=sys.stderr)
        demo.close()
        return 1
    logger.info(
        "demo running: %d meters (%d cheating), %d buyers, %d validators; weather of wind and "
        "hydro at %dx, batteries %dx, solar in real time",
        len(demo.meters) + len(demo.cheater_meters),
        len(demo.cheaters()),
        len(demo.buyers),
        len(demo.validators),
        demo.speedup,
        speedup_for("battery", demo.speedup),
    )
    try:
        demo.run_until_stopped()
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
