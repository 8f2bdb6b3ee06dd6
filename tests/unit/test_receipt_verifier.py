"""Receipt chains checked offline: each kind of tampering is caught where it was done.

Receipts here are sealed with real Ed25519 keys; an export is the JSON the
``export`` command writes. Also: the ``verify`` command's output and exit
status, an export of a real (in-memory) market, and docs/receipts.md's test
vector, rebuilt from the page.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from chalicelib.domain import signing
from chalicelib.domain.receipts import (
    GENESIS_HASH,
    ChainHead,
    ChainReport,
    MalformedReceipt,
    Receipt,
    receipt_from_json,
    sealed,
    signed_head,
    verify_chain,
    verify_export,
)
from energy_client import receipts as cli
from energy_client.rpc_client import MarketplaceClient
from tests.support import MARKETPLACE_ID, MarketHarness, buy, memory_market, selling_provider

ROOT = Path(__file__).resolve().parents[2]
RECEIPTS_DOC = ROOT / "docs" / "receipts.md"

KEY = SigningKey(bytes(range(100, 132)))  # the marketplace's receipt key
OTHER_KEY = SigningKey(bytes(range(200, 232)))  # anyone else's
PUBLIC_KEY = KEY.verify_key.encode().hex()
OTHER_PUBLIC_KEY = OTHER_KEY.verify_key.encode().hex()
CHAIN = "energy-0xaaaaaaaaaaaaaaaa"
OTHER_CHAIN = "energy-0xbbbbbbbbbbbbbbbb"


def chain_of(
    count: int = 5,
    chain: str = CHAIN,
    key: SigningKey = KEY,
    marketplace_id: str = MARKETPLACE_ID,
) -> list[Receipt]:
    """``count`` linked settlement receipts of one provider, oldest first."""
    receipts: list[Receipt] = []
    previous = GENESIS_HASH
    for sequence in range(1, count + 1):
        wh = 1_000 * sequence
        fee = 2 * sequence
        receipt = sealed(
            Receipt(
                marketplace_id=marketplace_id,
                chain=chain,
                sequence=sequence,
                previous_hash=previous,
                kind="settlement",
                transaction_id=f"pur-{chain[-8:]}{sequence:024x}",
                buyer="bob.theblock" if sequence % 2 else "carol.theblock",
                provider_id=chain,
                provider_owner="seller.theblock",
                wh=wh,
                price_micro_block_per_kwh=80_000,
                total_cost_micro_block=80 * wh,
                fee_micro_block=fee,
                provider_amount_micro_block=80 * wh - fee,
                credit_ids=(hashlib.sha256(f"{chain}/{sequence}".encode()).hexdigest(),),
                settled_at_ms=1_767_225_600_000 + sequence * 60_000,
                settled_by="buyer",
            ),
            key,
        )
        receipts.append(receipt)
        previous = receipt.receipt_hash
    return receipts


SIGNED_AT_MS = 1_767_312_000_000  # when the service signed the export's heads


def head_of(chain: list[Receipt], key: SigningKey = KEY) -> dict[str, Any]:
    """The chain's head as the service signs it when the export reads it."""
    last = chain[-1]
    head = ChainHead(last.chain, last.sequence, last.receipt_hash)
    return signed_head(head, last.marketplace_id, SIGNED_AT_MS, key).to_json()


def export_of(
    *chains: list[Receipt], public_key: str = PUBLIC_KEY, key: SigningKey = KEY
) -> dict[str, Any]:
    return {
        "format": cli.EXPORT_FORMAT,
        "marketplace_id": MARKETPLACE_ID,
        "receipt_public_key": public_key,
        "heads": [head_of(chain, key) for chain in chains],
        "receipts": [receipt.to_json() for chain in chains for receipt in chain],
    }


def the_broken(reports: list[ChainReport]) -> ChainReport:
    broken = [report for report in reports if not report.intact]
    assert len(broken) == 1, reports
    return broken[0]


# -- an intact export ------------------------------------------------------------


def test_an_intact_export_passes() -> None:
    first, second = chain_of(5), chain_of(3, OTHER_CHAIN)
    reports = verify_export(export_of(first, second), PUBLIC_KEY)
    assert [(r.chain, r.receipts, r.intact) for r in reports] == [
        (CHAIN, 5, True),
        (OTHER_CHAIN, 3, True),
    ]
    assert reports[0].head is not None
    assert reports[0].head.receipt_hash == first[-1].receipt_hash
    assert all(r.broken_at is None and r.problem is None for r in reports)


def test_chains_may_be_interleaved_in_an_export() -> None:
    export = export_of(chain_of(3), chain_of(3, OTHER_CHAIN))
    receipts = export["receipts"]
    export["receipts"] = [receipts[i] for i in (0, 3, 1, 4, 2, 5)]
    assert all(r.intact for r in verify_export(export, PUBLIC_KEY))


# -- tampering ---------------------------------------------------------------------


def test_a_changed_amount_breaks_the_hash() -> None:
    export = export_of(chain_of(5))
    export["receipts"][2]["total_cost_micro_block"] += 1

    report = the_broken(verify_export(export, PUBLIC_KEY))
    assert (report.broken_at, report.receipts) == (2, 2)
    assert report.problem == "receipt_hash does not match its contents: it was altered"
    assert report.head is not None and report.head.sequence == 2


@pytest.mark.parametrize("signed_by", ["another key", "nobody: the old signature kept"])
def test_a_changed_amount_with_its_hash_recomputed_breaks_the_signature(signed_by: str) -> None:
    chain = chain_of(5)
    changed = replace(chain[2], total_cost_micro_block=chain[2].total_cost_micro_block * 10)
    if signed_by == "another key":
        chain[2] = sealed(changed, OTHER_KEY)
    else:
        rehashed = hashlib.sha256(changed.message()).hexdigest()
        chain[2] = replace(changed, receipt_hash=rehashed)
    assert chain[2].receipt_hash == hashlib.sha256(chain[2].message()).hexdigest()

    report = the_broken(verify_export(export_of(chain), PUBLIC_KEY))
    assert (report.broken_at, report.receipts) == (2, 2)
    assert report.problem == "signature is not the marketplace's"


def test_two_swapped_receipts_are_out_of_order() -> None:
    export = export_of(chain_of(5))
    receipts = export["receipts"]
    receipts[2], receipts[3] = receipts[3], receipts[2]

    report = the_broken(verify_export(export, PUBLIC_KEY))
    assert (report.broken_at, report.receipts) == (2, 2)
    assert report.problem == "sequence 4 follows 2: a receipt is missing or out of order"


def test_a_deleted_middle_receipt_leaves_a_gap() -> None:
    export = export_of(chain_of(5))
    del export["receipts"][2]

    report = the_broken(verify_export(export, PUBLIC_KEY))
    assert (report.broken_at, report.receipts) == (2, 2)  # position 2 now holds sequence 4
    assert report.problem == "sequence 4 follows 2: a receipt is missing or out of order"


def test_a_duplicated_receipt_is_out_of_order() -> None:
    export = export_of(chain_of(5))
    export["receipts"].insert(3, copy.deepcopy(export["receipts"][2]))

    report = the_broken(verify_export(export, PUBLIC_KEY))
    assert (report.broken_at, report.receipts) == (3, 3)
    assert report.problem == "sequence 3 follows 3: a receipt is missing or out of order"


def test_a_deleted_newest_receipt_is_caught_by_the_head() -> None:
    chain = chain_of(5)
    export = export_of(chain)
    del export["receipts"][4]
    # What remains is a perfect chain: only the head says it ended later.
    assert verify_chain(chain[:4], PUBLIC_KEY).intact

    report = the_broken(verify_export(export, PUBLIC_KEY))
    assert (report.broken_at, report.receipts) == (4, 4)
    assert report.problem == "the chain head is receipt 5 but the export ends at 4"


@pytest.mark.parametrize("cut", [1, 3])
def test_newest_receipts_cut_with_the_head_edited_to_match_are_caught(cut: int) -> None:
    chain = chain_of(5)
    export = export_of(chain)
    del export["receipts"][5 - cut :]
    # The truncator moves the head back to the last receipt left ...
    kept = chain[4 - cut]
    export["heads"][0].update(sequence=kept.sequence, receipt_hash=kept.receipt_hash)

    report = the_broken(verify_export(export, PUBLIC_KEY))
    assert (report.broken_at, report.receipts) == (5 - cut, 5 - cut)
    assert report.problem == (
        "the chain head is not signed by the marketplace's key: it was changed"
    )


def test_a_head_signed_again_by_another_key_is_caught() -> None:
    chain = chain_of(5)
    export = export_of(chain)
    del export["receipts"][4]
    # ... or signs a head of its own for the shorter chain.
    export["heads"] = [head_of(chain[:4], OTHER_KEY)]
    report = the_broken(verify_export(export, PUBLIC_KEY))
    assert report.problem == (
        "the chain head is not signed by the marketplace's key: it was changed"
    )


def test_a_head_of_another_marketplace_is_caught() -> None:
    chain = chain_of(3)
    export = export_of(chain)
    staging = ChainHead(CHAIN, 3, chain[-1].receipt_hash)
    export["heads"] = [
        signed_head(staging, "energy-marketplace-staging", SIGNED_AT_MS, KEY).to_json()
    ]
    report = the_broken(verify_export(export, PUBLIC_KEY))
    assert report.problem == "the chain head is from marketplace energy-marketplace-staging"


def test_an_older_signed_head_proves_the_chain_only_up_to_its_time() -> None:
    # A head the marketplace signed earlier, with the chain as it was then, is
    # genuine: the report carries when it was signed, which is how old it is.
    chain = chain_of(5)
    earlier = export_of(chain[:3])
    earlier["heads"][0] = signed_head(
        ChainHead(CHAIN, 3, chain[2].receipt_hash), MARKETPLACE_ID, SIGNED_AT_MS - 86_400_000, KEY
    ).to_json()
    [report] = verify_export(earlier, PUBLIC_KEY)
    assert report.intact and report.head_signed_at_ms == SIGNED_AT_MS - 86_400_000


def test_a_chain_with_every_receipt_deleted_is_caught_by_its_head() -> None:
    export = export_of(chain_of(2), chain_of(3, OTHER_CHAIN))
    export["receipts"] = export["receipts"][:2]

    report = the_broken(verify_export(export, PUBLIC_KEY))
    assert (report.chain, report.broken_at, report.receipts) == (OTHER_CHAIN, 0, 0)
    assert report.problem == "the chain head is receipt 3 but the export ends at 0"


def test_a_receipt_of_another_chain_inserted_is_caught() -> None:
    ours, theirs = chain_of(5), chain_of(3, OTHER_CHAIN)
    export = export_of(ours)
    # A genuine receipt, signed by the marketplace, but of a chain not exported.
    export["receipts"].insert(2, theirs[0].to_json())

    reports = verify_export(export, PUBLIC_KEY)
    assert [(r.chain, r.intact) for r in reports] == [(CHAIN, True), (OTHER_CHAIN, False)]
    report = the_broken(reports)
    assert (report.broken_at, report.receipts) == (2, 0)
    assert report.problem == "the export has no head for this chain: its receipts were added"

    # Checked as one chain, a foreign receipt is named for what it is.
    mixed = [*ours[:2], theirs[2], *ours[2:]]
    report = verify_chain(mixed, PUBLIC_KEY)
    assert (report.broken_at, report.receipts) == (2, 2)
    assert report.problem == f"receipt belongs to chain {OTHER_CHAIN}"


def test_a_receipt_of_another_chain_in_the_export_cannot_join_this_one() -> None:
    ours, theirs = chain_of(5), chain_of(3, OTHER_CHAIN)
    export = export_of(ours, theirs)
    forged = theirs[1].to_json() | {"chain": CHAIN, "provider_id": CHAIN}
    export["receipts"][2] = forged  # their sequence 2, relabelled, for our sequence 3

    report = the_broken(verify_export(export, PUBLIC_KEY))
    assert (report.chain, report.broken_at) == (CHAIN, 2)
    assert report.problem == "sequence 2 follows 2: a receipt is missing or out of order"


def test_the_wrong_marketplace_id_is_caught() -> None:
    export = export_of(chain_of(5))
    export["marketplace_id"] = "energy-marketplace-elsewhere"

    report = the_broken(verify_export(export, PUBLIC_KEY))
    assert (report.broken_at, report.receipts) == (0, 0)
    assert report.problem == f"receipt is from marketplace {MARKETPLACE_ID}"


def test_receipts_of_another_marketplace_with_the_same_key_are_caught() -> None:
    export = export_of(chain_of(5, marketplace_id="energy-marketplace-staging"))
    export["marketplace_id"] = MARKETPLACE_ID

    report = the_broken(verify_export(export, PUBLIC_KEY))
    assert (report.broken_at, report.receipts) == (0, 0)
    assert report.problem == "receipt is from marketplace energy-marketplace-staging"


def test_a_signature_by_another_key_is_caught() -> None:
    # Everything re-signed by someone else, their key written into the export:
    forged = export_of(chain_of(5, key=OTHER_KEY), public_key=OTHER_PUBLIC_KEY, key=OTHER_KEY)
    # ... is intact as a file (integrity), but not the marketplace's (origin).
    assert all(r.intact for r in verify_export(forged))

    report = the_broken(verify_export(forged, PUBLIC_KEY))
    assert (report.broken_at, report.receipts) == (0, 0)
    assert report.problem == "signature is not the marketplace's"


def test_one_receipt_signed_by_another_key_is_caught() -> None:
    chain = chain_of(5)
    chain[3] = sealed(chain[3], OTHER_KEY)  # same contents, same hash, other signature
    report = the_broken(verify_export(export_of(chain), PUBLIC_KEY))
    assert (report.broken_at, report.receipts) == (3, 3)
    assert report.problem == "signature is not the marketplace's"


# -- malformed exports -----------------------------------------------------------------


def _missing_field(export: dict[str, Any]) -> None:
    del export["receipts"][1]["buyer"]


def _float_amount(export: dict[str, Any]) -> None:
    export["receipts"][1]["total_cost_micro_block"] = 80_000.0


def _bool_for_int(export: dict[str, Any]) -> None:
    export["receipts"][1]["sequence"] = True


def _extra_field(export: dict[str, Any]) -> None:
    export["receipts"][1]["note"] = "added"


def _credit_ids_not_a_list(export: dict[str, Any]) -> None:
    export["receipts"][1]["credit_ids"] = "c1"


def _number_for_a_string(export: dict[str, Any]) -> None:
    export["receipts"][1]["buyer"] = 7


def _receipt_not_an_object(export: dict[str, Any]) -> None:
    export["receipts"][1] = ["not", "a", "receipt"]


def _no_heads(export: dict[str, Any]) -> None:
    del export["heads"]


def _head_without_a_hash(export: dict[str, Any]) -> None:
    del export["heads"][0]["receipt_hash"]


def _receipts_not_a_list(export: dict[str, Any]) -> None:
    export["receipts"] = {}


def _no_key(export: dict[str, Any]) -> None:
    del export["receipt_public_key"]


MALFORMED = [
    (_missing_field, "a receipt has exactly the documented fields"),
    (_float_amount, "total_cost_micro_block must be an integer"),
    (_bool_for_int, "sequence must be an integer"),
    (_extra_field, "a receipt has exactly the documented fields"),
    (_credit_ids_not_a_list, "credit_ids must be a list of strings"),
    (_number_for_a_string, "buyer must be a string"),
    (_receipt_not_an_object, "a receipt has exactly the documented fields"),
    (_no_heads, "an export lists the head of every chain it holds"),
    (
        _head_without_a_hash,
        "a head has marketplace_id, chain, sequence, receipt_hash, signed_at_ms and signature",
    ),
    (_receipts_not_a_list, "an export holds a list of receipts"),
    (_no_key, "no receipt public key to verify against"),
]


@pytest.mark.parametrize(
    ("damage", "message"), MALFORMED, ids=[damage.__name__.strip("_") for damage, _ in MALFORMED]
)
def test_a_malformed_export_is_refused(damage: Any, message: str) -> None:
    export = export_of(chain_of(3))
    damage(export)
    with pytest.raises(MalformedReceipt) as refused:
        verify_export(export)
    assert str(refused.value) == message


def test_an_export_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(MalformedReceipt):
        verify_export([chain_of(1)[0].to_json()])


def test_a_receipt_round_trips_through_json() -> None:
    receipt = chain_of(2)[1]
    assert receipt_from_json(json.loads(json.dumps(receipt.to_json()))) == receipt


# -- the verify command ------------------------------------------------------------


def write(path: Path, export: Any) -> str:
    path.write_text(json.dumps(export, indent=2), encoding="utf-8")
    return str(path)


def test_verify_passes_an_intact_export_with_status_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path / "export.json", export_of(chain_of(5), chain_of(2, OTHER_CHAIN)))

    assert cli.main(["verify", file, "--public-key", PUBLIC_KEY]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{CHAIN}: 5 receipts verified, OK (head: sequence 5, signed 2026-01-02T00:00:00.000Z)",
        f"{OTHER_CHAIN}: 2 receipts verified, OK (head: sequence 2, signed 2026-01-02T00:00:00.000Z)",
        "all 2 chains intact (7 receipts verified)",
    ]
    assert err == ""


def test_verify_refuses_a_v1_export_whose_heads_are_unsigned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = export_of(chain_of(2)) | {"format": "energy-marketplace/receipts-export/v1"}
    file = write(tmp_path / "export.json", export)
    assert cli.main(["verify", file, "--public-key", PUBLIC_KEY]) == 2
    assert "whose chain heads are not signed: export again" in capsys.readouterr().err


def test_verify_without_a_key_says_it_checks_integrity_not_origin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path / "export.json", export_of(chain_of(2)))
    assert cli.main(["verify", file]) == 0
    out, err = capsys.readouterr()
    assert "all 1 chains intact" in out
    assert PUBLIC_KEY in err and "intact, not that the marketplace issued it" in err


def test_verify_names_the_first_broken_link_with_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = export_of(chain_of(2, OTHER_CHAIN), chain_of(5))
    del export["receipts"][4]  # CHAIN's sequence 3, at position 4
    file = write(tmp_path / "export.json", export)

    assert cli.main(["verify", file, "--public-key", PUBLIC_KEY]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{CHAIN}: 2 receipts verified, BROKEN at position 4 (sequence 4): "
        "sequence 4 follows 2: a receipt is missing or out of order",
        f"{OTHER_CHAIN}: 2 receipts verified, OK (head: sequence 2, signed 2026-01-02T00:00:00.000Z)",
        "1 of 2 chains BROKEN (4 receipts verified)",
    ]


def test_verify_names_a_missing_newest_receipt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = export_of(chain_of(5))
    del export["receipts"][4]
    file = write(tmp_path / "export.json", export)

    assert cli.main(["verify", file, "--public-key", PUBLIC_KEY]) == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        f"{CHAIN}: 4 receipts verified, BROKEN at position 4 (sequence 5, missing): "
        "the chain head is receipt 5 but the export ends at 4"
    )


def test_verify_with_the_wrong_key_fails_and_says_the_export_names_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path / "export.json", export_of(chain_of(3)))
    assert cli.main(["verify", file, "--public-key", OTHER_PUBLIC_KEY]) == 1
    out, err = capsys.readouterr()
    assert (
        f"{CHAIN}: 0 receipts verified, BROKEN at position 0 (sequence 1): "
        "signature is not the marketplace's"
    ) in out.splitlines()
    assert f"the export names another receipt key ({PUBLIC_KEY})" in err


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        (None, "cannot read"),
        ("{not json", "is not JSON"),
        ("[]", "is not a receipts export"),
        ('{"format": "something/else"}', "is not a receipts export"),
        ("float", "total_cost_micro_block must be an integer"),
        ("bool", "wh must be an integer"),
        ("missing", "a receipt has exactly the documented fields"),
        ("surrogate", "buyer must be a string"),
    ],
    ids=["no-file", "not-json", "a-list", "other-format", "float", "bool", "missing", "surrogate"],
)
def test_verify_refuses_what_is_not_an_export_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], contents: str | None, message: str
) -> None:
    path = tmp_path / "export.json"
    if contents in {"float", "bool", "missing", "surrogate"}:
        export = export_of(chain_of(2))
        receipt = export["receipts"][1]
        if contents == "float":
            receipt["total_cost_micro_block"] = 160_000.0
        elif contents == "bool":
            receipt["wh"] = False
        elif contents == "missing":
            del receipt["signature"]
        else:
            receipt["buyer"] = "\ud800"  # valid JSON, but no UTF-8 text to hash
        write(path, export)
    elif contents is not None:
        path.write_text(contents, encoding="utf-8")

    assert cli.main(["verify", str(path), "--public-key", PUBLIC_KEY]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ") and message in err


def test_verify_refuses_a_key_that_is_not_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path / "export.json", export_of(chain_of(1)))
    assert cli.main(["verify", file, "--public-key", "abc"]) == 2
    assert "--public-key is not a hex Ed25519 public key" in capsys.readouterr().err


def test_the_module_runs_as_a_command(tmp_path: Path) -> None:
    intact = write(tmp_path / "intact.json", export_of(chain_of(3)))
    export = export_of(chain_of(3))
    export["receipts"][1]["wh"] += 1
    altered = write(tmp_path / "altered.json", export)
    command = [sys.executable, "-m", "energy_client.receipts", "verify"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )

    assert run(intact, "--public-key", PUBLIC_KEY).returncode == 0
    broken = run(altered, "--public-key", PUBLIC_KEY)
    assert broken.returncode == 1
    assert "BROKEN at position 1 (sequence 2): receipt_hash does not match" in broken.stdout
    unreadable = run(str(tmp_path / "absent.json"))
    assert unreadable.returncode == 2
    assert "Traceback" not in unreadable.stderr and "cannot read" in unreadable.stderr


# -- an export of a market ---------------------------------------------------------------


def settled_market(purchases: int) -> tuple[MarketHarness, str]:
    """A market whose one provider has settled ``purchases`` sales (and has 1 kWh
    more on sale); and the provider's id."""
    market = memory_market()
    meter = selling_provider(market, [1_000] * (purchases + 1))
    bob = market.funded_account("bob.theblock", block=100)
    for n in range(purchases):
        purchase = buy(market, bob, meter.provider_id, "1", idempotency_key=f"buy-{n:05d}")
        market.client.call("energy.settle", {"transaction_id": purchase["transaction_id"]}, bob)
    return market, meter.provider_id


def test_an_export_of_a_market_verifies_and_tampering_with_it_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    market, provider_id = settled_market(3)
    export = cli.export_receipts(market.client, [provider_id, provider_id], page_size=2)

    info = market.client.call("energy.getMarketInfo")
    assert export["format"] == "energy-marketplace/receipts-export/v2"
    assert export["marketplace_id"] == info["marketplace_id"] == MARKETPLACE_ID
    assert export["receipt_public_key"] == info["receipt_public_key"]
    assert [r["sequence"] for r in export["receipts"]] == [1, 2, 3]  # paged, once
    listed = market.client.call("energy.getReceipts", {"provider_id": provider_id})
    assert export["receipts"] == listed["receipts"]  # exactly as the API returns them
    assert export["heads"] == [listed["head"]]

    file = tmp_path / "export.json"
    file.write_text(json.dumps(export), encoding="utf-8")
    key = info["receipt_public_key"]
    assert cli.main(["verify", str(file), "--public-key", key]) == 0
    assert f"{provider_id}: 3 receipts verified, OK" in capsys.readouterr().out

    export["receipts"][1]["provider_amount_micro_block"] += 1_000
    file.write_text(json.dumps(export), encoding="utf-8")
    assert cli.main(["verify", str(file), "--public-key", key]) == 1
    assert (
        f"{provider_id}: 1 receipt verified, BROKEN at position 1 (sequence 2): "
        "receipt_hash does not match its contents: it was altered"
    ) in capsys.readouterr().out.splitlines()


def test_receipts_cut_from_a_real_export_are_caught() -> None:
    market, provider_id = settled_market(3)
    export = cli.export_receipts(market.client, [provider_id])
    key = market.client.call("energy.getMarketInfo")["receipt_public_key"]
    head = export["heads"][0]
    assert (head["sequence"], head["marketplace_id"]) == (3, MARKETPLACE_ID)
    assert head["signed_at_ms"] == market.clock.now * 1000
    [report] = verify_export(export, key)
    assert report.intact and report.head_signed_at_ms == market.clock.now * 1000

    cut = copy.deepcopy(export)
    del cut["receipts"][-1]
    [report] = verify_export(cut, key)
    assert report.problem == "the chain head is receipt 3 but the export ends at 2"
    cut["heads"][0].update(sequence=2, receipt_hash=cut["receipts"][-1]["receipt_hash"])
    [report] = verify_export(cut, key)
    assert report.problem == "the chain head is not signed by the marketplace's key: it was changed"


@contextmanager
def served(market: MarketHarness) -> Iterator[str]:
    """The market's JSON-RPC endpoint over real HTTP on a free local port."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = market.dispatcher.handle(body) or b""
            self.send_response(200 if answer else 204)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/rpc"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_export_command_writes_what_verify_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    market, provider_id = settled_market(3)
    file = tmp_path / "receipts.json"
    with served(market) as url:
        argv = ["export", "--url", url, "--provider", provider_id, "-o", str(file)]
        assert cli.main(argv) == 0
        assert cli.main(["export", "--url", url, "--provider", provider_id]) == 0
    out, err = capsys.readouterr()
    assert f"exported 3 receipts of 1 chains to {file}" in err
    assert json.loads(out) == json.loads(file.read_text())  # stdout without -o

    key = market.client.call("energy.getMarketInfo")["receipt_public_key"]
    assert cli.main(["verify", str(file), "--public-key", key]) == 0
    assert "all 1 chains intact (3 receipts verified)" in capsys.readouterr().out


def test_the_export_command_fails_cleanly_without_a_marketplace(
    capsys: pytest.CaptureFixture[str],
) -> None:
    market, _ = settled_market(0)
    with served(market) as url:
        pass  # the port is closed again
    assert cli.main(["export", "--url", url, "--provider", "energy-0x01"]) == 1
    assert capsys.readouterr().err.startswith("error: the export failed:")


def test_an_export_stops_at_the_head_it_started_from() -> None:
    """A settlement while the export pages is left for the next export."""
    market, provider_id = settled_market(3)
    carol = market.funded_account("carol.theblock", block=100)
    late = buy(market, carol, provider_id, "1", max_price="0.10", idempotency_key="late-00001")
    pages = 0

    def transport(body: bytes) -> bytes | None:
        nonlocal pages
        answer = market.dispatcher.handle(body)
        if b"energy.getReceipts" in body:
            pages += 1
            if pages == 1:  # settled after the first page was read
                market.client.call(
                    "energy.settle", {"transaction_id": late["transaction_id"]}, carol
                )
        return answer

    client = MarketplaceClient(transport, MARKETPLACE_ID, clock=market.clock)
    export = cli.export_receipts(client, [provider_id], page_size=2)
    assert [r["sequence"] for r in export["receipts"]] == [1, 2, 3]
    assert export["heads"][0]["sequence"] == 3
    assert all(r.intact for r in verify_export(export))
    now = market.client.call("energy.getReceipts", {"provider_id": provider_id})
    assert now["head"]["sequence"] == 4  # the late one: there, and in the next export


def test_an_export_reads_again_while_the_pages_lag_the_head() -> None:
    market, provider_id = settled_market(2)
    reads = 0

    def lagging(body: bytes) -> bytes | None:
        nonlocal reads
        answer = market.dispatcher.handle(body)
        assert answer is not None
        if b"energy.getReceipts" not in body:
            return answer
        reads += 1
        if reads > 1:
            return answer
        response = json.loads(answer)
        response["result"]["receipts"] = response["result"]["receipts"][:-1]
        return json.dumps(response).encode()

    client = MarketplaceClient(lagging, MARKETPLACE_ID, clock=market.clock)
    export = cli.export_receipts(client, [provider_id], pause_seconds=0)
    assert reads == 2
    assert [r["sequence"] for r in export["receipts"]] == [1, 2]

    def always_lagging(body: bytes) -> bytes | None:
        nonlocal reads
        reads = 0
        return lagging(body)

    stuck = MarketplaceClient(always_lagging, MARKETPLACE_ID, clock=market.clock)
    with pytest.raises(cli.ExportError):
        cli.export_receipts(stuck, [provider_id], pause_seconds=0)


def test_a_provider_without_receipts_exports_nothing() -> None:
    market, _ = settled_market(0)
    export = cli.export_receipts(market.client, ["energy-0x0000000000000000"])
    assert (export["heads"], export["receipts"]) == ([], [])
    assert verify_export(export) == []


# -- the documented test vector --------------------------------------------------------


def doc_block(tag: str) -> str:
    found = re.search(rf"^```\w+ {tag}\n(.*?)\n```$", RECEIPTS_DOC.read_text(), re.S | re.M)
    assert found, f"docs/receipts.md lost its {tag} block"
    return found.group(1)


def doc_values(tag: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in doc_block(tag).splitlines())
    return {name.strip(): value.strip() for name, value in pairs}


def test_the_documented_vector_is_what_the_code_signs() -> None:
    key_values = doc_values("receipt-vector-key")
    key = SigningKey(bytes.fromhex(key_values["seed"]))
    assert key_values["seed"] == bytes(range(32)).hex()
    assert key.verify_key.encode().hex() == key_values["public_key"]
    body = json.loads(doc_block("receipt-vector-body"))
    output = doc_values("receipt-vector-output")
    message = doc_block("receipt-vector-message").encode("utf-8")

    receipt = receipt_from_json(body | {"receipt_hash": "", "signature": ""})
    assert isinstance(receipt, Receipt)
    assert receipt.message() == message
    assert message.startswith(b"energy-marketplace/receipt/v1\n{")
    assert hashlib.sha256(message).hexdigest() == output["receipt_hash"]
    assert signing.sign(key, message) == output["signature"]
    assert sealed(receipt, key) == replace(
        receipt, receipt_hash=output["receipt_hash"], signature=output["signature"]
    )
    documented = receipt_from_json(body | output)
    assert verify_chain([documented], key_values["public_key"]).intact


def test_the_doc_shows_what_the_verifier_reports() -> None:
    doc = RECEIPTS_DOC.read_text()
    for problem in [
        "receipt_hash does not match its contents: it was altered",
        "signature is not the marketplace's",
        "a receipt is missing or out of order",
        "the chain head is receipt 5 but the export ends at 4",
        "the export has no head for this chain: its receipts were added",
        "the chain head is not signed by the marketplace's key: it was changed",
        "the chain head is from marketplace",
        "energy-marketplace/receipt-head/v1",
        cli.EXPORT_FORMAT,
        "python -m energy_client.receipts export --url",
        "python -m energy_client.receipts verify receipts.json --public-key",
    ]:
        assert problem in doc, problem
