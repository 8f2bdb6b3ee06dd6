"""The command-line client (energy_client/cli), run in-process against a
market on each storage adapter: the CLI's client is the harness's, whose
transport is the JSON-RPC dispatcher itself, so every command goes through the
real API.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from energy_client.cli import program as cli
from energy_client.rpc_client import MarketplaceClient, Signer
from tests.support import (
    BLOCK,
    MarketHarness,
    SimulatedMeter,
    StreamPump,
    buy,
    selling_provider,
    tables_from_environment,
    validators,
)


@dataclass(frozen=True)
class Run:
    status: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def harness(market: MarketHarness) -> MarketHarness:
    """The market on one adapter (tests/integration/conftest.py runs each test on both)."""
    return market


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def run(
    harness: MarketHarness, keys: Path, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Run]:
    """``run("buy", ...)``: the CLI in-process; its status, stdout and stderr."""

    def factory(url: str) -> MarketplaceClient:
        return harness.client

    def invoke(*argv: str) -> Run:
        capsys.readouterr()
        try:
            status = cli.main(["--keys", str(keys), *argv], client_factory=factory)
        except SystemExit as exc:  # argparse: bad usage
            status = int(exc.code or 0)
        captured = capsys.readouterr()
        return Run(status, captured.out, captured.err)

    return invoke


def with_operator(run: Callable[..., Run], harness: MarketHarness, tmp_path: Path) -> None:
    """The harness operator's key in the keys directory, as `keys import` brings it."""
    seed_file = tmp_path / "operator.seed"
    seed_file.write_text(bytes(harness.operator.key).hex() + "\n")
    assert run("keys", "import", "operator", "--seed-file", str(seed_file)).status == 0


def funded(run: Callable[..., Run], name: str, block: str, chain_tx: str) -> None:
    assert run("keys", "new", name).status == 0
    assert run("account", "create", name).status == 0
    if block != "0":
        assert run("deposit", name, block, "--chain-tx", chain_tx).status == 0


def columns_line_up(table: str, header: str) -> bool:
    """Every row's cell under ``header`` (right-aligned) ends where the header does."""
    lines = table.splitlines()
    head = next(n for n, line in enumerate(lines) if header in line)
    end = lines[head].index(header) + len(header)
    rows = lines[head + 2 :]
    return all(len(row) >= end and row[end - 1] != " " for row in rows if row.strip())


# -- keys ---------------------------------------------------------------------------------


def test_keys_new_saves_a_private_seed_and_never_overwrites_it(
    run: Callable[..., Run], keys: Path
) -> None:
    created = run("keys", "new", "alice.theblock")
    assert created.status == 0, created.err
    path = keys / "alice.theblock.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    seed = path.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", seed)

    shown = run("keys", "show", "alice.theblock")
    assert shown.status == 0
    public_key = shown.out.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", public_key)
    assert public_key in created.out

    listed = run("keys", "list")
    assert listed.status == 0
    assert re.search(rf"^alice\.theblock\s+{public_key}$", listed.out, re.M)

    again = run("keys", "new", "alice.theblock")
    assert again.status == 1
    assert "already exists" in again.err and again.out == ""
    assert path.read_text().strip() == seed  # untouched


def test_keys_import_takes_a_seed_file_like_the_local_stacks(
    run: Callable[..., Run], harness: MarketHarness, tmp_path: Path, keys: Path
) -> None:
    with_operator(run, harness, tmp_path)
    assert run("keys", "show", "operator").out.strip() == harness.operator.public_key
    assert stat.S_IMODE((keys / "operator.key").stat().st_mode) == 0o600

    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a seed\n")
    refused = run("keys", "import", "other", "--seed-file", str(garbage))
    assert refused.status == 2
    assert "64 hex digits" in refused.err
    assert not (keys / "other.key").exists()


def test_a_key_name_that_is_not_an_account_name_is_bad_usage(run: Callable[..., Run]) -> None:
    result = run("keys", "new", "../escape")
    assert result.status == 2
    assert "not a key name" in result.err


def test_a_key_others_can_read_is_still_used_with_a_warning(
    run: Callable[..., Run], keys: Path
) -> None:
    run("keys", "new", "alice.theblock")
    (keys / "alice.theblock.key").chmod(0o644)
    shown = run("keys", "show", "alice.theblock")
    assert shown.status == 0
    assert "chmod 600" in shown.err


# -- accounts and money -----------------------------------------------------------------------


def test_account_create_show_deposit_and_history(
    run: Callable[..., Run], harness: MarketHarness, tmp_path: Path
) -> None:
    with_operator(run, harness, tmp_path)
    run("keys", "new", "bob.theblock")
    created = run("account", "create", "bob.theblock")
    assert created.status == 0, created.err
    assert run("keys", "show", "bob.theblock").out.strip() in created.out

    deposited = run("deposit", "bob.theblock", "50.5", "--chain-tx", "0xbob-deposit-1")
    assert deposited.status == 0, deposited.err
    assert "balance of bob.theblock: 50.5 BLOCK" in deposited.out
    account = harness.client.call("energy.getAccount", {"name": "bob.theblock"})
    assert account["balance"] == 50_500_000

    shown = run("account", "show", "bob.theblock")
    assert re.search(r"^balance\s+50\.5 BLOCK$", shown.out, re.M)
    assert re.search(r"^roles\s+buyer$", shown.out, re.M)

    withdrawn = run("withdraw", "0.5", "--to", "0xb0b-wallet", "--as", "bob.theblock")
    assert withdrawn.status == 0, withdrawn.err
    assert "balance of bob.theblock: 50 BLOCK" in withdrawn.out

    history = run("account", "history", "bob.theblock")
    assert history.status == 0
    assert re.search(r"deposit\s+\+50\.5\s+0xbob-deposit-1", history.out)
    assert re.search(r"withdrawal\s+-0\.5\s+0xb0b-wallet", history.out)
    assert columns_line_up(history.out, "AMOUNT BLOCK")


def test_a_deposit_the_operator_did_not_sign_is_refused(
    run: Callable[..., Run], harness: MarketHarness
) -> None:
    harness.funded_account("bob.theblock")
    run("keys", "new", "operator")  # a key, but not the marketplace's operator key
    refused = run("deposit", "bob.theblock", "10", "--chain-tx", "0xforged-0001")
    assert refused.status == 1
    assert refused.err.startswith("error: not_authenticated: ")
    assert ".local/operator.key" in refused.err  # the hint
    assert harness.client.call("energy.getAccount", {"name": "bob.theblock"})["balance"] == 0


def test_a_deposit_without_an_operator_key_says_where_to_get_one(
    run: Callable[..., Run], harness: MarketHarness
) -> None:
    harness.funded_account("bob.theblock")
    result = run("deposit", "bob.theblock", "10", "--chain-tx", "0xdeposit-0001")
    assert result.status == 2
    assert "no key named 'operator'" in result.err
    assert "keys import operator --seed-file .local/operator.key" in result.err


def test_amounts_that_are_not_exact_are_bad_usage(run: Callable[..., Run]) -> None:
    result = run("deposit", "bob.theblock", "0.0000001", "--chain-tx", "0xdeposit-0001")
    assert result.status == 2
    assert "more precision than one micro-BLOCK" in result.err
    assert run("deposit", "bob.theblock", "0", "--chain-tx", "0xdeposit-0001").status == 2
    assert (
        run("buy", "energy-0x0000000000000000", "ten", "--max-price", "1", "--as", "x1y").status
        == 2
    )


# -- providers and offers -------------------------------------------------------------------


def test_providers_and_offers_print_tables_and_apply_filters(
    run: Callable[..., Run], harness: MarketHarness
) -> None:
    meter = selling_provider(harness, [10_000, 20_000])  # 30 kWh on sale at 0.08

    providers = run("providers")
    assert providers.status == 0, providers.err
    assert re.search(
        rf"^{meter.provider_id}\s+Sunny Rooftop\s+solar\s+US_CA\s+0\.08\s+10000\s+30\s+active$",
        providers.out,
        re.M,
    )
    assert columns_line_up(providers.out, "PRICE BLOCK/kWh")
    assert run("providers", "--energy-type", "wind").out.strip() == "no providers match"
    assert (
        meter.provider_id in run("providers", "--max-price", "0.08", "--min-capacity", "10000").out
    )
    assert meter.provider_id not in run("providers", "--max-price", "0.079999").out
    assert meter.provider_id not in run("providers", "--jurisdiction", "US").out

    offers = run("offers", "--energy-type", "solar", "--min-kwh", "30")
    assert offers.status == 0, offers.err
    header = offers.out.splitlines()[0].split()
    assert header[:5] == ["PROVIDER", "NAME", "TYPE", "JURISDICTION", "PRICE"]
    assert re.search(
        rf"^{meter.provider_id}\s+Sunny Rooftop\s+solar\s+US_CA\s+0\.08\s+30\s+", offers.out, re.M
    )
    assert columns_line_up(offers.out, "AVAILABLE kWh")
    assert run("offers", "--min-kwh", "30.001").out.strip() == "no energy on sale matches"


def test_providers_all_follows_the_cursors(run: Callable[..., Run], harness: MarketHarness) -> None:
    ids = {
        harness.provider(harness.funded_account(f"owner{n}.theblock", 20_000))["provider_id"]
        for n in range(3)
    }
    one = run("providers", "--limit", "1")
    assert sum(line.startswith("energy-0x") for line in one.out.splitlines()) == 1
    assert "--all" in one.err

    calls: list[bytes] = []

    def counting(body: bytes) -> bytes | None:
        calls.append(body)
        return harness.dispatcher.handle(body)

    client = MarketplaceClient(counting, harness.client.marketplace_id, clock=harness.clock)
    every = cli.main(
        ["--json", "providers", "--limit", "1", "--all"], client_factory=lambda url: client
    )
    assert every == 0
    assert len(calls) >= 3  # one page per provider
    # and the table form lists them all
    listed = run("providers", "--limit", "1", "--all")
    assert {line.split()[0] for line in listed.out.splitlines()[2:]} == ids


# -- a purchase, from offer to verified receipt -----------------------------------------------


def buyer_and_seller(
    run: Callable[..., Run], harness: MarketHarness, tmp_path: Path, block: str = "50"
) -> SimulatedMeter:
    with_operator(run, harness, tmp_path)
    funded(run, "bob.theblock", block, "0xbob-deposit-0001")
    return selling_provider(harness, [10_000, 20_000])


def test_buy_settle_portfolio_receipts_export_and_verify(
    run: Callable[..., Run], harness: MarketHarness, tmp_path: Path
) -> None:
    meter = buyer_and_seller(run, harness, tmp_path)

    bought = run("buy", meter.provider_id, "12.5", "--max-price", "0.10", "--as", "bob.theblock")
    assert bought.status == 0, bought.err
    transaction_id = re.search(r"^purchase\s+(pur-[0-9a-f]{32})$", bought.out, re.M)
    assert transaction_id is not None
    tx = transaction_id[1]
    assert re.search(r"^cost\s+1 BLOCK$", bought.out, re.M)  # 12.5 kWh x 0.08
    assert re.search(r"^settles at\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", bought.out, re.M)
    assert f"settle {tx} --as bob.theblock" in bought.err

    looked_up = run("purchase", tx)
    assert re.search(r"^status\s+open$", looked_up.out, re.M)
    open_portfolio = run("portfolio", "bob.theblock")
    assert re.search(r"^escrow\s+1 BLOCK in 1 purchase", open_portfolio.out, re.M)
    assert re.search(
        rf"^{tx}\s+{meter.provider_id}\s+12\.5\s+0\.08\s+1\s", open_portfolio.out, re.M
    )

    settled = run("settle", tx, "--as", "bob.theblock")
    assert settled.status == 0, settled.err
    assert re.search(r"^status\s+settled$", settled.out, re.M)
    assert re.search(r"^paid\s+1 BLOCK to seller\.theblock$", settled.out, re.M)
    assert re.search(rf"^receipt\s+{meter.provider_id} #1$", settled.out, re.M)
    assert "already settled" in run("settle", tx, "--as", "bob.theblock").out

    portfolio = run("portfolio", "bob.theblock")
    assert portfolio.status == 0
    assert re.search(r"^balance\s+49 BLOCK$", portfolio.out, re.M)
    assert re.search(r"^escrow\s+0 BLOCK", portfolio.out, re.M)
    assert re.search(r"^bought\s+solar 12\.5 kWh$", portfolio.out, re.M)
    holdings = harness.client.call("energy.getPortfolio", {"account": "bob.theblock"})["holdings"]
    for credit in holdings:
        assert credit["credit_id"] in portfolio.out
    assert re.search(
        rf"^{tx}\s+{meter.provider_id}\s+12\.5\s+0\.08\s+1\s+\S+\s+#1$", portfolio.out, re.M
    )

    by_buyer = run("receipts", "--buyer", "bob.theblock")
    assert re.search(
        rf"^\s*1\s+\S+\s+{tx}\s+{meter.provider_id}\s+12\.5\s+1\s+0\s+buyer\s", by_buyer.out, re.M
    )
    chain = run("receipts", "--provider", meter.provider_id)
    assert re.search(rf"{tx}\s+bob\.theblock\s+12\.5", chain.out)
    assert "chain head: #1 " in chain.out

    export = tmp_path / "receipts.json"
    exported = run("receipts", "export", "--provider", meter.provider_id, "-o", str(export))
    assert exported.status == 0, exported.err
    assert "exported 1 receipts of 1 chains" in exported.err
    receipt_key = harness.client.call("energy.getMarketInfo")["receipt_public_key"]
    verified = run("receipts", "verify", str(export), "--public-key", receipt_key)
    assert verified.status == 0, verified.out + verified.err
    assert "all 1 chains intact (1 receipt verified)" in verified.out

    by_buyer_export = tmp_path / "bobs.json"
    assert (
        run("receipts", "export", "--buyer", "bob.theblock", "-o", str(by_buyer_export)).status == 0
    )
    assert json.loads(by_buyer_export.read_text()) == json.loads(export.read_text())

    tampered = json.loads(export.read_text())
    tampered["receipts"][0]["wh"] = 125_000  # ten times the energy
    export.write_text(json.dumps(tampered))
    broken = run("receipts", "verify", str(export), "--public-key", receipt_key)
    assert broken.status == 1
    assert "BROKEN at position 0" in broken.out


def test_retire_a_held_credit_for_whole_days(
    run: Callable[..., Run], harness: MarketHarness, tmp_path: Path
) -> None:
    meter = buyer_and_seller(run, harness, tmp_path)
    bought = run(
        "--json", "buy", meter.provider_id, "10", "--max-price", "0.08", "--as", "bob.theblock"
    )
    purchase = bought.json()
    assert run("settle", purchase["transaction_id"], "--as", "bob.theblock").status == 0
    (credit_id,) = purchase["credit_ids"]

    retired = run(
        "retire",
        credit_id,
        "--beneficiary",
        "Bob's Bakery Ltd",
        "--period-start",
        "2026-01-01",
        "--period-end",
        "2026-12-31",
        "--as",
        "bob.theblock",
    )
    assert retired.status == 0, retired.err
    assert re.search(rf"^gc-{credit_id}\s+10\s+solar\s", retired.out, re.M)
    certificate = harness.client.call(
        "energy.getCertificate", {"certificate_id": f"gc-{credit_id}"}
    )
    assert certificate["reporting_period_start_ms"] == 1_767_225_600_000  # 2026-01-01
    # Whole days, both included: the period ends at 2027-01-01T00:00Z.
    assert certificate["reporting_period_end_ms"] == 1_798_761_600_000

    again = run(
        "retire", credit_id, "--beneficiary", "B", "--period-start", "2026-01-01",
        "--period-end", "2026-01-31", "--as", "bob.theblock",
    )  # fmt: skip
    assert again.status == 1
    assert again.err.startswith("error: invalid_state: ")


# -- errors ---------------------------------------------------------------------------------


def test_insufficient_balance_prints_the_reason_and_changes_nothing(
    run: Callable[..., Run], harness: MarketHarness, tmp_path: Path
) -> None:
    meter = buyer_and_seller(run, harness, tmp_path, block="1")
    before = harness.snapshot()
    refused = run("buy", meter.provider_id, "25", "--max-price", "0.10", "--as", "bob.theblock")
    assert refused.status == 1
    assert refused.out == ""
    lines = refused.err.splitlines()
    assert lines[0] == "error: insufficient_balance: the balance does not cover this"
    assert "  available: 1 BLOCK" in lines
    assert "  required: 2 BLOCK" in lines  # 25 kWh x 0.08
    assert any(line.startswith("hint: ") for line in lines)
    assert "Traceback" not in refused.err
    assert harness.snapshot() == before


def test_an_unknown_key_name_exits_2_with_a_clear_message(
    run: Callable[..., Run], harness: MarketHarness, keys: Path
) -> None:
    meter = selling_provider(harness, [10_000])
    result = run("buy", meter.provider_id, "1", "--max-price", "0.10", "--as", "nobody")
    assert result.status == 2
    assert result.out == ""
    assert result.err.splitlines()[0] == f"error: no key named 'nobody' in {keys}"
    assert "keys new nobody" in result.err
    assert run("keys", "show", "nobody").status == 2


def test_a_refused_reading_shows_the_rule_it_broke(
    run: Callable[..., Run], harness: MarketHarness, tmp_path: Path
) -> None:
    """The provider's side through the CLI: register, meter readings, on sale."""
    with_operator(run, harness, tmp_path)
    funded(run, "carol.theblock", "2000", "0xcarol-deposit-1")
    assert run("keys", "new", "wind_meter_1").status == 0
    registered = run(
        "--json", "provider", "register", "--as", "carol.theblock",
        "--display-name", "Windy Hill", "--energy-type", "wind", "--jurisdiction", "DE_BY",
        "--latitude", "48.137", "--longitude", "11.575", "--capacity-kwh", "50",
        "--price", "0.05", "--stake", "1000", "--meter-address", "wind_meter_1",
        "--meter-key", "wind_meter_1",
    )  # fmt: skip
    assert registered.status == 0, registered.err
    provider = registered.json()
    assert provider["meter_public_key"] == run("keys", "show", "wind_meter_1").out.strip()
    provider_id = provider["provider_id"]
    now = harness.clock.now

    def reading(counter_kwh: str, at: int) -> Run:
        return run(
            "meter", "submit", provider_id, "wind_meter_1", counter_kwh,
            "--meter-key", "wind_meter_1", "--at", str(at),
        )  # fmt: skip

    assert "baseline" in reading("100", now - 900).out
    minted = reading("105.5", now - 60)
    assert minted.status == 0, minted.err
    assert "minted 5.5 kWh" in minted.out
    assert "duplicate" in reading("105.5", now - 60).out

    implausible = reading("1105.5", now)  # 1,000 kWh in a minute from 50 kW
    assert implausible.status == 1
    assert implausible.err.startswith("error: reading_rejected: ")
    assert "  rejection: implausible_increase" in implausible.err.splitlines()

    offers = run("offers", "--energy-type", "wind")
    assert re.search(
        rf"^{provider_id}\s+Windy Hill\s+wind\s+DE_BY\s+0\.05\s+5\.5\s", offers.out, re.M
    )
    shown = run("provider", "show", provider_id)
    assert re.search(r"^stake\s+1000 BLOCK$", shown.out, re.M)
    assert re.search(r"^counter\s+105\.5 kWh$", run("meter", "show", "wind_meter_1").out, re.M)


def test_receipts_needs_a_provider_or_a_buyer(run: Callable[..., Run]) -> None:
    assert run("receipts").status == 2
    both = run("receipts", "--provider", "energy-0x0000000000000000", "--buyer", "bob.theblock")
    assert both.status == 2


def test_an_unreachable_marketplace_gets_a_hint_not_a_traceback(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/rpc"
    status = cli.main(["--url", url, "--keys", str(keys), "offers"])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.startswith(f"error: cannot reach the marketplace at {url}")
    assert "make run" in captured.err
    assert "Traceback" not in captured.err


def test_the_url_and_keys_come_from_the_environment(
    harness: MarketHarness,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ENERGY_MARKET_URL", "http://market.example:8000/rpc")
    monkeypatch.setenv("ENERGY_MARKET_KEYS", str(tmp_path / "env-keys"))
    urls: list[str] = []

    def factory(url: str) -> MarketplaceClient:
        urls.append(url)
        return harness.client

    assert cli.main(["keys", "new", "alice.theblock"], client_factory=factory) == 0
    assert (tmp_path / "env-keys" / "alice.theblock.key").exists()
    assert cli.main(["account", "create", "alice.theblock"], client_factory=factory) == 0
    assert urls == ["http://market.example:8000/rpc"]
    capsys.readouterr()


# -- --json ---------------------------------------------------------------------------------


def test_json_prints_the_json_rpc_result(
    run: Callable[..., Run], harness: MarketHarness, tmp_path: Path
) -> None:
    meter = buyer_and_seller(run, harness, tmp_path)

    providers = run("--json", "providers")
    assert providers.status == 0
    assert providers.json()["providers"][0]["provider_id"] == meter.provider_id
    assert providers.json()["next_cursor"] is None

    offers = run("offers", "--json")  # after the command works too
    (offer,) = offers.json()["offers"]
    assert offer["available_wh"] == 30_000
    assert offer["price_per_kwh"] == 0.08

    account = run("--json", "account", "show", "bob.theblock").json()
    assert account == harness.client.call("energy.getAccount", {"name": "bob.theblock"})
    assert account["balance"] == 50 * BLOCK

    keys = run("--json", "keys", "list").json()
    assert {k["name"] for k in keys} == {"operator", "bob.theblock"}
    portfolio = run("portfolio", "bob.theblock", "--json").json()
    assert portfolio["account"] == "bob.theblock"


def test_the_module_runs_as_a_program(tmp_path: Path) -> None:
    """``python -m energy_client``: --help, and usage errors exit 2."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "energy_client", "--keys", str(tmp_path)]
    helped = subprocess.run(
        [*command, "--help"], capture_output=True, text=True, env=env, check=False
    )
    assert helped.returncode == 0
    for name in ("keys", "account", "deposit", "providers", "offers", "buy", "settle", "receipts"):
        assert name in helped.stdout
    usage = subprocess.run([*command, "buy"], capture_output=True, text=True, env=env, check=False)
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr
    unreadable = subprocess.run(
        [*command, "receipts", "verify", str(tmp_path / "absent.json")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert unreadable.returncode == 2
    assert "error: cannot read" in unreadable.stderr


# -- disputes -------------------------------------------------------------------------------

JUDGES = tuple(f"val-{n}.theblock" for n in range(1, 7))  # six: five sit, one does not


def with_key(run: Callable[..., Run], tmp_path: Path, signer: Signer) -> None:
    """A harness account's key in the keys directory, as `keys import` brings it."""
    seed_file = tmp_path / f"{signer.account}.seed"
    seed_file.write_text(bytes(signer.key).hex() + "\n")
    assert run("keys", "import", signer.account, "--seed-file", str(seed_file)).status == 0


@dataclass(frozen=True)
class DisputeScene:
    """Bob bought and settled 2 kWh of the provider's first reading; six validators
    and carol, the flagger, have keys in the keys directory."""

    meter: SimulatedMeter
    bobs_credit: str
    reading_hash: str


@pytest.fixture
def scene(run: Callable[..., Run], harness: MarketHarness, tmp_path: Path) -> DisputeScene:
    meter = selling_provider(harness, [5_000, 5_000])
    for judge in validators(harness, *JUDGES):
        with_key(run, tmp_path, judge)
    with_key(run, tmp_path, harness.funded_account("carol.theblock", block=100))
    bob = harness.funded_account("bob.theblock", block=100)
    purchase = buy(harness, bob, meter.provider_id, 2)
    harness.client.call("energy.settle", {"transaction_id": purchase["transaction_id"]}, bob)
    (credit_id,) = purchase["credit_ids"]
    page = harness.client.call("energy.getCredits", {"provider_id": meter.provider_id})
    reading_hash = next(c["reading_hash"] for c in page["credits"] if c["credit_id"] == credit_id)
    return DisputeScene(meter, credit_id, reading_hash)


def flagged_by_carol(run: Callable[..., Run], scene: DisputeScene) -> str:
    flagged = run(
        "flag", "--credit", scene.bobs_credit, "--reason", "output at night",
        "--evidence", "https://example.org/weather", "--evidence", "no sun at 00:30 local",
        "--as", "carol.theblock",
    )  # fmt: skip
    assert flagged.status == 0, flagged.err
    found = re.search(r"^dispute\s+(dsp-[0-9a-f]{32})$", flagged.out, re.M)
    assert found is not None, flagged.out
    return found[1]


def get_dispute(harness: MarketHarness, dispute_id: str) -> dict:
    dispute: dict = harness.client.call("energy.getDispute", {"dispute_id": dispute_id})
    return dispute


def test_flag_opens_a_dispute_and_dispute_shows_it(
    run: Callable[..., Run], harness: MarketHarness, scene: DisputeScene, tmp_path: Path
) -> None:
    flagged = run(
        "flag", "--credit", scene.bobs_credit, "--reason", "output at night",
        "--evidence", "https://example.org/weather", "--evidence", "no sun at 00:30 local",
        "--as", "carol.theblock",
    )  # fmt: skip
    assert flagged.status == 0, flagged.err
    found = re.search(r"^dispute\s+(dsp-[0-9a-f]{32})$", flagged.out, re.M)
    assert found is not None
    dispute_id = found[1]
    dispute = get_dispute(harness, dispute_id)
    panel = dispute["panel"]
    assert len(panel) == 5 and set(panel) < set(JUDGES)
    assert re.search(r"^status\s+open\b", flagged.out, re.M)
    assert re.search(r"^flags\s+1 \(opened by carol\.theblock\)$", flagged.out, re.M)
    assert re.search(r"^bond\s+10 BLOCK posted \(10 BLOCK held\)$", flagged.out, re.M)
    assert re.search(rf"^panel\s+{re.escape(', '.join(panel))}$", flagged.out, re.M)
    assert f"dispute {dispute_id}" in flagged.err  # where to follow it
    account = harness.client.call("energy.getAccount", {"name": "carol.theblock"})
    assert account["balance"] == 90 * BLOCK  # the bond left the balance

    shown = run("dispute", dispute_id)
    assert shown.status == 0, shown.err
    assert re.search(rf"^subject\s+reading {scene.reading_hash}$", shown.out, re.M)
    assert re.search(
        rf"^provider\s+{scene.meter.provider_id} \(owner seller\.theblock\)$", shown.out, re.M
    )
    assert re.search(r"^deadline\s+2026-01-03T00:00:00Z ", shown.out, re.M)  # 48 h
    assert re.search(
        r"^votes\s+0 guilty, 0 cleared of 5; 3 agreeing votes decide$", shown.out, re.M
    )
    assert re.search(
        r"^carol\.theblock\s+2026-01-01T00:00:00Z\s+10\s+output at night$", shown.out, re.M
    )
    assert "evidence from carol.theblock: https://example.org/weather" in shown.out
    assert "evidence from carol.theblock: no sun at 00:30 local" in shown.out
    for seat, judge in enumerate(panel, start=1):
        assert re.search(rf"^\s*{seat}\s+{re.escape(judge)}\s+-$", shown.out, re.M)
    assert "resolution" not in shown.out
    assert run("--json", "dispute", dispute_id).json() == dispute

    # A second flag on the same reading, by its hash, joins the open dispute.
    with_key(run, tmp_path, harness.funded_account("erin.theblock", block=100))
    joined = run(
        "flag", "--reading", scene.reading_hash, "--reason", "the neighbours saw no sun",
        "--as", "erin.theblock",
    )  # fmt: skip
    assert joined.status == 0, joined.err
    assert re.search(rf"^dispute\s+{dispute_id}$", joined.out, re.M)
    assert re.search(r"^flags\s+2 \(joined by erin\.theblock\)$", joined.out, re.M)
    assert re.search(r"^bond\s+10 BLOCK posted \(20 BLOCK held\)$", joined.out, re.M)

    unknown = run("dispute", "dsp-" + "0" * 32)
    assert unknown.status == 1
    assert unknown.err.startswith("error: not_found: no such dispute")


def test_a_meter_window_is_flagged_with_utc_times_or_unix_seconds(
    run: Callable[..., Run], harness: MarketHarness, scene: DisputeScene
) -> None:
    meter = scene.meter.meter_address
    start, end = "2025-12-31T23:58:30Z", str(harness.clock.now)  # the last reading is in it
    flagged = run(
        "flag", "--meter", meter, "--from", start, "--to", end,
        "--reason", "a spike", "--as", "carol.theblock",
    )  # fmt: skip
    assert flagged.status == 0, flagged.err
    assert re.search(
        rf"^subject\s+meter {meter}, 2025-12-31T23:58:30Z - 2026-01-01T00:00:00Z$",
        flagged.out,
        re.M,
    )
    dispute_id = re.search(r"^dispute\s+(\S+)$", flagged.out, re.M)[1]  # type: ignore[index]
    subject = get_dispute(harness, dispute_id)["subject"]
    assert subject["window_start_ms"] == (harness.clock.now - 90) * 1000
    assert subject["window_end_ms"] == harness.clock.now * 1000

    def usage(*argv: str) -> Run:
        return run("flag", *argv, "--reason", "r", "--as", "carol.theblock")

    assert usage("--meter", meter, "--from", start).status == 2  # no --to
    assert usage("--credit", scene.bobs_credit, "--from", start).status == 2
    assert usage("--meter", meter, "--from", end, "--to", start).status == 2  # backwards
    assert usage("--meter", meter, "--from", "yesterday", "--to", end).status == 2
    assert usage("--meter", meter, "--from", "2026-01-01T00:00:00.0001Z", "--to", end).status == 2


def test_panel_votes_through_the_cli_reach_a_guilty_verdict_with_a_slash(
    run: Callable[..., Run], harness: MarketHarness, scene: DisputeScene
) -> None:
    dispute_id = flagged_by_carol(run, scene)
    panel = get_dispute(harness, dispute_id)["panel"]

    undecided = run("resolve", dispute_id)  # anyone; nothing to decide yet
    assert undecided.status == 0, undecided.err
    assert re.search(r"^status\s+open\b", undecided.out, re.M)
    assert "undecided" in undecided.err

    first = run("vote", dispute_id, "guilty", "--severity", "major", "--as", panel[0])
    assert first.status == 0, first.err
    assert first.out.startswith(f"{panel[0]} voted guilty (major)\n")
    assert re.search(rf"^\s*1\s+{re.escape(panel[0])}\s+guilty \(major\)\s+2026-", first.out, re.M)
    assert run("vote", dispute_id, "cleared", "--as", panel[1]).status == 0
    assert run("vote", dispute_id, "guilty", "--severity", "critical", "--as", panel[2]).status == 0
    decided = run("vote", dispute_id, "guilty", "--severity", "major", "--as", panel[3])
    assert decided.status == 0, decided.err
    assert decided.out.startswith(f"{panel[3]} voted guilty (major); that vote decided it\n")

    dispute = get_dispute(harness, dispute_id)
    assert dispute["status"] == "guilty"
    revocation = dispute["revocation"]
    shown = run("dispute", dispute_id)
    assert shown.status == 0, shown.err
    out = shown.out
    assert re.search(r"^status\s+guilty$", out, re.M)
    assert re.search(r"^votes\s+3 guilty, 1 cleared of 5;", out, re.M)
    assert re.search(rf"^\s*2\s+{re.escape(panel[1])}\s+cleared\s+2026-", out, re.M)
    assert re.search(rf"^\s*5\s+{re.escape(panel[4])}\s+did not vote$", out, re.M)
    assert re.search(r"^verdict\s+guilty, major$", out, re.M)  # the lower median
    assert re.search(r"^decided\s+by quorum, 2026-01-01T00:00:00Z$", out, re.M)
    assert re.search(rf"^non-voters\s+{re.escape(panel[4])}$", out, re.M)
    # 25 % of the 10,000 BLOCK stake; bob is refunded the 0.16 BLOCK he paid.
    assert re.search(r"^slash\s+2500 BLOCK from the stake \(stake left: 7500 BLOCK\)$", out, re.M)
    assert re.search(r"^refunded\s+0\.16 BLOCK from the slash", out, re.M)
    assert re.search(r"^flaggers' reward\s+249\.984 BLOCK$", out, re.M)
    assert re.search(r"^treasury\s+2249\.856 BLOCK$", out, re.M)
    assert re.search(r"^bonds\s+10 BLOCK returned to the flaggers$", out, re.M)
    assert re.search(rf"^revoked\s+{revocation['revoked_credits']} credit\(s\), 5 kWh$", out, re.M)
    receipt = revocation["slash_receipt"]
    assert re.search(
        rf"^slash receipt\s+{scene.meter.provider_id}/slashes #1 {receipt['receipt_hash']}$",
        out,
        re.M,
    )
    assert "unrefunded" not in out

    again = run("resolve", dispute_id)  # resolved once; asking again changes nothing
    assert again.status == 0 and again.out == out and again.err == ""
    listed = run("disputes", "--status", "guilty")
    assert re.search(
        rf"^{dispute_id}\s+guilty \(major\)\s+{scene.meter.provider_id}\s", listed.out, re.M
    )


def test_disputes_lists_what_a_validator_must_vote_on(
    run: Callable[..., Run], harness: MarketHarness, scene: DisputeScene
) -> None:
    dispute_id = flagged_by_carol(run, scene)
    panel = get_dispute(harness, dispute_id)["panel"]
    (outsider,) = set(JUDGES) - set(panel)

    due = run("disputes", "--validator", panel[0])
    assert due.status == 0, due.err
    assert re.search(
        rf"^{dispute_id}\s+open\s+{scene.meter.provider_id}\s+reading {scene.reading_hash[:16]}"
        rf"\s+1\s+10\s+0/5\s+2026-01-03T00:00:00Z\s+due$",
        due.out,
        re.M,
    )
    assert f"{panel[0]} has 1 dispute(s) to vote on" in due.err
    assert run("vote", dispute_id, "cleared", "--as", panel[0]).status == 0
    voted = run("disputes", "--validator", panel[0])
    assert re.search(rf"^{dispute_id}\s.*\s1/5\s+\S+\s+cleared$", voted.out, re.M)
    assert "to vote on" not in voted.err

    assert run("disputes", "--validator", outsider).out.strip() == (
        f"{outsider} was drawn for no disputes"
    )
    for filters in ([], ["--provider", scene.meter.provider_id], ["--flagger", "carol.theblock"]):
        assert dispute_id in run("disputes", *filters).out
    assert run("disputes", "--status", "cleared").out.strip() == "no cleared disputes"
    assert run("disputes", "--flagger", "bob.theblock").out.strip() == (
        "no disputes flagged by bob.theblock"
    )
    assert run("--json", "disputes", "--validator", panel[0]).json()["disputes"] == [
        get_dispute(harness, dispute_id)
    ]
    assert run("disputes", "--validator", panel[0], "--status", "open").status == 2  # one filter


def test_a_refused_vote_prints_the_reason_and_exits_non_zero(
    run: Callable[..., Run], harness: MarketHarness, scene: DisputeScene
) -> None:
    dispute_id = flagged_by_carol(run, scene)
    panel = get_dispute(harness, dispute_id)["panel"]
    (outsider,) = set(JUDGES) - set(panel)
    before = harness.snapshot()

    refused = run("vote", dispute_id, "guilty", "--severity", "minor", "--as", outsider)
    assert refused.status == 1
    assert refused.out == ""
    lines = refused.err.splitlines()
    assert lines[0].startswith("error: not_on_panel: ")
    assert any(line.startswith("hint: ") and f"dispute {dispute_id}" in line for line in lines)
    assert "Traceback" not in refused.err
    assert harness.snapshot() == before

    # Bad usage is caught before anything is sent.
    assert run("vote", dispute_id, "guilty", "--as", panel[0]).status == 2
    assert run("vote", dispute_id, "cleared", "--severity", "minor", "--as", panel[0]).status == 2
    assert run("vote", dispute_id, "innocent", "--as", panel[0]).status == 2

    assert run("vote", dispute_id, "cleared", "--as", panel[0]).status == 0
    twice = run("vote", dispute_id, "cleared", "--as", panel[0])
    assert twice.status == 1
    assert twice.err.startswith("error: already_voted: ")
    assert harness.snapshot() != before  # the one vote that counted


# -- the market's figures ---------------------------------------------------------------------

# The analytics are folded from the tables' streams, which the in-memory store has not got.
ON_DYNAMODB = pytest.mark.parametrize("market", ["dynamodb"], indirect=True)


@pytest.fixture
def fold_streams(harness: MarketHarness, dynamodb: object) -> StreamPump:
    """Fold what the tables' streams carry into the analytics, as the consumers would."""
    return StreamPump(dynamodb, harness.deps, tables_from_environment(dict(os.environ)))


@ON_DYNAMODB
def test_stats_prices_activity_and_leaders_show_what_the_streams_carried(
    run: Callable[..., Run], harness: MarketHarness, fold_streams: StreamPump
) -> None:
    # Given a seller's 7.5 kWh on sale at 0.10, read 4 to 1 minutes before midnight,
    # and Bob's purchase of 3 kWh at midnight, settled
    meter = selling_provider(harness, [2_500, 2_500, 2_500], price_per_kwh="0.10")
    bob = harness.funded_account("bob.theblock", block=100)
    purchase = buy(harness, bob, meter.provider_id, "3")
    harness.client.call("energy.settle", {"transaction_id": purchase["transaction_id"]}, bob)
    assert fold_streams() > 0

    stats = run("stats")
    assert stats.status == 0, stats.err
    for line in (
        r"capacity\s+10000 kWh on the market",
        r"on sale\s+4\.5 kWh",
        r"providers\s+1 registered, 1 on the market, 1 active in 24 h, 1 meter\(s\) on time",
        r"buyers\s+1 active in 24 h",
        r"price, 24 h\s+0\.1 BLOCK/kWh \(volume-weighted\)",
        r"traded\s+3 kWh in 1 purchase\(s\) in 24 h; 3 kWh all time",
        r"revenue\s+0\.3 BLOCK in 24 h; 0\.3 BLOCK all time",
        r"carbon offset\s+1\.005 kg CO2 \(as 0 trees absorb in a year\)",
        r"grid health\s+100/100: meters on time 100 %, readings accepted 100 %, supply 100 %",
        r"readings, 24 h\s+4 accepted; refused: none",
        r"solar\s+10000\s+7\.5\s+3",
        rf"1\s+{meter.provider_id}\s+Sunny Rooftop\s+solar\s+US_CA\s+3",
    ):
        assert re.search(rf"^{line}$", stats.out, re.M), (line, stats.out)
    shown = json.loads(run("stats", "--json").out, parse_float=Decimal)
    assert shown == harness.client.call("energy.getMarketStats")

    prices = run("prices", "--type", "solar")
    assert prices.status == 0, prices.err
    assert prices.out.startswith("energy type solar: buckets of 1 h from ")
    assert re.search(
        r"^2026-01-01T00:00:00Z\s+0\.1\s+0\.1\s+0\.1\s+0\.1\s+0\.1\s+3\s+1$", prices.out, re.M
    )
    assert "no purchases in this window" in run("prices", "--jurisdiction", "DE_BY").out
    assert run("prices", "--hours", "720", "--json").json()["buckets"][0]["volume_wh"] == 3_000

    activity = run("activity")
    assert activity.status == 0, activity.err
    assert re.search(
        r"^2025-12-31T23:00:00Z\s+0\s+0\s+0\s+0\s+0\s+4\s+solar 7\.5\s+0$", activity.out, re.M
    )
    assert re.search(
        r"^2026-01-01T00:00:00Z\s+1\s+3\s+0\.3\s+3\s+0\.3\s+0\s+-\s+1\.005$", activity.out, re.M
    )
    daily = run("activity", "--daily", "--hours", "48")
    assert re.search(r"^2025-12-31\s+0\s", daily.out, re.M)
    assert re.search(r"^2026-01-01\s+1\s", daily.out, re.M)
    assert columns_line_up(activity.out, "REVENUE BLOCK")

    leaders = run("leaders", "--window", "all", "--limit", "3")
    assert leaders.status == 0, leaders.err
    assert leaders.out.startswith("providers by energy sold, all time\n")
    assert re.search(
        rf"^1\s+{meter.provider_id}\s+Sunny Rooftop\s+solar\s+US_CA\s+3$", leaders.out, re.M
    )
    assert run("leaders", "--window", "7d", "--json").json()["providers"][0]["sold_wh"] == 3_000


def test_the_figures_of_a_market_without_trades_say_so(run: Callable[..., Run]) -> None:
    stats = run("stats")
    assert stats.status == 0, stats.err
    assert re.search(r"^price, 24 h\s+- \(volume-weighted\)$", stats.out, re.M)
    assert re.search(r"^grid health\s+50/100: meters on time 0 %", stats.out, re.M)
    assert stats.out.rstrip().endswith("top providers, 24 h\n(no energy sold)")
    assert run("prices").out.endswith("no purchases in this window\n")
    assert run("activity", "--daily").out == "no activity in this window\n"
    assert run("leaders").out.endswith("(no energy sold)\n")


def test_analytics_options_out_of_range_are_bad_usage(run: Callable[..., Run]) -> None:
    for argv in (
        ["prices", "--hours", "721"],
        ["prices", "--hours", "0"],
        ["prices", "--type", "solar", "--jurisdiction", "US_CA"],
        ["activity", "--hours", "many"],
        ["leaders", "--limit", "21"],
        ["leaders", "--window", "30d"],
    ):
        refused = run(*argv)
        assert refused.status == 2, argv
        assert refused.out == "", argv
