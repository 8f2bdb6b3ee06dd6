"""Live events under load: 200 WebSocket clients on the local market while the demo fleet runs.

    .venv/bin/python bench/live.py [--clients 200] [--meters 20] [--interval 2] [--seconds 60]

Starts the stack the way `make run` does (moto, mosquitto, rules bridge, stream
poller, job scheduler, API, WebSocket gateway, demo fleet), in a temporary
directory, with ``DISPUTE_WINDOW_MS=0`` so that purchases settle at the next
job run (every ``--jobs-interval`` seconds) or when their buyer settles early.
Once the fleet's meters are connected, a second process opens ``--clients``
WebSocket connections, all in one asyncio event loop (one process, one
thread: 200 threads would spend the 2 cores on switching, and the clients
must not compete with the stack for more than they need). Each client
subscribes to ``new_reading``, ``new_settlement`` and ``provider_update``;
every ``--stats-every``-th also to ``market_stats``. After ``--warmup``
seconds the clients record every frame for ``--seconds`` seconds; then they
close (a clean ``$disconnect`` each) and the stack stops.

Printed:

- clients connected, and how long connecting and subscribing took;
- frames and events received per second, in all and per client;
- latency from an event's source time to its receipt by a client, p50, p99
  and max, per kind of event (what each includes is printed with it);
- pushes per source event: frames per stream batch and per reading, from
  what the clients received and from the gateway's and the stream poller's
  counters; frames per client per batch (at most 1, or a frame over 32 KB
  split in two);
- connections gone, and the CPU each process used during the window.

Exit status 1 if a client failed to connect, no event arrived, or a client
got two frames for one batch.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._printing import print_table, say

if TYPE_CHECKING:
    from infra.local_stack import LocalStack

PUBLIC_TOPICS = ["new_reading", "new_settlement", "provider_update"]
SPLIT_BYTES = 32 * 1024  # the gateway splits a larger push, as API Gateway does
CONNECT_CONCURRENCY = 20  # handshakes in flight at once
CONNECT_BUDGET_SECONDS = 180.0
FLEET_BUDGET_SECONDS = 300.0

# Kinds of events whose latency is measured, and what each figure includes.
LATENCY_KINDS = {
    "new_reading": (
        "reading timestamp -> client, per provider listed: the meter's MQTT publish (TLS, "
        "mosquitto), the rules bridge and the ingest function (signature, DynamoDB writes), "
        "the registry stream, the poller's wait (0.5 s when idle), watch_meters (fraud "
        "detectors, analytics) and the fan-out"
    ),
    "new_settlement": (
        "settled_at_ms (the settlement's write) -> client: the ledger stream, the poller's "
        "wait, publish_market_events (purchase events, analytics) and the fan-out; no MQTT"
    ),
    "provider_update": (
        "stream record time -> client: ApproximateCreationDateTime, whole seconds, so 0-1 s "
        "too high; otherwise as new_reading from the ingest's write on"
    ),
    "market_stats": (
        "as_of_ms -> client: the job computing energy.getMarketStats, then the fan-out to "
        "its subscribers; no stream"
    ),
}


# --- the clients' process -------------------------------------------------------------------


@dataclass
class Frame:
    """One distinct frame (the same bytes reach every client subscribed alike)."""

    keys: list[tuple[Any, ...]]  # one per event: identifies the event across clients
    sources: list[tuple[str, int]]  # (kind, source epoch ms) to measure latency against
    events: int
    size: int
    readings: dict[tuple[Any, ...], int]  # new_reading event key -> readings it carries
    multi_reading_entries: int  # providers listed with more than one reading


def event_key(event: Mapping[str, Any]) -> tuple[Any, ...]:
    data = event.get("data") or {}
    name = event.get("event")
    if name == "new_reading":
        return ("new_reading", event.get("at_ms"), data.get("readings"), data.get("wh"))
    if name == "provider_update":
        return (
            "provider_update",
            data.get("provider_id"),
            event.get("at_ms"),
            data.get("on_sale_wh"),
            data.get("sold_wh"),
            data.get("status"),
        )
    if name == "new_settlement":
        return ("new_settlement", data.get("transaction_id"))
    return (str(name), event.get("topic"), event.get("at_ms"))


def summarise_frame(raw: str) -> Frame | None:
    message = json.loads(raw)
    if message.get("type") != "events":
        return None
    keys: list[tuple[Any, ...]] = []
    sources: list[tuple[str, int]] = []
    readings: dict[tuple[Any, ...], int] = {}
    multi = 0
    for event in message.get("events", []):
        key = event_key(event)
        keys.append(key)
        name, data = event.get("event"), event.get("data") or {}
        if name == "new_reading":
            readings[key] = int(data.get("readings", 0))
            for entry in data.get("providers", []):
                sources.append(("new_reading", int(entry["timestamp_ms"])))
                multi += entry.get("readings", 1) > 1
        elif name == "new_settlement":
            sources.append(("new_settlement", int(data["settled_at_ms"])))
        elif name in ("provider_update", "market_stats"):
            sources.append((str(name), int(event["at_ms"])))
    return Frame(keys, sources, len(keys), len(raw.encode()), readings, multi)


@dataclass
class Window:
    start: float = float("inf")  # epoch seconds
    end: float = float("inf")


@dataclass
class Client:
    index: int
    topics: list[str]
    setup_seconds: float | None = None
    error: str | None = None
    closed_early: str | None = None
    frames_outside: int = 0
    answers: int = 0
    received: list[tuple[float, int]] = field(default_factory=list)  # (epoch s, frame id)


class Frames:
    """Distinct frames by their text: 200 clients get the same bytes, parsed once."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.frames: list[Frame | None] = []

    def intern(self, raw: str) -> int:
        found = self.ids.get(raw)
        if found is None:
            found = self.ids[raw] = len(self.frames)
            self.frames.append(summarise_frame(raw))
        return found


async def run_clients(args: argparse.Namespace) -> dict[str, Any]:
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed, WebSocketException

    clients = [
        Client(i, PUBLIC_TOPICS + (["market_stats"] if i % args.stats_every == 0 else []))
        for i in range(args.clients)
    ]
    sockets: dict[int, ClientConnection] = {}
    window = Window()
    frames = Frames()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def open_one(client: Client) -> None:
        async with gate:
            started = time.monotonic()
            socket: ClientConnection | None = None
            try:
                socket = await connect(
                    args.url,
                    open_timeout=30,
                    close_timeout=5,
                    ping_interval=None,  # the gateway's idle timeout counts data frames only
                    max_size=256 * 1024,
                    compression=None,
                )
                message = {"action": "subscribe", "topics": client.topics, "id": f"c{client.index}"}
                await socket.send(json.dumps(message))
                async with asyncio.timeout(60):
                    while True:
                        answer = json.loads(await socket.recv())
                        if answer.get("type") == "subscribed":
                            break
                        if answer.get("type") == "error":
                            raise RuntimeError(f"{answer.get('reason')}: {answer.get('message')}")
            except (OSError, TimeoutError, WebSocketException, RuntimeError) as exc:
                client.error = f"{type(exc).__name__}: {exc}"
                if socket is not None:
                    with contextlib.suppress(Exception):
                        await socket.close()
                return
            client.setup_seconds = time.monotonic() - started
            sockets[client.index] = socket

    async def read(client: Client, socket: ClientConnection) -> None:
        try:
            async for raw in socket:
                now = time.time()
                if not isinstance(raw, str):
                    continue
                if window.start <= now < window.end:
                    client.received.append((now, frames.intern(raw)))
                elif '"type": "events"' in raw or '"type":"events"' in raw:
                    client.frames_outside += 1
                else:
                    client.answers += 1
        except ConnectionClosed as closed:
            if time.time() < window.end:
                client.closed_early = str(closed)

    connect_started = time.monotonic()
    async with asyncio.timeout(CONNECT_BUDGET_SECONDS):
        await asyncio.gather(*(open_one(c) for c in clients))
    connect_seconds = time.monotonic() - connect_started
    print(f"connected {len(sockets)} of {len(clients)} in {connect_seconds:.1f} s", flush=True)
    readers = [asyncio.create_task(read(clients[i], s)) for i, s in sockets.items()]
    try:
        await asyncio.sleep(args.warmup)
        window.start = time.time()
        print("measuring", flush=True)
        await asyncio.sleep(args.seconds)
        window.end = time.time()
        print("measured", flush=True)
    finally:
        window.end = min(window.end, time.time())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await asyncio.gather(*(s.close() for s in sockets.values()), return_exceptions=True)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return analyse(clients, frames, window, connect_seconds)


def percentiles(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    return {"count": len(ordered), "p50": at(0.5), "p99": at(0.99), "max": ordered[-1]}


class Groups:
    """Union-find over event keys: the events that ever shared a frame came from one batch."""

    def __init__(self) -> None:
        self.parent: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def find(self, key: tuple[Any, ...]) -> tuple[Any, ...]:
        self.parent.setdefault(key, key)
        root = key
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[key] != root:
            self.parent[key], key = root, self.parent[key]
        return root

    def union(self, keys: Sequence[tuple[Any, ...]]) -> None:
        if not keys:
            return
        first = self.find(keys[0])
        for key in keys[1:]:
            other = self.find(key)
            if other != first:
                self.parent[other] = first


def batch_kind(keys: Sequence[tuple[Any, ...]]) -> str:
    names = {key[0] for key in keys}
    if names & {"new_reading", "provider_update"}:
        return "registry"
    if "new_settlement" in names:
        return "ledger"
    if "market_stats" in names:
        return "market_stats"
    return "other"


def analyse(
    clients: list[Client], frames: Frames, window: Window, connect_seconds: float
) -> dict[str, Any]:
    seconds = max(1e-9, window.end - window.start)
    connected = [c for c in clients if c.setup_seconds is not None]
    groups = Groups()
    for frame in frames.frames:
        if frame is not None:
            groups.union(frame.keys)
    group_of = {
        i: groups.find(f.keys[0]) for i, f in enumerate(frames.frames) if f is not None and f.keys
    }
    latencies: dict[str, list[float]] = defaultdict(list)
    per_client_frames: list[int] = []
    per_client_events: list[int] = []
    frames_in_group: Counter[tuple[Any, ...]] = Counter()
    clients_in_group: dict[tuple[Any, ...], set[int]] = defaultdict(set)
    first_last: dict[tuple[Any, ...], list[float]] = {}
    repeated = 0  # (client, batch) pairs with more than one frame
    repeated_split = 0  # ... of which a frame was over 32 KB
    most = 0
    total_events = 0
    for client in connected:
        events = 0
        mine: Counter[tuple[Any, ...]] = Counter()
        big: set[tuple[Any, ...]] = set()
        count = 0
        for received_at, frame_id in client.received:
            frame = frames.frames[frame_id]
            if frame is None:
                continue
            count += 1
            events += frame.events
            received_ms = received_at * 1000
            for kind, source_ms in frame.sources:
                latencies[kind].append(received_ms - source_ms)
            group = group_of.get(frame_id)
            if group is None:
                continue
            mine[group] += 1
            if frame.size > SPLIT_BYTES:
                big.add(group)
            frames_in_group[group] += 1
            clients_in_group[group].add(client.index)
            span = first_last.setdefault(group, [received_at, received_at])
            span[0], span[1] = min(span[0], received_at), max(span[1], received_at)
        per_client_frames.append(count)
        per_client_events.append(events)
        total_events += events
        for group, n in mine.items():
            most = max(most, n)
            if n > 1:
                repeated += 1
                repeated_split += group in big
    members: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
    for key in list(groups.parent):
        members[groups.find(key)].append(key)
    batches: dict[str, dict[str, float]] = {}
    for group, n in frames_in_group.items():
        kind = batch_kind(members[group])
        entry = batches.setdefault(kind, {"batches": 0, "frames": 0, "clients": 0})
        entry["batches"] += 1
        entry["frames"] += n
        entry["clients"] += len(clients_in_group[group])
    readings_by_event: dict[tuple[Any, ...], int] = {}
    multi = 0
    sizes = [f.size for f in frames.frames if f is not None]
    for frame in frames.frames:
        if frame is not None:
            readings_by_event.update(frame.readings)
            multi += frame.multi_reading_entries
    spreads = [(last - first) * 1000 for first, last in first_last.values()]
    setup = [c.setup_seconds for c in connected if c.setup_seconds is not None]
    return {
        "clients": len(clients),
        "connected": len(connected),
        "market_stats_clients": sum("market_stats" in c.topics for c in connected),
        "errors": Counter(c.error.split(":")[0] for c in clients if c.error),
        "first_error": next((c.error for c in clients if c.error), None),
        "closed_early": sum(c.closed_early is not None for c in connected),
        "first_closed_early": next((c.closed_early for c in connected if c.closed_early), None),
        "connect_seconds": connect_seconds,
        "setup_seconds": percentiles(setup),
        "window_start": window.start,
        "window_seconds": seconds,
        "frames": sum(per_client_frames),
        "events": total_events,
        "frames_per_client": percentiles(per_client_frames),
        "events_per_client": percentiles(per_client_events),
        "distinct_frames": len(sizes),
        "frame_bytes": percentiles(sizes),
        "frames_over_32kb": sum(s > SPLIT_BYTES for s in sizes),
        "latency_ms": {kind: percentiles(values) for kind, values in latencies.items()},
        "spread_ms": percentiles(spreads),
        "batches": batches,
        "most_frames_per_client_per_batch": most,
        "repeated_pairs": repeated,
        "repeated_split_pairs": repeated_split,
        "readings": sum(readings_by_event.values()),
        "reading_events": len(readings_by_event),
        "multi_reading_entries": multi,
        "answers_or_pongs": sum(c.answers for c in connected),
    }


def clients_main(args: argparse.Namespace) -> int:
    result = asyncio.run(run_clients(args))
    args.result.write_text(json.dumps(result), encoding="utf-8")
    return 0


# --- the stack's side ---------------------------------------------------------------------


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process so far (Linux /proc)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Snapshot:
    at: float
    gateway: dict[str, Any]
    streams: dict[str, Any]
    jobs: dict[str, Any]
    bridge: dict[str, Any]
    demo: dict[str, Any]
    cpu: dict[str, float | None]


def snapshot(stack: LocalStack, pids: Mapping[str, int | None]) -> Snapshot:
    return Snapshot(
        time.time(),
        stack.websockets_status(),
        stack.streams_status(),
        stack.jobs_status(),
        stack.bridge_status(),
        stack.demo_status(),
        {name: cpu_seconds(pid) for name, pid in pids.items()},
    )


def delta(before: Mapping[str, Any], after: Mapping[str, Any], *path: str) -> int:
    def dig(status: Mapping[str, Any]) -> int:
        value: Any = status
        for key in path:
            value = value.get(key, {}) if isinstance(value, Mapping) else {}
        return int(value) if isinstance(value, int | float) else 0

    return dig(after) - dig(before)


def stack_pids(stack: LocalStack) -> dict[str, int | None]:
    return {
        "moto (in this process)": os.getpid(),
        "mosquitto": stack.broker_pid,
        "rules bridge (ingest)": stack.bridge_pid,
        "stream poller (fan-out)": stack.stream_poller_pid,
        "job scheduler": stack.scheduler_pid,
        "chalice local (API)": stack.chalice_pid,
        "WebSocket gateway": stack.ws_gateway_pid,
        "demo fleet": stack.demo_pid,
    }


def wait_for_fleet(stack: LocalStack, meters: int) -> None:
    deadline = time.monotonic() + FLEET_BUDGET_SECONDS
    while time.monotonic() < deadline:
        demo = stack.demo_status().get("meters", {})
        if demo.get("connected", 0) >= meters and stack.bridge_status().get("accepted", 0) > 0:
            return
        if stack.demo_pid is None:
            break
        time.sleep(2)
    raise RuntimeError("the demo fleet did not start reading in time; see the stack's log")


class ClientsProcess:
    """The clients' process: its progress lines, a watchdog, and its result."""

    def __init__(self, args: argparse.Namespace, url: str, result: Path) -> None:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--clients-process",
            "--url",
            url,
            "--result",
            str(result),
            "--clients",
            str(args.clients),
            "--stats-every",
            str(args.stats_every),
            "--warmup",
            str(args.warmup),
            "--seconds",
            str(args.seconds),
        ]
        self.result = result
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        budget = CONNECT_BUDGET_SECONDS + args.warmup + args.seconds + 90
        self._watchdog = threading.Timer(budget, self.process.kill)
        self._watchdog.daemon = True
        self._watchdog.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def lines(self) -> Iterator[str]:
        stdout: IO[str] | None = self.process.stdout
        if stdout is None:
            return
        for line in stdout:
            yield line.strip()

    def finish(self) -> dict[str, Any]:
        try:
            code = self.process.wait(timeout=60)
        finally:
            self.close()
        if code != 0:
            raise RuntimeError(f"the clients' process failed (exit {code})")
        loaded: dict[str, Any] = json.loads(self.result.read_text(encoding="utf-8"))
        return loaded

    def close(self) -> None:
        self._watchdog.cancel()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def run_bench(args: argparse.Namespace) -> int:
    from infra.local_stack import LOCAL_SETTINGS, DemoOptions, LocalStack, free_port

    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="bench-live-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "stack.log"
    print(
        f"live events: {args.clients} WebSocket clients, {args.meters} meters every "
        f"{args.interval:g} s, {args.buyers} buyers; warm-up {args.warmup:g} s, measured "
        f"{args.seconds:g} s; logs in {log_path}",
        flush=True,
    )
    demo = DemoOptions(
        meters=args.meters,
        buyers=args.buyers,
        interval_seconds=args.interval,
        buyer_pause_seconds=args.buyer_pause,
        faulty_every_seconds=0,
        validators=0,
        cheaters=0,
    )
    started = time.monotonic()
    with (
        log_path.open("wb") as log,
        LocalStack(
            moto_port=0,
            api_port=free_port(),
            mqtt_port=0,
            state_dir=state_dir / "state",
            chalice_output=log,
            stack_name="energy-marketplace-bench-live",
            jobs_interval=args.jobs_interval,
            demo=demo,
            settings={**LOCAL_SETTINGS, "DISPUTE_WINDOW_MS": "0"},
        ) as stack,
    ):
        print(f"[{time.monotonic() - started:5.0f} s] stack up; waiting for the fleet", flush=True)
        wait_for_fleet(stack, args.meters)
        print(f"[{time.monotonic() - started:5.0f} s] fleet reading; connecting", flush=True)
        clients = ClientsProcess(args, stack.websocket_url, state_dir / "clients.json")
        pids = {**stack_pids(stack), f"{args.clients} clients (1 process)": clients.pid}
        before = after = None
        try:
            for line in clients.lines():
                print(f"[{time.monotonic() - started:5.0f} s] clients: {line}", flush=True)
                if line == "measuring":
                    before = snapshot(stack, pids)
                elif line == "measured":
                    after = snapshot(stack, pids)
            result = clients.finish()
        finally:
            clients.close()
        gateway_end = stack.websockets_status()
    if before is None or after is None:
        print("the clients' process did not complete its window", file=sys.stderr)
        return 1
    report(args, result, before, after, gateway_end)
    print(f"\nTotal run time: {time.monotonic() - started:.0f} s")
    violated = result["repeated_pairs"] > result["repeated_split_pairs"]
    ok = result["connected"] == args.clients and result["events"] > 0 and not violated
    return 0 if ok else 1


def ms(value: float) -> str:
    return f"{value:,.0f}"


def report(
    args: argparse.Namespace,
    result: Mapping[str, Any],
    before: Snapshot,
    after: Snapshot,
    gateway_end: Mapping[str, Any],
) -> None:
    seconds = result["window_seconds"]
    connected = result["connected"]
    print()
    title = f"Live events: {args.clients} WebSocket clients, {args.meters} meters every {args.interval:g} s"
    print(title)
    print("=" * len(title))
    setup = result["setup_seconds"] or {"p50": 0, "max": 0}
    print(
        f"clients connected and subscribed   {connected} of {result['clients']} "
        f"({result['market_stats_clients']} also to market_stats), in "
        f"{result['connect_seconds']:.1f} s; each: p50 {setup['p50']:.2f} s, max "
        f"{setup['max']:.2f} s ({CONNECT_CONCURRENCY} handshakes at a time)"
    )
    if result["errors"]:
        print(f"  failed: {dict(result['errors'])}; first: {result['first_error']}")
    print(
        f"closed before the end              {result['closed_early']}"
        + (f" (first: {result['first_closed_early']})" if result["closed_early"] else "")
    )
    per_frames = result["frames_per_client"] or {"p50": 0, "max": 0}
    print(f"measured window                    {seconds:.1f} s (after {args.warmup:g} s warm-up)")
    print(
        f"frames received                    {result['frames']:,} ({result['frames'] / seconds:,.1f}/s; "
        f"per client {result['frames'] / max(1, connected) / seconds:.2f}/s, "
        f"p50 {per_frames['p50']:,.0f} max {per_frames['max']:,.0f} in the window)"
    )
    print(
        f"events received                    {result['events']:,} ({result['events'] / seconds:,.1f}/s; "
        f"per client {result['events'] / max(1, connected) / seconds:.2f}/s)"
    )
    sizes = result["frame_bytes"] or {"p50": 0, "max": 0}
    print(
        f"distinct frames                    {result['distinct_frames']} (bytes p50 "
        f"{sizes['p50']:,.0f}, max {sizes['max']:,.0f}; over 32 KB: {result['frames_over_32kb']})"
    )

    print("\nLatency, source time -> receipt by a client, ms (every client's copy counts)")
    rows = []
    for kind in LATENCY_KINDS:
        figures = result["latency_ms"].get(kind)
        if figures is None:
            rows.append([kind, "0", "-", "-", "-"])
            continue
        rows.append(
            [
                kind,
                f"{figures['count']:,}",
                ms(figures["p50"]),
                ms(figures["p99"]),
                ms(figures["max"]),
            ]
        )
    print_table(["event", "samples", "p50", "p99", "max"], rows, right={1, 2, 3, 4})
    for kind, includes in LATENCY_KINDS.items():
        say(f"{kind}: {includes}.", indent="  ")
    spread = result["spread_ms"]
    if spread:
        say(
            f"Fan-out spread, first to last client of one batch: p50 {ms(spread['p50'])} ms, "
            f"p99 {ms(spread['p99'])} ms, max {ms(spread['max'])} ms. "
            f"Provider entries with more than one reading in a batch (their older reading "
            f"waited longer than measured): {result['multi_reading_entries']:,}."
        )

    print("\nPushes per source event")
    batch_rows = []
    for kind in ("registry", "ledger", "market_stats", "other"):
        entry = result["batches"].get(kind)
        if not entry:
            continue
        batch_rows.append(
            [
                kind,
                f"{entry['batches']:,.0f}",
                f"{entry['frames']:,.0f}",
                f"{entry['frames'] / entry['batches']:.1f}",
                f"{entry['frames'] / max(1, entry['clients']):.3f}",
            ]
        )
    print_table(
        [
            "batches that reached clients",
            "batches",
            "frames",
            "frames/batch",
            "frames/client/batch",
        ],
        batch_rows,
        right={1, 2, 3, 4},
    )
    registry = result["batches"].get("registry", {"frames": 0})
    readings = result["readings"]
    most = result["most_frames_per_client_per_batch"]
    verdict = "holds" if result["repeated_pairs"] <= result["repeated_split_pairs"] else "VIOLATED"
    say(
        f"At most one frame per client per batch: {verdict} (most frames one client got from "
        f"one batch: {most}; client-batch pairs with more: {result['repeated_pairs']}, of "
        f"which a frame over 32 KB: {result['repeated_split_pairs']}). A batch is the set of "
        f"events that ever shared a frame."
    )
    if readings:
        say(
            f"Readings delivered in the window: {readings:,} in {result['reading_events']:,} "
            f"new_reading events (one per registry batch with readings): "
            f"{registry['frames'] / readings:.1f} registry frames per reading, against "
            f"{connected} if every reading were pushed to every client "
            f"({readings / max(1, result['reading_events']):.1f} readings per batch)."
        )

    gateway = {
        name: delta(before.gateway, after.gateway, name)
        for name in ("pushes", "messages_out", "gone", "messages_in", "deleted")
    }
    stream_batches = {
        name: delta(before.streams, after.streams, name, "batches") for name in after.streams
    }
    stream_records = {
        name: delta(before.streams, after.streams, name, "records") for name in after.streams
    }
    stream_filtered = {
        name: delta(before.streams, after.streams, name, "filtered") for name in after.streams
    }
    stats_runs = delta(before.jobs, after.jobs, "push_market_stats", "runs")
    accepted = delta(before.bridge, after.bridge, "accepted")
    span = after.at - before.at
    source_batches = sum(stream_batches.values()) + stats_runs
    print(f"\nThe stack's own counters over the window ({span:.1f} s; status files every 2 s)")
    print(
        f"gateway: pushes (POST @connections) {gateway['pushes']:,}, delivered "
        f"{gateway['messages_out']:,}, gone {gateway['gone']:,}, client messages "
        f"{gateway['messages_in']:,}; frames the clients counted {result['frames']:,}"
    )
    print(
        "stream poller: "
        + ", ".join(
            f"{name} {stream_batches[name]:,} batches / {stream_records[name]:,} records"
            + (f" ({stream_filtered[name]:,} filtered out)" if stream_filtered[name] else "")
            for name in sorted(stream_batches)
        )
        + f"; market_stats job runs {stats_runs}"
    )
    registry_batches = stream_batches.get("watch_meters", 0)
    if registry_batches:
        say(
            f"A registry batch every {span / registry_batches:.2f} s: the poller reads its "
            f"streams in turn in one thread, waiting 0.5 s only when all were empty, so a record "
            f"also waits for the other streams' handlers and their fan-out."
        )
    if source_batches:
        print(
            f"pushes per source batch (every stream batch and market_stats run, with events "
            f"for clients or not): {gateway['pushes'] / source_batches:.1f}"
        )
    if accepted:
        print(
            f"readings accepted by the bridge {accepted:,}: {gateway['pushes'] / accepted:.1f} "
            f"pushes per reading, all topics"
        )
    purchases = delta(before.demo, after.demo, "buyers", "purchases")
    print(f"purchases made by the demo's buyers {purchases:,}")
    print(
        f"gone connections over the whole run: {gateway_end.get('gone', 0)} "
        f"(handler errors {gateway_end.get('handler_errors')})"
    )

    print(f"\nCPU over the window, % of one core (the machine has {os.cpu_count()})")
    cpu_rows = []
    total = 0.0
    for name, start in before.cpu.items():
        end = after.cpu.get(name)
        if start is None or end is None:
            continue
        share = (end - start) / span * 100
        total += share
        cpu_rows.append([name, f"{share:.0f}"])
    cpu_rows.append(["all of the above", f"{total:.0f}"])
    print_table(["process", "CPU %"], cpu_rows, right={1})


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--meters", type=int, default=20)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between readings")
    parser.add_argument("--buyers", type=int, default=3)
    parser.add_argument("--buyer-pause", type=float, default=2.0, help="seconds between buys")
    parser.add_argument("--jobs-interval", type=float, default=5.0)
    parser.add_argument(
        "--stats-every", type=int, default=4, help="every Nth client follows market_stats"
    )
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=60.0, help="the measured window")
    parser.add_argument("--state-dir", type=Path, default=None)
    # The clients' own process (started by this script).
    parser.add_argument("--clients-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.clients < 1 or args.stats_every < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--clients and --stats-every >= 1, --seconds > 0, --warmup >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return clients_main(args) if args.clients_process else run_bench(args)
    except KeyboardInterrupt:  # Ctrl-C reaches both processes; the stack is stopped by now
        if not args.clients_process:
            print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
