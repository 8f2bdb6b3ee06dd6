"""The CLI's ``watch``, run as a program against a local stack's WebSocket gateway.

A small stack: moto, the stream poller, ``chalice local`` and the gateway (no
MQTT, no jobs). Readings come through the API (``energy.submitReading``,
signed by the test's meter), money through the operator's deposits; the
events reach ``python -m energy_client watch`` the way they reach any client.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from energy_client import keyfiles
from energy_client.cli import program as cli
from energy_client.rpc_client import MarketplaceClient, Signer
from infra.local_stack import LocalStack, free_port
from tests.support import BLOCK, SimulatedMeter, registration_params

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
OWNER = "alice.watch"
WATCHER = "bob.watch"
TIMEOUT = 60.0


@dataclass
class Market:
    stack: LocalStack
    api: MarketplaceClient
    operator: Signer
    meter: SimulatedMeter
    watcher: Signer
    keys: Path  # the watcher's key, as `keys new` keeps it
    counter_wh: int = 1_000_000

    def read(self) -> None:
        """One more signed reading: 1 kWh since the last."""
        self.counter_wh += 1_000
        reading = self.meter.reading(self.counter_wh, int(time.time() * 1000))
        self.api.call("energy.submitReading", reading)


_deposits = itertools.count(1)


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    state = tmp_path_factory.mktemp("watch")
    with (
        (state / "stack.log").open("wb") as output,
        LocalStack(
            moto_port=0,
            api_port=free_port(),
            mqtt=False,
            jobs=False,
            state_dir=state / "state",
            chalice_output=output,
            stack_name="energy-marketplace-e2e-watch",
        ) as stack,
    ):
        api = MarketplaceClient.over_http(stack.rpc_url)
        assert stack.operator_key is not None
        operator = Signer("operator", stack.operator_key)
        owner = Signer.generate(OWNER)
        api.create_account(owner)
        api.deposit(operator, OWNER, 20_000 * BLOCK, "0xwatch-owner")
        meter_key = Signer.generate("meter")
        provider = api.call(
            "energy.registerProvider",
            registration_params(OWNER, meter_public_key=meter_key.public_key),
            owner,
        )
        meter = SimulatedMeter(provider["meter_address"], provider["provider_id"], meter_key)
        watcher = Signer.generate(WATCHER)
        api.create_account(watcher)
        keys = state / "keys"
        keys.mkdir(mode=0o700)
        keyfiles.write_key(keys / f"{WATCHER}.key", watcher.key)
        found = Market(stack, api, operator, meter, watcher, keys)
        found.read()  # the meter's baseline
        yield found


@dataclass(frozen=True)
class Watched:
    status: int
    out: str
    err: str

    def lines(self) -> list[str]:
        return self.out.splitlines()


def watch(
    market: Market, *argv: str, keys: Path | None = None, meanwhile: Callable[[], None]
) -> Watched:
    """``python -m energy_client ... watch ARGV --ws-url <the stack's>``, calling
    ``meanwhile`` every half second until it exits (what the events come from)."""
    command = [
        sys.executable,
        "-m",
        "energy_client",
        "--url",
        market.stack.rpc_url,
        "--keys",
        str(keys or market.keys),
        *argv,
        "--ws-url",
        market.stack.websocket_url,
        "--seconds",
        str(TIMEOUT),
    ]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    done = threading.Event()
    failures: list[BaseException] = []

    def move_the_market() -> None:
        while not done.wait(0.5):
            try:
                meanwhile()
            except Exception as exc:  # noqa: BLE001  (reported by the test below)
                failures.append(exc)
                return

    mover = threading.Thread(target=move_the_market, daemon=True)
    mover.start()
    try:
        out, err = process.communicate(timeout=TIMEOUT + 30)
    finally:
        done.set()
        if process.poll() is None:
            process.kill()
            process.communicate()
        mover.join(10)
    assert not failures, failures
    return Watched(process.returncode, out, err)


def test_watch_prints_one_event_line_and_exits(market: Market) -> None:
    watched = watch(market, "watch", "new_reading", "--count", "1", meanwhile=market.read)
    assert watched.status == 0, watched.err
    assert "watching new_reading" in watched.err
    [line] = watched.lines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  new_reading\s+  "
        r"\d+ reading\(s\) from 1 provider\(s\), [\d.]+ kWh \(solar [\d.]+\)",
        line,
    ), line


def test_json_prints_one_event_a_line_and_stops_at_the_count(market: Market) -> None:
    watched = watch(
        market,
        "--json",
        "watch",
        "new_reading",
        "provider_update",
        "--count",
        "3",
        meanwhile=market.read,
    )
    assert watched.status == 0, watched.err
    events = [json.loads(line) for line in watched.lines()]
    assert len(events) == 3  # a frame holds more: the count is of events, not frames
    for event in events:
        assert set(event) == {"topic", "event", "at_ms", "data"}
        assert event["topic"] == event["event"]
        assert event["topic"] in {"new_reading", "provider_update"}
    reading = next(e for e in events if e["event"] == "new_reading")
    assert [p["provider_id"] for p in reading["data"]["providers"]] == [market.meter.provider_id]


def deposit_to_watcher(market: Market) -> Callable[[], None]:
    def deposit() -> None:
        market.api.deposit(market.operator, WATCHER, BLOCK, f"0xwatch-{next(_deposits)}")

    return deposit


def test_account_follows_the_private_topic_with_a_token_from_the_key(market: Market) -> None:
    watched = watch(
        market,
        "--json",
        "watch",
        "dispute_opened",  # never happens here: the one event must be the account's
        "--account",
        WATCHER,
        "--count",
        "1",
        meanwhile=deposit_to_watcher(market),
    )
    assert watched.status == 0, watched.err
    assert f"account:{WATCHER}" in watched.err  # watching dispute_opened, account:bob.watch
    [line] = watched.lines()
    event = json.loads(line)
    assert event["topic"] == f"account:{WATCHER}"
    assert event["event"] == "balance"
    assert event["data"]["account"] == WATCHER
    assert isinstance(event["data"]["balance"], int)  # the account's creation may come first


def test_a_key_that_is_not_the_accounts_is_refused_with_a_clear_message(
    market: Market, tmp_path: Path
) -> None:
    impostor = tmp_path / "keys"
    impostor.mkdir(mode=0o700)
    keyfiles.write_key(impostor / f"{WATCHER}.key", Signer.generate(WATCHER).key)
    watched = watch(
        market,
        "watch",
        "new_settlement",
        "--account",
        WATCHER,
        keys=impostor,
        meanwhile=deposit_to_watcher(market),
    )
    assert watched.status == 1
    assert watched.out == ""  # no event of the account was shown
    assert "error: the marketplace refused: bad_token" in watched.err
    assert f"is it the key the account {WATCHER} was created with" in watched.err
    assert "Traceback" not in watched.err


def test_an_unknown_topic_is_bad_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before anything is reached: no stack needed."""
    status = cli.main(
        ["--keys", str(tmp_path), "watch", "new_reading", "no_such_topic", "--ws-url", "ws://x/"]
    )
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no such topic: no_such_topic\n")
    assert "provider_update, new_reading, new_settlement" in err
