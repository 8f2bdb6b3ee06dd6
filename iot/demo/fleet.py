"""The demo market `make run` starts: prosumers with real meters, and buyers.

    python -m iot.demo.fleet --rpc-url http://127.0.0.1:8000/rpc --state-dir .local \\
        --mqtt-port 8883 --meters 12 --buyers 4

Everything goes through the product's own doors, as a real participant's would:

- accounts are opened and funded over the JSON-RPC API (the operator's key
  from the state directory signs the deposits), one validator is granted its
  role, and every prosumer registers a provider with a stake;
- every meter is provisioned as an IoT thing with a certificate from the local
  CA (``iot.provision``, against moto's IoT), and runs the real meter client
  (``iot.meter.MeterClient``: awsiotsdk over mTLS to mosquitto), measuring a
  generation profile from ``iot.demo.profiles``: solar from measured
  irradiance, wind through a turbine power curve, run-of-river hydro, a
  battery that discharges in the evening. ``--speedup`` runs the weather
  faster than real time (a day of sun in 24 minutes at 60x) while readings
  keep real timestamps and power never exceeds capacity;
- one meter is faulty: now and then it also sends a reading with a bad
  signature, or a counter jump no generator could make, which the
  marketplace refuses and records (``energy.getRejections``);
- buyers browse ``energy.getOffers`` and buy within their budgets; some
  settle early, the rest are settled by the scheduled job.

Keys of the demo accounts are kept in ``<state-dir>/demo/keys`` (hex seeds),
so ``python -m energy_client --keys .local/demo/keys`` can act as them.
Progress is written to ``<state-dir>/demo/status.json`` every few seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any, Final

import boto3

from chalicelib.domain import readings
from chalicelib.domain.providers import provider_id_for
from energy_client import keyfiles
from energy_client.rpc_client import MarketplaceClient, RpcError, Signer, encode
from infra.emulation import OFFLINE_ACCOUNT_ID
from iot.ca import CertificateAuthority
from iot.demo.profiles import GenerationProfile, source_for
from iot.lifecycle import write_status
from iot.meter import GenerationSource, MeterClient, MeterError
from iot.provision import MeterCredentials, ProvisioningError, provision_meter

logger = logging.getLogger("iot.demo")

BLOCK: Final = 1_000_000
DEMO_DIR: Final = "demo"
STATUS_SECONDS: Final = 2.0

# (energy type, jurisdiction, latitude, longitude, capacity kW range, price range BLOCK/kWh)
SITES: Final = (
    ("solar", "US_CA", "37.7749", "-122.4194", (5, 20), ("0.07", "0.10")),
    ("wind", "DK", "55.6761", "12.5683", (150, 500), ("0.05", "0.08")),
    ("hydro", "NO", "60.3913", "5.3221", (300, 800), ("0.04", "0.07")),
    ("battery", "DE", "52.5200", "13.4050", (10, 40), ("0.12", "0.18")),
    ("solar", "ES", "37.3891", "-5.9845", (8, 30), ("0.06", "0.09")),
    ("wind", "GB", "57.4778", "-4.2247", (200, 800), ("0.05", "0.09")),
    ("hydro", "US_WA", "47.6062", "-122.3321", (200, 600), ("0.04", "0.06")),
    ("battery", "US_TX", "30.2672", "-97.7431", (20, 60), ("0.11", "0.16")),
)


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

    @property
    def provider_id(self) -> str:
        return provider_id_for(self.owner, self.meter_address)

    def registration(self, meter_public_key: str) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "display_name": f"{self.energy_type.title()} {self.jurisdiction} #{self.seed:02d}",
            "capacity_kwh": self.capacity_kw,
            "price_per_kwh": self.price_per_kwh,
            "meter_address": self.meter_address,
            "jurisdiction": self.jurisdiction,
            "stake": 1_500 * BLOCK,
            "energy_type": self.energy_type,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "meter_public_key": meter_public_key,
        }


def plan_fleet(meters: int, seed: int = 7) -> list[ProviderPlan]:
    """``meters`` providers over every energy type and several jurisdictions; deterministic."""
    chooser = random.Random(seed)  # noqa: S311 - a demo's variety, not a secret
    plans = []
    for number in range(1, meters + 1):
        energy_type, jurisdiction, lat, lon, (low, high), (cheap, dear) = SITES[
            (number - 1) % len(SITES)
        ]
        cents = chooser.randint(int(Decimal(cheap) * 1000), int(Decimal(dear) * 1000))
        plans.append(
            ProviderPlan(
                owner=f"prosumer{number:02d}.demo",
                meter_address=f"demo_{energy_type}_{number:03d}",
                energy_type=energy_type,
                jurisdiction=jurisdiction,
                latitude=lat,
                longitude=lon,
                capacity_kw=chooser.randint(low, high),
                price_per_kwh=Decimal(cents).scaleb(-3),
                seed=number,
            )
        )
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


class FaultyMeter:
    """Sends, besides a meter's real readings, one it should not: every ``every`` seconds."""

    def __init__(self, meter: MeterClient, capacity_w: int, every: float) -> None:
        self.meter = meter
        self.capacity_w = capacity_w
        self.every = every
        self.sent: Counter[str] = Counter()

    def forge(self, kind: str) -> bytes:
        state = self.meter.state
        now_ms = time.time_ns() // 1_000_000
        if kind == "bad_signature":
            payload = readings.signed_payload(
                self.meter.credentials.signing_key(),
                self.meter.credentials.provider_id,
                self.meter.credentials.meter_address,
                state.counter_wh + 1,
                now_ms,
            )
            signature = str(payload["signature"])
            payload["signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
        else:  # a counter jump: ten hours at full power in an instant
            payload = readings.signed_payload(
                self.meter.credentials.signing_key(),
                self.meter.credentials.provider_id,
                self.meter.credentials.meter_address,
                state.counter_wh + self.capacity_w * 10,
                now_ms,
            )
        return encode(payload)

    def run(self, stop: threading.Event) -> None:
        kinds = ["bad_signature", "implausible_jump"]
        turn = 0
        while not stop.wait(self.every):
            kind = kinds[turn % len(kinds)]
            if self.meter.publish_once(self.forge(kind)):
                self.sent[kind] += 1
                turn += 1


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
        seed: int = 7,
    ) -> None:
        self.api = api
        self.state_dir = state_dir
        self.demo_dir = state_dir / DEMO_DIR
        self.keyring = Keyring(self.demo_dir / "keys")
        self.stack_name = stack_name
        self.mqtt_port = mqtt_port
        self.plans = plan_fleet(meters, seed)
        self.buyer_count = buyers
        self.interval = interval
        self.speedup = speedup
        self.buyer_pause = buyer_pause
        self.faulty_every = faulty_every
        self.seed = seed
        self.meters: list[MeterClient] = []
        self.buyers: list[Buyer] = []
        self.faulty: FaultyMeter | None = None
        self.started_at = time.time()
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def status_path(self) -> Path:
        return self.demo_dir / "status.json"

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

    def set_up(self) -> None:
        operator_seed = (self.state_dir / "operator.key").read_text(encoding="ascii").strip()
        operator = Signer.from_seed_hex("operator", operator_seed)
        validator = self._account("validator.demo", 2_000, operator)
        self.api.call(
            "energy.grantRole", {"account": validator.account, "role": "validator"}, operator
        )
        region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        iot = boto3.client("iot", region_name=region)
        ca = CertificateAuthority.load_or_create(self.state_dir / "ca")
        for plan in self.plans:
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

    def start(self) -> None:
        now_ms = time.time_ns() // 1_000_000
        # The weather starts at 11:00 UTC today (early morning at the weather
        # stations, in US time zones), so the sun rises soon after a start.
        weather_epoch_ms = now_ms - now_ms % 86_400_000 + 11 * 3_600_000
        for plan in self.plans:
            credentials = MeterCredentials.load(self.demo_dir / "meters" / plan.meter_address)
            profile: GenerationProfile = source_for(
                plan.energy_type, plan.capacity_kw * 1000, seed=plan.seed
            )
            source = Accelerated(profile, self.speedup, now_ms, weather_epoch_ms)
            meter = MeterClient(credentials, source)
            meter.connect()
            self.meters.append(meter)
            self._spawn(meter.run, int(self.interval * 1000), self.stop, name=plan.meter_address)
        if self.meters and self.faulty_every > 0:
            faulty_plan = self.plans[0]
            self.faulty = FaultyMeter(
                self.meters[0], faulty_plan.capacity_kw * 1000, self.faulty_every
            )
            self._spawn(self.faulty.run, self.stop, name="faulty-meter")
        for buyer in self.buyers:
            self._spawn(buyer.run, self.stop, name=buyer.signer.account)

    def _spawn(self, target: Any, *args: Any, name: str) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def status(self) -> dict[str, Any]:
        meters = [m.stats for m in self.meters]
        refusals: Counter[str] = Counter()
        for buyer in self.buyers:
            refusals.update(buyer.stats.refusals)
        return {
            "started_at": self.started_at,
            "updated_at": time.time(),
            "speedup": self.speedup,
            "interval_seconds": self.interval,
            "meters": {
                "count": len(self.meters),
                "connected": sum(m.connected for m in self.meters),
                "produced": sum(s.produced for s in meters),
                "acknowledged": sum(s.acknowledged for s in meters),
                "refused_by_broker": sum(s.refused for s in meters),
                "send_failures": sum(s.send_failures for s in meters),
                "pending": sum(len(m.pending) for m in self.meters),
                "forged": dict(self.faulty.sent) if self.faulty else {},
                "addresses": [m.credentials.meter_address for m in self.meters],
            },
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

    def run_until_stopped(self) -> None:
        while not self.stop.wait(STATUS_SECONDS):
            self.write_status()
        self.write_status()

    def close(self, drain_seconds: float = 6.0) -> None:
        """Stop buying and measuring; send what the meters still hold, then disconnect."""
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        deadline = time.monotonic() + drain_seconds
        for meter in self.meters:
            meter.wait_until_settled(max(0.0, deadline - time.monotonic()))
        for meter in self.meters:
            meter.close()
        self.write_status()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m iot.demo.fleet", description=__doc__)
    parser.add_argument("--rpc-url", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--stack-name", default="energy-marketplace-local")
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--meters", type=int, default=12)
    parser.add_argument("--buyers", type=int, default=4)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between readings")
    parser.add_argument("--speedup", type=int, default=60, help="weather runs this much faster")
    parser.add_argument("--buyer-pause", type=float, default=10.0, help="seconds between buys")
    parser.add_argument(
        "--faulty-every", type=float, default=120.0, help="seconds between forged readings (0: off)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.meters < 0 or args.buyers < 0 or args.interval <= 0 or args.speedup < 1:
        print("error: --meters/--buyers >= 0, --interval > 0, --speedup >= 1", file=sys.stderr)
        return 2
    demo = DemoMarket(
        api=MarketplaceClient.over_http(args.rpc_url),
        state_dir=args.state_dir.resolve(),
        stack_name=args.stack_name,
        mqtt_port=args.mqtt_port,
        meters=args.meters,
        buyers=args.buyers,
        interval=args.interval,
        speedup=args.speedup,
        buyer_pause=args.buyer_pause,
        faulty_every=args.faulty_every,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        demo.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        demo.demo_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        demo.set_up()
        demo.start()
    except (RpcError, ProvisioningError, MeterError, OSError) as exc:
        print(f"error: the demo could not start: {exc}", file=sys.stderr)
        demo.close()
        return 1
    logger.info(
        "demo running: %d meters, %d buyers, weather at %dx",
        len(demo.meters),
        len(demo.buyers),
        demo.speedup,
    )
    try:
        demo.run_until_stopped()
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
