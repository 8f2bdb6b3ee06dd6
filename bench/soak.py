"""Soak: the whole local market with a fleet of meters for a while, and what it held up to.

    .venv/bin/python bench/soak.py --meters 50 --minutes 30

Starts the stack the way `make run` does (moto, mosquitto, rules bridge, stream
poller, job scheduler, API, demo fleet) in a temporary directory, lets it run,
then stops the fleet, waits for the bridge and the stream poller to drain, and
prints:

- readings published (acknowledged by the broker), accepted, rejected by reason
  (the faulty meter's forgeries), duplicates, and lost: readings the meters sent
  and the broker acknowledged that never reached the market (must be 0);
- ingest lag, publish to credit: a credit's minted_at_ms minus its reading's
  timestamp (the meter publishes the moment it reads), p50/p99/max over every
  credit the fleet minted;
- purchases, settlements and receipts, and whether every receipt chain verifies;
- the stream poller's and the bridge's backlog at the end;
- each process's resident memory at the start and the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chalicelib.domain.receipts import receipt_from_json, verify_chain
from energy_client.rpc_client import MarketplaceClient
from infra.local_stack import LOCAL_SETTINGS, DemoOptions, LocalStack, free_port


def rss_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def processes(stack: LocalStack) -> dict[str, int | None]:
    return {
        "moto + this script": os.getpid(),
        "mosquitto": stack.broker_pid,
        "rules bridge": stack.bridge_pid,
        "stream poller": stack.stream_poller_pid,
        "job scheduler": stack.scheduler_pid,
        "chalice local (API)": stack.chalice_pid,
        "WebSocket gateway": stack.ws_gateway_pid,
        "demo fleet": stack.demo_pid,
    }


def every_page(api: MarketplaceClient, method: str, params: dict[str, Any], key: str) -> list[Any]:
    items: list[Any] = []
    cursor = None
    while True:
        page = api.call(method, params | {"limit": 100} | ({"cursor": cursor} if cursor else {}))
        items.extend(page[key])
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def percentile(values: list[int], share: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def progress(stack: LocalStack, started: float) -> str:
    demo = stack.demo_status()
    bridge = stack.bridge_status()
    meters = demo.get("meters", {})
    buyers = demo.get("buyers", {})
    return (
        f"[{(time.monotonic() - started) / 60:5.1f} min] readings acknowledged "
        f"{meters.get('acknowledged', 0)}, bridge processed {bridge.get('processed', 0)} "
        f"(accepted {bridge.get('accepted', 0)}, rejected {bridge.get('rejected', 0)}), "
        f"purchases {buyers.get('purchases', 0)}, buyer refusals {buyers.get('refusals', {})}"
    )


def wait_for_drain(stack: LocalStack, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bridge = stack.bridge_status()
        in_bridge = bridge.get("received", 0) - bridge.get("processed", 0)
        in_bridge -= bridge.get("dead_lettered", 0)
        streams = stack.streams_status()
        in_streams = sum(s.get("backlog", 0) for s in streams.values())
        if in_bridge == 0 and in_streams == 0:
            return
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--meters", type=int, default=50)
    parser.add_argument("--buyers", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between readings")
    parser.add_argument("--speedup", type=int, default=60)
    parser.add_argument("--jobs-interval", type=float, default=30.0)
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="soak-"))
    log_path = state_dir / "stack.log"
    state_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"soak: {args.meters} meters every {args.interval:g} s, {args.buyers} buyers, "
        f"{args.minutes:g} minutes; logs in {log_path}",
        flush=True,
    )
    with (
        log_path.open("wb") as log,
        LocalStack(
            moto_port=0,
            api_port=free_port(),
            mqtt_port=0,
            state_dir=state_dir / "state",
            chalice_output=log,
            stack_name="energy-marketplace-soak",
            jobs_interval=args.jobs_interval,
            demo=DemoOptions(
                meters=args.meters,
                buyers=args.buyers,
                interval_seconds=args.interval,
                speedup=args.speedup,
            ),
            settings=dict(LOCAL_SETTINGS),
        ) as stack,
    ):
        api = MarketplaceClient.over_http(stack.rpc_url)
        started = time.monotonic()
        while not stack.demo_status().get("meters", {}).get("count"):
            if time.monotonic() - started > 300:
                print("the demo fleet did not start; see the log", file=sys.stderr)
                return 1
            time.sleep(2)
        names = processes(stack)
        memory_start = {name: rss_mib(pid) for name, pid in names.items()}
        started = time.monotonic()
        deadline = started + args.minutes * 60
        next_progress = started + 60
        while time.monotonic() < deadline:
            time.sleep(5)
            if time.monotonic() >= next_progress:
                print(progress(stack, started), flush=True)
                next_progress += 60
        memory_end = {name: rss_mib(pid) for name, pid in names.items()}
        stack.stop_demo()
        wait_for_drain(stack, timeout=120)
        demo = stack.demo_status()
        bridge = stack.bridge_status()
        streams = stack.streams_status()
        jobs = stack.jobs_status()

        meters = demo["meters"]
        accepted_readings = 0
        rejected: Counter[str] = Counter()
        lags: list[int] = []
        chains: set[str] = set()
        for address in meters["addresses"]:
            meter = api.call("energy.getMeter", {"meter_address": address})
            accepted_readings += meter["accepted_readings"]
            rejected.update(meter["rejections"])
            credits = every_page(
                api, "energy.getCredits", {"provider_id": meter["provider_id"]}, "credits"
            )
            # One lag per reading: parts split off a credit by purchases share its times.
            lags.extend(
                c["minted_at_ms"] - c["interval_end_ms"]
                for c in credits
                if c["reading_hash"] == c["credit_id"]
            )
            chains.add(meter["provider_id"])
        key = api.call("energy.getMarketInfo", {})["receipt_public_key"]
        receipts = 0
        broken = []
        for chain in sorted(chains):
            found = every_page(api, "energy.getReceipts", {"provider_id": chain}, "receipts")
            receipts += len(found)
            report = verify_chain([receipt_from_json(r) for r in found], key)
            if not report.intact:
                broken.append((chain, report.problem))

    acknowledged = meters["acknowledged"]
    forged = sum(meters.get("forged", {}).values())
    # Every acknowledged real reading is accepted (a credit or the baseline) or
    # refused for a reason; the faulty meter's forgeries are the only refusals
    # expected. What is left over never reached the market.
    real_refused = max(0, sum(rejected.values()) - forged)
    lost = acknowledged - accepted_readings - real_refused
    bridge_backlog = bridge["received"] - bridge["processed"] - bridge["dead_lettered"]
    print()
    print(f"Soak: {args.meters} meters, reading every {args.interval:g} s, {args.minutes:g} min")
    print("=" * 72)
    print(f"readings published (acknowledged by the broker)  {acknowledged:>8,}")
    print(f"  still held by meters at the end               {meters['pending']:>8,}")
    print(f"readings accepted (credits or baselines)        {accepted_readings:>8,}")
    print(f"real readings refused                           {real_refused:>8,}")
    print(f"forged readings sent by the faulty meter        {forged:>8,}")
    for reason, count in sorted(rejected.items()):
        print(f"  rejected: {reason:<36} {count:>8,}")
    print(f"duplicates (redeliveries, minted nothing)       {bridge['duplicate']:>8,}")
    print(f"lost (acknowledged, never reached the market)   {lost:>8,}")
    print(
        f"ingest lag publish -> credit, ms: p50 {percentile(lags, 0.5):,}  "
        f"p99 {percentile(lags, 0.99):,}  max {max(lags):,}  ({len(lags):,} credits)"
    )
    buyers = demo["buyers"]
    settlements = jobs.get("settle_due_purchases", {})
    print(
        f"purchases {buyers['purchases']:,} ({buyers['wh'] / 1000:,.1f} kWh), settled early "
        f"{buyers['settled_early']:,}; receipts {receipts:,}, chains verified "
        f"{len(chains) - len(broken)}/{len(chains)}; buyer refusals {buyers['refusals']}"
    )
    print(
        f"job runs: settlement {settlements.get('runs', 0)} "
        f"(failures {settlements.get('failures', 0)}), expiry "
        f"{jobs.get('expire_unsold_credits', {}).get('runs', 0)}"
    )
    print(
        f"backlog at the end: rules bridge {bridge_backlog}, stream poller "
        + ", ".join(f"{name} {s.get('backlog')}" for name, s in streams.items())
        + f" (records handled {sum(s.get('records', 0) for s in streams.values()):,})"
    )
    print("memory (RSS, MiB)              start      end")
    for name in names:
        start, end = memory_start[name], memory_end[name]
        print(
            f"  {name:<26} {start if start is not None else float('nan'):>8.1f} "
            f"{end if end is not None else float('nan'):>8.1f}"
        )
    if broken:
        print(f"BROKEN receipt chains: {broken}")
    return 0 if lost == 0 and not broken else 1


if __name__ == "__main__":
    sys.exit(main())
